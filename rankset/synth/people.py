"""Person figures: what each person looks like (sampled in bulk) and how one is drawn with PIL ImageDraw.

A figure is legs, torso, arms, head and hair (or a hat), drawn between the exact projections of the feet and
the head centre, so the annotated point always sits on the drawn head. Small figures drop the parts that would
be under a pixel. Every figure is also drawn as a flat silhouette into an id buffer, which gives the depth map
and tells which heads stay visible after nearer people are painted over them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

# sRGB skin tones from light to dark, jittered per person
SKIN_TONES = np.array(
    [(255, 224, 196), (241, 194, 160), (224, 172, 134), (198, 144, 104), (168, 117, 80), (141, 94, 62),
     (112, 72, 48), (84, 55, 38)],
    dtype=np.float32,
)  # fmt: skip
HAIR_COLOURS = np.array(
    [(20, 17, 15), (44, 34, 28), (72, 52, 38), (110, 80, 50), (165, 130, 85), (200, 170, 120), (150, 150, 150),
     (120, 50, 30)],
    dtype=np.float32,
)  # fmt: skip
HAIR_WEIGHTS = np.array([0.32, 0.24, 0.16, 0.09, 0.06, 0.04, 0.06, 0.03])
# muted everyday clothing colours; a share of people get a random saturated colour instead
CLOTHING = np.array(
    [(25, 25, 30), (40, 45, 60), (30, 40, 80), (90, 90, 95), (150, 150, 150), (225, 225, 220), (110, 80, 55),
     (60, 70, 45), (140, 30, 35), (180, 160, 120), (70, 100, 140), (200, 120, 40)],
    dtype=np.float32,
)  # fmt: skip


@dataclass(frozen=True)
class Looks:
    """Appearance of N people, one row each: colours as uint8 RGB, body proportions as multipliers."""

    skin: np.ndarray  # (N, 3)
    hair: np.ndarray  # (N, 3)
    top: np.ndarray  # (N, 3)
    bottom: np.ndarray  # (N, 3)
    hat: np.ndarray  # (N, 3), used where has_hat
    has_hat: np.ndarray  # (N,) bool
    facing_away: np.ndarray  # (N,) bool: back of the head (all hair) instead of a face
    build: np.ndarray  # (N,) shoulder width multiplier
    stride: np.ndarray  # (N,) feet apart, as a share of hip width
    arm_swing: np.ndarray  # (N,) hands forward/back, as a share of hip width


def _clothes(rng: np.random.Generator, n: int) -> np.ndarray:
    colours = CLOTHING[rng.integers(len(CLOTHING), size=n)] * rng.uniform(0.75, 1.2, (n, 1))
    vivid = rng.random(n) < 0.25
    colours[vivid] = rng.uniform(30, 215, (int(vivid.sum()), 3))
    return colours


def sample_looks(rng: np.random.Generator, n: int) -> Looks:
    """Varied skin tones, hair, clothing and build for ``n`` people."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES), size=n)] + rng.normal(0, 8, (n, 3))
    hair = HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), size=n, p=HAIR_WEIGHTS)] + rng.normal(0, 6, (n, 3))
    to_u8 = lambda a: np.clip(a, 0, 255).astype(np.uint8)  # noqa: E731
    return Looks(
        skin=to_u8(skin),
        hair=to_u8(hair),
        top=to_u8(_clothes(rng, n)),
        bottom=to_u8(_clothes(rng, n) * 0.8),
        hat=to_u8(_clothes(rng, n)),
        has_hat=rng.random(n) < 0.1,
        facing_away=rng.random(n) < 0.45,
        build=rng.uniform(0.85, 1.2, n),
        stride=rng.uniform(0.0, 1.0, n) ** 2,
        arm_swing=rng.uniform(-0.6, 0.6, n),
    )


@dataclass(frozen=True)
class Figure:
    """Image-space skeleton of one person: where each part goes, in pixels."""

    feet_u: float
    feet_v: float
    head_u: float
    head_v: float
    head_radius: float
    scale: float  # pixels per metre at the person's depth


def _at(fig: Figure, share: float) -> tuple[float, float]:
    """Point on the body axis ``share`` of the way from the feet (0) to the head centre (1)."""
    return fig.feet_u + (fig.head_u - fig.feet_u) * share, fig.feet_v + (fig.head_v - fig.feet_v) * share


def figure_outline(fig: Figure, build: float, stride: float) -> tuple[list, list, tuple]:
    """(legs polygon, torso polygon, head box): the shapes both the picture and the silhouette use."""
    hip_u, hip_v = _at(fig, 0.56)
    shoulder_u, shoulder_v = _at(fig, 0.86)
    hip_half = 0.17 * fig.scale * build
    shoulder_half = 0.22 * fig.scale * build
    foot_half = hip_half * (0.75 + 0.5 * stride)
    crotch_v = hip_v + (fig.feet_v - hip_v) * 0.12
    leg = max(1.0, hip_half * 0.5)
    legs = [
        (hip_u - hip_half, hip_v),
        (hip_u + hip_half, hip_v),
        (fig.feet_u + foot_half, fig.feet_v),
        (fig.feet_u + foot_half - leg, fig.feet_v),
        (hip_u, crotch_v),
        (fig.feet_u - foot_half + leg, fig.feet_v),
        (fig.feet_u - foot_half, fig.feet_v),
    ]
    torso = [
        (shoulder_u - shoulder_half, shoulder_v),
        (shoulder_u + shoulder_half, shoulder_v),
        (hip_u + hip_half * 1.05, hip_v + 0.5),
        (hip_u - hip_half * 1.05, hip_v + 0.5),
    ]
    r = fig.head_radius
    head = (fig.head_u - 0.86 * r, fig.head_v - r, fig.head_u + 0.86 * r, fig.head_v + r)
    return legs, torso, head


def draw_person(draw: ImageDraw.ImageDraw, fig: Figure, looks: Looks, i: int) -> None:
    """Paint person ``i`` of ``looks`` as ``fig``: legs, torso, arms, head, then hair or a hat."""
    build, stride = float(looks.build[i]), float(looks.stride[i])
    legs, torso, head = figure_outline(fig, build, stride)
    top, skin, hair = tuple(looks.top[i].tolist()), tuple(looks.skin[i].tolist()), tuple(looks.hair[i].tolist())
    draw.polygon(legs, fill=tuple(looks.bottom[i].tolist()))
    draw.polygon(torso, fill=top)
    r = fig.head_radius
    if r >= 3.0:  # rounded shoulders and arms only where they span a few pixels
        (left_u, shoulder_v), (right_u, _) = torso[0], torso[1]
        draw.ellipse((left_u, shoulder_v - 0.06 * fig.scale, right_u, shoulder_v + 0.1 * fig.scale), fill=top)
        swing = float(looks.arm_swing[i]) * 0.17 * fig.scale
        arm_width = max(1, round(0.08 * fig.scale))
        for side in (-1.0, 1.0):
            shoulder = torso[0] if side < 0 else torso[1]
            hand_u, hand_v = _at(fig, 0.47)
            hand = (hand_u + side * 0.25 * fig.scale * build + side * swing * 0.3, hand_v + swing * 0.2)
            draw.line([shoulder, hand], fill=top, width=arm_width)
            draw.ellipse((hand[0] - arm_width / 2, hand[1] - arm_width / 2, hand[0] + arm_width / 2,
                          hand[1] + arm_width / 2), fill=skin)  # fmt: skip
    neck_v = fig.head_v + r * 0.8
    draw.rectangle((fig.head_u - r * 0.35, neck_v, fig.head_u + r * 0.35, neck_v + r * 0.45), fill=skin)
    x0, y0, x1, y1 = head
    if looks.facing_away[i]:
        draw.ellipse(head, fill=hair)
        draw.chord((x0, y0, x1, y1 + r * 0.25), 20, 160, fill=skin)  # the nape below the hair line
    else:
        draw.ellipse(head, fill=skin)
        draw.chord((x0 - r * 0.06, y0 - r * 0.06, x1 + r * 0.06, y1 - r * 0.55), 170, 370, fill=hair)
        if r >= 6.0:  # eyes as two dark dots on larger faces
            eye = max(1.0, r * 0.12)
            for side in (-0.35, 0.35):
                eu, ev = fig.head_u + side * r, fig.head_v - r * 0.05
                draw.ellipse((eu - eye, ev - eye * 0.7, eu + eye, ev + eye * 0.7), fill=(30, 25, 25))
    if looks.has_hat[i]:
        hat = tuple(looks.hat[i].tolist())
        draw.chord((x0 - r * 0.1, y0 - r * 0.1, x1 + r * 0.1, y1 - r * 0.35), 180, 360, fill=hat)
        draw.rectangle((x0 - r * 0.2, fig.head_v - r * 0.45, x1 + r * 0.2, fig.head_v - r * 0.3), fill=hat)


def draw_silhouette(draw: ImageDraw.ImageDraw, fig: Figure, looks: Looks, i: int, label: int) -> None:
    """Paint person ``i`` as a flat ``label`` into the id buffer (mode "I"): legs, torso and head."""
    legs, torso, head = figure_outline(fig, float(looks.build[i]), float(looks.stride[i]))
    draw.polygon(legs, fill=label)
    draw.polygon(torso, fill=label)
    draw.ellipse(head, fill=label)

"""Render one synthetic crowd scene: picture, exact head points and the depth map, from one seeded RNG.

Order of work: sample the plan (count, camera, layout; pure), paint sky and ground, the backdrop, shadows, then
people and clutter far to near, each also into an id buffer. The id buffer gives the depth map and decides
which heads stay visible: a head counts when at least ``MIN_VISIBLE_HEAD`` of it is still on top, as annotators
mark partly hidden heads but not invisible ones. Lighting, blur, sensor noise and JPEG quality come last.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from rankset.schema import DEPTH_SCALE
from rankset.synth.backdrop import paint_backdrop, paint_ground, paint_sky, scene_base_depth
from rankset.synth.camera import project
from rankset.synth.clutter import draw_item, item_depth, sample_clutter
from rankset.synth.layout import ScenePlan, ground_bounds, sample_plan
from rankset.synth.people import Figure, draw_person, draw_silhouette, sample_looks

MIN_VISIBLE_HEAD = 0.2  # share of a head's pixels that must stay unoccluded for it to be counted
MAX_DEPTH_M = 65535 / DEPTH_SCALE  # what a 16-bit depth PNG can hold


@dataclass(frozen=True)
class Scene:
    """A rendered scene: the picture, one point per counted head, per-pixel depth, and how it was made."""

    image: np.ndarray  # (H, W, 3) uint8, before JPEG compression
    points: np.ndarray  # (N, 2) float32 head centres (x, y) in pixels
    head_px: np.ndarray  # (N,) head diameters in pixels
    depth: np.ndarray  # (H, W) float32 metres along the optical axis; 0 for sky
    jpeg_quality: int
    plan: ScenePlan
    hidden_heads: int  # people drawn whose heads ended up fully behind something nearer: not counted

    @property
    def count(self) -> int:
        return int(self.points.shape[0])

    def jpeg_bytes(self) -> bytes:
        """The picture as JPEG at the scene's own quality (part of the augmentation)."""
        buffer = io.BytesIO()
        Image.fromarray(self.image).save(buffer, format="JPEG", quality=self.jpeg_quality)
        return buffer.getvalue()

    def depth_png_bytes(self) -> bytes:
        """Depth as a 16-bit PNG of metres * DEPTH_SCALE, 0 for sky (rankset.schema's depth contract)."""
        scaled = np.round(np.clip(self.depth, 0, MAX_DEPTH_M) * DEPTH_SCALE).astype(np.uint16)
        buffer = io.BytesIO()
        Image.fromarray(scaled).save(buffer, format="PNG")
        return buffer.getvalue()


def _figures(plan: ScenePlan) -> tuple[list[Figure], np.ndarray]:
    """Image-space skeletons of every planned person, and their body depth (at hip height)."""
    crowd, camera = plan.crowd, plan.camera
    _, _, body_depth = project(camera, crowd.x, np.full_like(crowd.x, 0.9), crowd.z)
    scale = camera.focal_px / crowd.depth
    figures = [
        Figure(fu, fv, hu, hv, r, s)
        for fu, fv, hu, hv, r, s in zip(
            crowd.feet_u.tolist(),
            crowd.feet_v.tolist(),
            crowd.head_u.tolist(),
            crowd.head_v.tolist(),
            (crowd.head_px / 2.0).tolist(),
            scale.tolist(),
            strict=True,
        )
    ]
    return figures, body_depth.astype(np.float32)


def _shadows(rng: np.random.Generator, image: Image.Image, figures: list[Figure]) -> None:
    """Soft dark ellipses at everyone's feet, all thrown the same way, blended over the ground."""
    draw = ImageDraw.Draw(image, "RGBA")
    shift, alpha = rng.uniform(-0.6, 0.6), int(rng.integers(30, 90))
    for fig in figures:
        w, h = 0.35 * fig.scale, 0.12 * fig.scale
        u = fig.feet_u + shift * fig.scale * 0.4
        draw.ellipse((u - w, fig.feet_v - h, u + w, fig.feet_v + h), fill=(0, 0, 0, alpha))


def _visible_heads(ids: np.ndarray, figures: list[Figure]) -> np.ndarray:
    """Which people still show at least MIN_VISIBLE_HEAD of their head in the id buffer (label = index + 1)."""
    height, width = ids.shape
    keep = np.zeros(len(figures), dtype=bool)
    for i, fig in enumerate(figures):
        r = fig.head_radius
        x0, x1 = max(0, int(fig.head_u - r)), min(width, int(math.ceil(fig.head_u + r)))
        y0, y1 = max(0, int(fig.head_v - r)), min(height, int(math.ceil(fig.head_v + r)))
        shown = np.count_nonzero(ids[y0:y1, x0:x1] == i + 1)
        keep[i] = shown >= max(1.0, MIN_VISIBLE_HEAD * math.pi * 0.86 * r * r)
    return keep


def _finish(rng: np.random.Generator, image: Image.Image) -> np.ndarray:
    """Camera and light: optional blur, global brightness, colour cast, a shading gradient, sensor noise."""
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.2))))
    pixels = np.asarray(image, dtype=np.float32)
    height, width = pixels.shape[:2]
    angle, amplitude = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.4)
    ramp_x = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :] * math.cos(angle)
    ramp_y = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None] * math.sin(angle)
    gain = rng.uniform(0.65, 1.25) * (1.0 + amplitude * (ramp_x + ramp_y))
    cast = (1.0 + rng.normal(0, 0.06, 3)).astype(np.float32)
    pixels = pixels * gain[..., None] * cast
    sigma = rng.uniform(0.0, 6.0)
    if sigma > 0.5:
        pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def synthesize_scene(
    rng: np.random.Generator, width: int = 512, height: int = 384, max_count: int = 1000, min_count: int = 0
) -> Scene:
    """Render one scene of ``width`` x ``height`` with ``min_count`` to about ``max_count`` people, using only ``rng``.

    Occlusion and the view can leave fewer visible heads than drawn, so ``min_count`` bounds the drawn count.
    """
    plan = sample_plan(rng, width, height, max_count, min_count)
    camera = plan.camera
    canvas = np.zeros((height, width, 3), np.float32)
    paint_sky(rng, canvas, camera.horizon_v)
    paint_ground(rng, canvas, camera)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    backdrop_labels, backdrop_distances = paint_backdrop(rng, image, camera, plan.wall_z)

    figures, body_depth = _figures(plan)
    looks = sample_looks(rng, len(figures))
    items = sample_clutter(rng, camera, ground_bounds(camera, plan.wall_z), int(rng.integers(0, 9)))
    _shadows(rng, image, figures)

    # labels: 1..N people, N+1..N+M clutter; painted far to near (ties broken by label, for determinism)
    label_depth = np.concatenate([[0.0], body_depth, [item_depth(camera, item) for item in items]]).astype(np.float32)
    order = np.lexsort((np.arange(1, len(label_depth)), -label_depth[1:])) + 1
    ids = Image.new("I", (width, height), 0)
    draw, id_draw = ImageDraw.Draw(image), ImageDraw.Draw(ids)
    for label in order.tolist():
        if label <= len(figures):
            draw_person(draw, figures[label - 1], looks, label - 1)
            draw_silhouette(id_draw, figures[label - 1], looks, label - 1, label)
        else:
            draw_item(draw, id_draw, camera, items[label - 1 - len(figures)], label)

    id_array = np.asarray(ids)
    depth = scene_base_depth(camera, backdrop_labels, backdrop_distances)
    depth = np.minimum(np.where(id_array > 0, label_depth[id_array], depth), MAX_DEPTH_M).astype(np.float32)
    keep = _visible_heads(id_array, figures)
    crowd = plan.crowd
    points = np.stack([crowd.head_u[keep], crowd.head_v[keep]], axis=1).astype(np.float32).reshape(-1, 2)
    return Scene(
        image=_finish(rng, image),
        points=points,
        head_px=crowd.head_px[keep].astype(np.float32),
        depth=depth,
        jpeg_quality=int(rng.integers(55, 96)),
        plan=plan,
        hidden_heads=int((~keep).sum()),
    )

"""Street furniture standing among the people: lamp posts, trees, benches, bins, bollards, banners, umbrellas.

Items are placed on the ground like people and drawn in the same far-to-near order, so they hide people behind
them and are hidden by people in front. Each item is a few projected rectangles and ellipses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import ImageDraw

from rankset.synth.camera import Camera, project

CLUTTER_KINDS = ("lamp", "tree", "bench", "bin", "bollard", "banner", "umbrella", "sign")
CLUTTER_WEIGHTS = np.array([0.18, 0.14, 0.12, 0.1, 0.14, 0.12, 0.1, 0.1])
# (height, width) in metres at size 1: items drawn larger than MAX_SHARE of the frame are not placed,
# so a tree by the lens never hides half the crowd
EXTENT_M = {
    "lamp": (4.7, 0.6),
    "tree": (5.5, 3.2),
    "bench": (0.85, 1.8),
    "bin": (0.95, 0.54),
    "bollard": (0.9, 0.2),
    "banner": (3.4, 3.0),
    "umbrella": (2.6, 2.6),
    "sign": (2.4, 1.0),
}
MAX_SHARE = (0.8, 0.3)  # of image height, of image width


@dataclass(frozen=True)
class Item:
    """One piece of clutter: kind, ground position, overall scale and two colours."""

    kind: str
    x: float
    z: float
    size: float
    colour: tuple[int, ...]  # RGB
    accent: tuple[int, ...]  # RGB


def sample_clutter(rng: np.random.Generator, camera: Camera, bounds: tuple[float, float, float], n: int) -> list[Item]:
    """``n`` items at random ground positions in ``bounds`` whose base lands in or just below the frame."""
    half_width, z_near, z_far = bounds
    items: list[Item] = []
    for _ in range(n * 4):
        if len(items) == n:
            break
        x, z = rng.uniform(-half_width, half_width), rng.uniform(z_near, z_far)
        u, v, depth = project(camera, np.array([x]), np.array([0.0]), np.array([z]))
        if not (
            depth[0] > 1.0 and -0.05 * camera.width < u[0] < 1.05 * camera.width and 0 < v[0] < 1.3 * camera.height
        ):
            continue
        kind = str(rng.choice(CLUTTER_KINDS, p=CLUTTER_WEIGHTS))
        size = float(rng.uniform(0.8, 1.25))
        pixels_per_metre = camera.focal_px / float(depth[0])
        tall, wide = (extent * size * pixels_per_metre for extent in EXTENT_M[kind])
        if tall > MAX_SHARE[0] * camera.height or wide > MAX_SHARE[1] * camera.width:
            continue
        colour = tuple(int(c) for c in rng.integers(20, 120, 3))
        accent = tuple(int(c) for c in rng.integers(40, 250, 3))
        items.append(Item(kind, float(x), float(z), size, colour, accent))
    return items


def item_depth(camera: Camera, item: Item) -> float:
    """Camera depth of the item's base: the key that orders it among the people."""
    _, _, depth = project(camera, np.array([item.x]), np.array([1.0]), np.array([item.z]))
    return float(depth[0])


def _pole(camera: Camera, item: Item, bottom: float, top: float, half: float) -> tuple[float, float, float, float]:
    """Image box of a vertical bar of half-width ``half`` metres between two heights."""
    u, v, depth = project(camera, np.array([item.x, item.x]), np.array([bottom, top]), np.array([item.z, item.z]))
    half_px = max(0.5, half * camera.focal_px / float(depth[0]))
    return float(u.mean()) - half_px, float(v[1]), float(u.mean()) + half_px, float(v[0])


def item_shapes(camera: Camera, item: Item) -> list[tuple[str, tuple[float, float, float, float], tuple[int, ...]]]:
    """The item as ("rect" | "ellipse", box, colour) primitives, back to front."""
    s, dark, accent = item.size, item.colour, item.accent
    grey = (70, 72, 75)
    if item.kind == "lamp":
        lamp = _pole(camera, item, 4.3 * s, 4.7 * s, 0.3)
        return [("rect", _pole(camera, item, 0, 4.5 * s, 0.07), grey), ("ellipse", lamp, (235, 230, 200))]
    if item.kind == "tree":
        crown = _pole(camera, item, 2.0 * s, 5.5 * s, 1.6 * s)
        green = (50 + accent[0] // 6, 90 + accent[1] // 5, 40)
        return [("rect", _pole(camera, item, 0, 2.6 * s, 0.15), (85, 62, 40)), ("ellipse", crown, green)]
    if item.kind == "bench":
        return [("rect", _pole(camera, item, 0.0, 0.45, 0.9 * s), (90, 65, 40)),
                ("rect", _pole(camera, item, 0.45, 0.85, 0.9 * s), (110, 80, 50))]  # fmt: skip
    if item.kind == "bin":
        return [("rect", _pole(camera, item, 0, 0.95, 0.27), dark)]
    if item.kind == "bollard":
        return [("rect", _pole(camera, item, 0, 0.9, 0.1), grey)]
    if item.kind == "banner":
        cloth = _pole(camera, item, 2.0 * s, 3.3 * s, 1.5 * s)
        stripe = _pole(camera, item, 2.45 * s, 2.85 * s, 1.5 * s)
        left = _pole(camera, item, 0, 3.4 * s, 0.05)
        width = (cloth[2] - cloth[0]) / 2
        right = (left[0] + width, left[1], left[2] + width, left[3])
        left = (left[0] - width, left[1], left[2] - width, left[3])
        return [("rect", left, grey), ("rect", right, grey), ("rect", cloth, accent), ("rect", stripe, dark)]
    if item.kind == "umbrella":
        canopy = _pole(camera, item, 1.9 * s, 2.6 * s, 1.3 * s)
        return [("rect", _pole(camera, item, 0, 2.3 * s, 0.04), grey), ("ellipse", canopy, accent)]
    board = _pole(camera, item, 1.6, 2.4, 0.5)
    return [("rect", _pole(camera, item, 0, 2.0, 0.04), grey), ("rect", board, accent)]


def draw_item(
    draw: ImageDraw.ImageDraw, label_draw: ImageDraw.ImageDraw, camera: Camera, item: Item, label: int
) -> None:
    """Paint ``item`` into the picture and, as ``label``, into the id buffer."""
    for shape, (u0, v0, u1, v1), colour in item_shapes(camera, item):
        box = (min(u0, u1), min(v0, v1), max(u0, u1), max(v0, v1))  # PIL refuses inverted boxes
        if shape == "rect":
            draw.rectangle(box, fill=colour)
            label_draw.rectangle(box, fill=label)
        else:
            draw.ellipse(box, fill=colour)
            label_draw.ellipse(box, fill=label)

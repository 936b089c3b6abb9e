"""The scene behind the people: sky, a textured ground plane, and a backdrop of buildings, a wall or trees.

Ground textures are computed in world coordinates (every pixel is back-projected onto the ground), so paving
joints converge to the horizon the way real ones do. Backdrop shapes are drawn as projected polygons, and each
is labelled in a mask so the depth map knows which wall a pixel belongs to.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from rankset.synth.camera import Camera, facade_depth_rows, ground_depth_rows, project

GROUND_KINDS = ("asphalt", "paving", "grass", "sand", "stone")
GROUND_COLOURS = {
    "asphalt": (88, 88, 92),
    "paving": (150, 140, 128),
    "grass": (82, 120, 56),
    "sand": (196, 178, 140),
    "stone": (178, 172, 160),
}
FACADE_COLOURS = np.array(
    [(200, 190, 170), (170, 160, 150), (150, 80, 60), (120, 120, 125), (220, 215, 205), (90, 110, 130),
     (185, 150, 110), (60, 60, 65)],
    dtype=np.float32,
)  # fmt: skip


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled bicubically to (height, width)."""
    coarse = rng.uniform(0, 255, (max(2, cells * height // max(width, 1)), cells)).astype(np.uint8)
    big = Image.fromarray(coarse, "L").resize((width, height), Image.BICUBIC)
    return np.asarray(big, dtype=np.float32) / 127.5 - 1.0


def paint_sky(rng: np.random.Generator, canvas: np.ndarray, horizon_v: float) -> None:
    """Fill rows above the horizon with a vertical gradient (clear, overcast or dusk) and soft clouds."""
    rows = int(min(canvas.shape[0], max(0, math.ceil(horizon_v))))
    if rows == 0:
        return
    kind = rng.choice(["clear", "overcast", "dusk"], p=[0.5, 0.35, 0.15])
    top, low = {
        "clear": ((70, 120, 200), (180, 205, 235)),
        "overcast": ((150, 155, 165), (205, 208, 212)),
        "dusk": ((60, 60, 110), (235, 160, 110)),
    }[kind]
    share = np.linspace(0.0, 1.0, max(rows, 2), dtype=np.float32)[:rows, None, None] ** 0.7
    sky = np.array(top, np.float32) * (1 - share) + np.array(low, np.float32) * share
    sky = np.broadcast_to(sky, (rows, canvas.shape[1], 3)).copy()
    clouds = np.clip(smooth_noise(rng, rows, canvas.shape[1], 6), 0, 1)[..., None] * rng.uniform(0, 0.6)
    canvas[:rows] = sky * (1 - clouds) + 235.0 * clouds


def paint_ground(rng: np.random.Generator, canvas: np.ndarray, camera: Camera) -> str:
    """Texture every ground pixel by its world position; returns the ground kind used."""
    depth = ground_depth_rows(camera)
    rows = np.flatnonzero(depth > 0)
    if rows.size == 0:
        return "none"
    first = int(rows[0])
    kind = str(rng.choice(GROUND_KINDS))
    t = depth[first:, None].astype(np.float32)
    sin_t, cos_t = math.sin(camera.tilt_rad), math.cos(camera.tilt_rad)
    xn = (np.arange(camera.width, dtype=np.float32) + 0.5 - camera.cx) / camera.focal_px
    yn = (np.arange(first, camera.height, dtype=np.float32)[:, None] + 0.5 - camera.cy) / camera.focal_px
    world_x = t * xn[None, :]
    world_z = t * (cos_t - yn * sin_t)
    base = np.array(GROUND_COLOURS[kind], np.float32) * rng.uniform(0.75, 1.2) * rng.uniform(0.94, 1.06, 3)
    h, w = world_x.shape
    shade = 1.0 + 0.12 * smooth_noise(rng, h, w, 10) + rng.normal(0, 0.04, (h, w)).astype(np.float32)
    if kind in ("paving", "stone"):
        tile = rng.uniform(0.3, 0.8) if kind == "paving" else rng.uniform(1.0, 3.0)
        tx, tz = world_x / tile, world_z / tile
        ix, iz = np.floor(tx).astype(np.int64), np.floor(tz).astype(np.int64)
        tile_shade = ((ix * 73856093) ^ (iz * 19349663)) % 97 / 97.0 - 0.5
        tile_px = tile * camera.focal_px / t  # tile size in pixels, per row
        joint = np.minimum(np.minimum(tx - ix, 1 - (tx - ix)), np.minimum(tz - iz, 1 - (tz - iz))) * tile_px
        fade = np.clip((tile_px - 3.0) / 6.0, 0, 1)  # joints fade out where tiles are a few pixels across
        shade = shade + 0.10 * tile_shade * fade - 0.25 * (joint < 0.8) * fade
    elif kind == "grass":
        shade = shade + rng.normal(0, 0.08, (h, w)).astype(np.float32)
    canvas[first:] = base[None, None, :] * shade[..., None]
    return kind


def paint_backdrop(
    rng: np.random.Generator, image: Image.Image, camera: Camera, wall_z: float
) -> tuple[np.ndarray, np.ndarray]:
    """Draw buildings, a long wall or a tree line standing at ``wall_z``; returns (label mask, depth per label).

    Label 0 is "no backdrop"; label k has the constant ground distance ``distances[k]``, from which the depth of
    each of its pixels follows row by row.
    """
    labels = Image.new("L", image.size, 0)
    distances = [0.0]
    if not math.isfinite(wall_z):
        return np.asarray(labels), np.zeros(1, np.float32)
    draw, label_draw = ImageDraw.Draw(image), ImageDraw.Draw(labels)
    _, _, wall_depth = project(camera, np.array([0.0]), np.array([0.0]), np.array([wall_z]))
    half = camera.width / 2 / camera.focal_px * float(wall_depth[0]) * 1.3 + 5.0
    kind = rng.choice(["buildings", "wall", "trees"], p=[0.6, 0.2, 0.2])
    x = -half
    while x < half and len(distances) < 250:
        z = wall_z + (rng.uniform(0, 8.0) if kind == "buildings" else 0.0)
        width = rng.uniform(6, 25) if kind != "trees" else rng.uniform(3, 7)
        if kind == "buildings":
            tall = float(np.exp(rng.uniform(np.log(5), np.log(45))))
        else:
            tall = rng.uniform(2, 4) if kind == "wall" else rng.uniform(6, 14)
        label = len(distances)
        distances.append(z)
        corners = np.array([[x, 0, z], [x + width, 0, z], [x + width, tall, z], [x, tall, z]], dtype=np.float64)
        u, v, _ = project(camera, corners[:, 0], corners[:, 1], corners[:, 2])
        polygon = list(zip(u.tolist(), v.tolist(), strict=True))
        if kind == "trees":
            crown = (u[0] - 0.3 * (u[1] - u[0]), v[3], u[1] + 0.3 * (u[1] - u[0]), v[0] - 0.35 * (v[0] - v[3]))
            green = tuple(int(c) for c in np.array([60, 95, 45]) * rng.uniform(0.6, 1.2))
            draw.ellipse(crown, fill=green)
            label_draw.ellipse(crown, fill=label)
            trunk = ((u[0] + u[1]) / 2 - 0.06 * (u[1] - u[0]), crown[3] - 2, (u[0] + u[1]) / 2 + 0.06 * (u[1] - u[0]))
            draw.rectangle((trunk[0], trunk[1], trunk[2], v[0]), fill=(80, 60, 40))
            label_draw.rectangle((trunk[0], trunk[1], trunk[2], v[0]), fill=label)
        else:
            colour = FACADE_COLOURS[rng.integers(len(FACADE_COLOURS))] * rng.uniform(0.8, 1.15)
            draw.polygon(polygon, fill=tuple(int(c) for c in np.clip(colour, 0, 255)))
            label_draw.polygon(polygon, fill=label)
            if kind == "buildings":
                _windows(rng, draw, camera, x, width, tall, z, colour)
        x += width + (rng.uniform(0, 4) if kind == "buildings" else 0.0)
    depth_by_label = np.array(distances, np.float32)
    return np.asarray(labels), depth_by_label


def _windows(
    rng: np.random.Generator,
    draw: ImageDraw.ImageDraw,
    camera: Camera,
    x: float,
    width: float,
    tall: float,
    z: float,
    colour: np.ndarray,
) -> None:
    """A grid of windows on a facade, skipped where a window would be under two pixels wide."""
    floor, bay = rng.uniform(2.8, 3.6), rng.uniform(2.0, 4.0)
    _, _, depth = project(camera, np.array([x]), np.array([0.0]), np.array([z]))
    if 1.2 * camera.focal_px / float(depth[0]) < 2.0:
        return
    glass = tuple(int(c) for c in np.clip(colour * rng.uniform(0.3, 0.6) + rng.uniform(0, 40, 3), 0, 255))
    cols = np.arange(x + bay / 2, x + width - 0.8, bay)
    rows = np.arange(floor * 0.35 + (floor if rng.random() < 0.5 else 0.0), tall - 1.6, floor)
    if cols.size == 0 or rows.size == 0:
        return
    gx, gy = np.meshgrid(cols, rows)
    gx, gy = gx.ravel(), gy.ravel()
    zs = np.full_like(gx, z)
    u0, v0, _ = project(camera, gx - 0.6, gy + 1.6, zs)
    u1, v1, _ = project(camera, gx + 0.6, gy, zs)
    for a, b, c, d in zip(u0.tolist(), v0.tolist(), u1.tolist(), v1.tolist(), strict=True):
        draw.rectangle((min(a, c), min(b, d), max(a, c), max(b, d)), fill=glass)


def backdrop_depth(camera: Camera, labels: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Per-pixel depth of backdrop pixels (0 elsewhere): each label's wall distance, converted row by row."""
    if distances.size <= 1:
        return np.zeros(labels.shape, np.float32)
    unit = facade_depth_rows(camera, 1.0)  # depth of a wall 1 m away, per row; scales linearly with distance
    return (distances[labels] * unit[:, None]).astype(np.float32)


def scene_base_depth(camera: Camera, labels: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Depth of everything behind the people: backdrop where drawn, else ground, else 0 (sky)."""
    ground = np.broadcast_to(ground_depth_rows(camera)[:, None], labels.shape)
    return np.where(labels > 0, backdrop_depth(camera, labels, distances), ground).astype(np.float32)

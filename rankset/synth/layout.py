"""Where the people stand: the count, the camera and the crowd layout of one scene, sampled without drawing.

Everything here is pure (numbers in, arrays out, the RNG passed in), so the count distribution and the
perspective of the layouts can be tested without rendering a pixel. Layouts are mixtures of four kinds:

- ``sparse``: people scattered uniformly over the visible ground;
- ``blobs``: Gaussian groups, widened so their peak density stays below ``MAX_DENSITY`` people per m²;
- ``queues``: lines of people a step apart that wander, one to three abreast;
- ``plaza``: a dense jittered grid filling a rectangle of ground (a packed square, a concert floor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rankset.synth.camera import HEAD_DIAMETER_M, Camera, backproject_to_plane, project

LAYOUT_KINDS = ("sparse", "blobs", "queues", "plaza")
MAX_DENSITY = 4.5  # people per m²: shoulder to shoulder
MIN_HEAD_PX = 4.0  # smaller heads are not placed: they would not look like heads
MAX_HEAD_PX = 48.0
MAX_LEAN = 0.6  # sideways pixels per upright pixel of a standing person's image (about 31 degrees)
ZERO_COUNT_FRACTION = 0.03  # empty scenes exist (a square at night) and a counter should see some


@dataclass(frozen=True)
class Crowd:
    """People on the ground (metres) and where the camera sees them (pixels); one entry per person."""

    x: np.ndarray  # (N,) ground X
    z: np.ndarray  # (N,) ground Z
    stature: np.ndarray  # (N,) body height, metres
    head_u: np.ndarray  # (N,) head centre column: the annotated point
    head_v: np.ndarray  # (N,) head centre row
    feet_u: np.ndarray  # (N,)
    feet_v: np.ndarray  # (N,)
    depth: np.ndarray  # (N,) camera depth of the head centre, metres
    head_px: np.ndarray  # (N,) head diameter in pixels

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class ScenePlan:
    """Everything about a scene's geometry: camera, the far wall (inf when open to the horizon), the crowd."""

    camera: Camera
    wall_z: float
    target_count: int
    kinds: tuple[str, ...]
    crowd: Crowd


def sample_count(rng: np.random.Generator, max_count: int, min_count: int = 0) -> int:
    """A head count, log-uniform over [max(1, min_count), max_count] (sparse and dense scenes equally common).

    With ``min_count`` 0 a few scenes are empty (``ZERO_COUNT_FRACTION``); a positive ``min_count`` (crowd
    scenes only, as a harvest kept by the CLIP crowd filter) has none. The same draws are made either way.
    """
    if max_count < 1:
        return 0
    empty = rng.random() < ZERO_COUNT_FRACTION
    if empty and min_count == 0:
        return 0
    low = math.log(max(1, min(min_count, max_count)))
    return int(min(max_count, math.floor(math.exp(rng.uniform(low, math.log(max_count + 1))))))


def sample_camera(rng: np.random.Generator, width: int, height: int, count: int) -> Camera:
    """A camera whose head sizes suit ``count``: zoomed in for a few people, wide and high for a thousand.

    The head size at the image centre is drawn log-uniform in 10–32 px, then capped so that ``count`` people
    at a plausible spacing fit in the frame; camera height follows from that size, the tilt and the focal length.
    """
    tilt = math.radians(rng.uniform(12.0, 55.0))
    hfov = math.radians(rng.uniform(40.0, 80.0))
    focal = width / (2.0 * math.tan(hfov / 2.0))
    head_mid = math.exp(rng.uniform(math.log(10.0), math.log(32.0)))
    if count > 0:
        # pixels available per person, times the share of that spacing a head takes (0.22 m of ~0.6 m)
        fill = rng.uniform(0.45, 0.9)
        spacing_px = math.sqrt(width * height * fill * math.sin(tilt) / count)
        head_mid = min(head_mid, spacing_px * rng.uniform(0.35, 0.55))
    head_mid = float(np.clip(head_mid, MIN_HEAD_PX + 1.5, 32.0))
    centre_depth = focal * HEAD_DIAMETER_M / head_mid
    camera_height = float(np.clip(centre_depth * math.sin(tilt), 3.5, 80.0))
    return Camera(width=width, height=height, focal_px=focal, height_m=camera_height, tilt_rad=tilt)


def sample_wall_distance(rng: np.random.Generator, camera: Camera) -> float:
    """Ground distance of the backdrop (buildings, a wall, a tree line), or inf for open ground to the horizon.

    The wall's foot is put on an image row between the horizon (or the top edge) and 45% of the height, so the
    backdrop is in view but leaves most of the ground free for people.
    """
    if rng.random() < 0.2:
        return math.inf
    top = max(0.0, camera.horizon_v + 4.0)
    row = rng.uniform(top, max(top + 1.0, 0.45 * camera.height))
    _, z, _ = backproject_to_plane(camera, np.array([camera.cx]), np.array([row]))
    return float(z[0]) if np.isfinite(z[0]) else math.inf


def place_people(camera: Camera, x: np.ndarray, z: np.ndarray, stature: np.ndarray) -> Crowd:
    """Project people standing at ground (x, z) with the given statures: head centre, feet, depth, head size."""
    head_y = stature - HEAD_DIAMETER_M / 2.0
    head_u, head_v, depth = project(camera, x, head_y, z)
    feet_u, feet_v, _ = project(camera, x, np.zeros_like(x), z)
    head_px = camera.focal_px * HEAD_DIAMETER_M / np.where(depth > 1e-9, depth, np.nan)
    return Crowd(x, z, stature, head_u, head_v, feet_u, feet_v, depth, head_px)


def visible(camera: Camera, crowd: Crowd, wall_z: float) -> np.ndarray:
    """People whose head centre is inside the image, with a head 4–48 px across, standing before the wall.

    People almost under a steeply tilted camera are left out too: a wide lens draws them lying on the ground
    (their image axis leans over MAX_LEAN), which no annotated photo shows.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        upright = crowd.feet_v - crowd.head_v
        return (
            (crowd.depth > 0.5)
            & (upright > 0)
            & (np.abs(crowd.feet_u - crowd.head_u) <= MAX_LEAN * upright)
            & (crowd.head_u >= 0)
            & (crowd.head_u < camera.width)
            & (crowd.head_v >= 0)
            & (crowd.head_v < camera.height)
            & (crowd.head_px >= MIN_HEAD_PX)
            & (crowd.head_px <= MAX_HEAD_PX)
            & (crowd.z < wall_z - 0.6)
        )


def ground_distance(camera: Camera, depth: float, at_height: float = 0.0) -> float:
    """Ground Z of a point ``at_height`` metres above the ground seen at camera depth ``depth`` (image centre)."""
    sin_t, cos_t = math.sin(camera.tilt_rad), math.cos(camera.tilt_rad)
    return (depth - (camera.height_m - at_height) * sin_t) / cos_t


def ground_bounds(camera: Camera, wall_z: float) -> tuple[float, float, float]:
    """(half_width, z_near, z_far) of a ground box containing every place a visible person can stand."""
    near_depth = camera.focal_px * HEAD_DIAMETER_M / MAX_HEAD_PX
    far_depth = camera.focal_px * HEAD_DIAMETER_M / MIN_HEAD_PX
    # a head at 1.9 m seen on the bottom row: nobody stands nearer than that and is still in view
    _, z_bottom, _ = backproject_to_plane(camera, np.array([camera.cx]), np.array([float(camera.height)]), 1.9)
    z_near = float(z_bottom[0]) if np.isfinite(z_bottom[0]) else 0.5
    z_near = max(0.5, z_near, ground_distance(camera, near_depth, 1.9))
    z_far = min(wall_z, ground_distance(camera, far_depth, 1.5))
    half_width = camera.width / 2.0 / camera.focal_px * (far_depth + 1.0)
    return half_width, z_near, max(z_far, z_near + 1.0)


def _sparse(rng: np.random.Generator, n: int, bounds: tuple[float, float, float]) -> np.ndarray:
    half_width, z_near, z_far = bounds
    return np.stack([rng.uniform(-half_width, half_width, n), rng.uniform(z_near, z_far, n)], axis=1)


def _blobs(rng: np.random.Generator, n: int, bounds: tuple[float, float, float], anchors: np.ndarray) -> np.ndarray:
    groups = int(rng.integers(1, 7))
    sizes = rng.multinomial(n, rng.dirichlet(np.ones(groups)))
    parts = []
    for size in sizes:
        centre = anchors[rng.integers(len(anchors))]
        sigma = math.exp(rng.uniform(math.log(0.7), math.log(6.0)))
        sigma = max(sigma, math.sqrt(size / (2.0 * math.pi * MAX_DENSITY)))
        aspect = rng.uniform(0.6, 1.6)
        parts.append(centre + rng.normal(size=(size, 2)) * np.array([sigma * aspect, sigma / aspect]))
    return np.concatenate(parts) if parts else np.zeros((0, 2))


def _queues(rng: np.random.Generator, n: int, bounds: tuple[float, float, float], anchors: np.ndarray) -> np.ndarray:
    parts, placed = [], 0
    while placed < n:
        length = int(min(n - placed, rng.integers(8, 80)))
        abreast = int(rng.integers(1, 4))
        step = rng.uniform(0.45, 0.8)
        heading = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.08, length))
        path = anchors[rng.integers(len(anchors))] + np.cumsum(
            step * np.stack([np.cos(heading), np.sin(heading)], axis=1), axis=0
        )
        side = np.stack([-np.sin(heading), np.cos(heading)], axis=1)
        lane = (rng.integers(0, abreast, length) - (abreast - 1) / 2.0) * 0.55
        parts.append(path + side * lane[:, None] + rng.normal(0, 0.08, (length, 2)))
        placed += length
    return np.concatenate(parts)


def _plaza(rng: np.random.Generator, n: int, bounds: tuple[float, float, float], anchors: np.ndarray) -> np.ndarray:
    density = rng.uniform(1.2, MAX_DENSITY)
    area = n / density * rng.uniform(1.2, 2.0)  # a part of the rectangle falls out of view
    aspect = rng.uniform(0.5, 2.0)
    side_x, side_z = math.sqrt(area * aspect), math.sqrt(area / aspect)
    spacing = 1.0 / math.sqrt(density)
    gx, gz = np.meshgrid(np.arange(0, side_x, spacing), np.arange(0, side_z, spacing))
    gx = gx + (np.arange(gx.shape[0])[:, None] % 2) * spacing / 2.0  # hexagonal packing
    grid = np.stack([gx.ravel() - side_x / 2.0, gz.ravel() - side_z / 2.0], axis=1)
    grid = grid + rng.normal(0, 0.22 * spacing, grid.shape)
    angle = rng.uniform(-0.5, 0.5)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return anchors[rng.integers(len(anchors))] + grid @ rotation.T


def sample_layout(rng: np.random.Generator, camera: Camera, count: int, wall_z: float, kinds: tuple[str, ...]) -> Crowd:
    """Up to ``count`` visible people arranged by a mixture of ``kinds``; fewer only when the view cannot hold them.

    Each kind proposes ground positions; positions whose heads fall outside the image or the head-size range
    are dropped and the rest topped up with scattered people, a few rounds at most.
    """
    bounds = ground_bounds(camera, wall_z)
    empty = np.zeros(0)
    if count == 0:
        return place_people(camera, empty, empty, empty)
    probe = place_people(camera, *_sparse(rng, 256, bounds).T, np.full(256, 1.7))
    inside = visible(camera, probe, wall_z)
    anchors = np.stack([probe.x[inside], probe.z[inside]], axis=1) if inside.any() else np.array([[0.0, bounds[1]]])
    quotas = rng.multinomial(count, rng.dirichlet(np.ones(len(kinds)) * 2.0))
    proposals = {"blobs": _blobs, "queues": _queues, "plaza": _plaza}
    kept_x, kept_z, kept_s = [], [], []
    need = 0
    for kind, quota in zip(kinds, quotas, strict=True):
        quota = int(quota)
        if quota == 0:
            continue
        if kind == "sparse":
            need += quota
            continue
        points = proposals[kind](rng, quota, bounds, anchors)
        stature = rng.normal(1.7, 0.09, len(points)).clip(1.45, 2.0)
        crowd = place_people(camera, points[:, 0], points[:, 1], stature)
        ok = np.flatnonzero(visible(camera, crowd, wall_z))[:quota]
        kept_x.append(points[ok, 0])
        kept_z.append(points[ok, 1])
        kept_s.append(stature[ok])
        need += quota - len(ok)
    for _ in range(6):  # sparse people, plus whatever the grouped kinds could not fit in view
        if need <= 0:
            break
        points = _sparse(rng, need * 3 + 16, bounds)
        stature = rng.normal(1.7, 0.09, len(points)).clip(1.45, 2.0)
        crowd = place_people(camera, points[:, 0], points[:, 1], stature)
        ok = np.flatnonzero(visible(camera, crowd, wall_z))[:need]
        kept_x.append(points[ok, 0])
        kept_z.append(points[ok, 1])
        kept_s.append(stature[ok])
        need -= len(ok)
    return place_people(camera, np.concatenate(kept_x), np.concatenate(kept_z), np.concatenate(kept_s))


def sample_plan(
    rng: np.random.Generator, width: int, height: int, max_count: int = 1000, min_count: int = 0
) -> ScenePlan:
    """Count, camera, backdrop distance and crowd layout of one scene: the pure first half of rendering."""
    count = sample_count(rng, max_count, min_count)
    camera = sample_camera(rng, width, height, count)
    wall_z = sample_wall_distance(rng, camera)
    n_kinds = int(rng.integers(1, 3))
    kinds = tuple(str(k) for k in rng.choice(LAYOUT_KINDS, size=n_kinds, replace=False))
    crowd = sample_layout(rng, camera, count, wall_z, kinds)
    return ScenePlan(camera=camera, wall_z=wall_z, target_count=count, kinds=kinds, crowd=crowd)

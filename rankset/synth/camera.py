"""A pinhole camera over a flat ground plane: the pure geometry every synthetic scene is drawn with.

World axes: X to the right, Y up, Z forward along the ground; the ground is the plane Y = 0. The camera
stands at (0, ``height_m``, 0), looks along +Z and is pitched down by ``tilt_rad``; it has no roll, and the
principal point is the image centre. Pixel coordinates are continuous: pixel row r covers [r, r + 1).
"Depth" is the camera-frame z of a point (distance along the optical axis), as depth maps usually store it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The diameter of an adult head in metres: converts between head size in pixels and depth.
HEAD_DIAMETER_M = 0.22


@dataclass(frozen=True)
class Camera:
    """Intrinsics (focal length in pixels, image size) and pose (height above ground, downward tilt)."""

    width: int
    height: int
    focal_px: float
    height_m: float
    tilt_rad: float

    def __post_init__(self) -> None:
        assert self.focal_px > 0 and self.height_m > 0, f"degenerate camera {self}"
        assert 0.0 < self.tilt_rad < math.pi / 2, f"tilt must be in (0, 90) degrees, got {self.tilt_rad}"

    @property
    def cx(self) -> float:
        return self.width / 2.0

    @property
    def cy(self) -> float:
        return self.height / 2.0

    @property
    def horizon_v(self) -> float:
        """Image row of the horizon (negative when the camera looks so steeply down that it is out of view)."""
        return self.cy - self.focal_px * math.tan(self.tilt_rad)


def project(camera: Camera, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points to (u, v, depth). Points behind the camera get depth <= 0; callers must drop them."""
    sin_t, cos_t = math.sin(camera.tilt_rad), math.cos(camera.tilt_rad)
    x, y, z = (np.asarray(a, dtype=np.float64) for a in (x, y, z))
    dy = y - camera.height_m
    depth = -dy * sin_t + z * cos_t
    down = -dy * cos_t - z * sin_t  # camera-frame y (pointing down in the image)
    safe = np.where(depth > 1e-9, depth, np.nan)
    u = camera.cx + camera.focal_px * x / safe
    v = camera.cy + camera.focal_px * down / safe
    return u, v, depth


def backproject_to_plane(
    camera: Camera, u: np.ndarray, v: np.ndarray, plane_y: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels to the (X, Z, depth) where their rays meet the horizontal plane Y = ``plane_y``; NaN where they miss."""
    sin_t, cos_t = math.sin(camera.tilt_rad), math.cos(camera.tilt_rad)
    xn = (np.asarray(u, dtype=np.float64) - camera.cx) / camera.focal_px
    yn = (np.asarray(v, dtype=np.float64) - camera.cy) / camera.focal_px
    descent = yn * cos_t + sin_t  # how fast the ray drops per unit of depth
    drop = camera.height_m - plane_y
    depth = np.where(descent * drop > 1e-9, drop / np.where(descent == 0, np.nan, descent), np.nan)
    return depth * xn, depth * (cos_t - yn * sin_t), depth


def ground_depth_rows(camera: Camera) -> np.ndarray:
    """Depth of the ground seen at the centre of each image row; 0 for rows at or above the horizon (sky).

    Depth along the optical axis does not vary along a row for a camera without roll, so one value per row
    describes the whole ground plane.
    """
    rows = np.arange(camera.height, dtype=np.float64) + 0.5
    _, _, depth = backproject_to_plane(camera, np.full_like(rows, camera.cx), rows)
    return np.nan_to_num(depth, nan=0.0).astype(np.float32)


def facade_depth_rows(camera: Camera, wall_z: float) -> np.ndarray:
    """Depth of a vertical wall at Z = ``wall_z`` (facing the camera) seen at the centre of each image row."""
    sin_t, cos_t = math.sin(camera.tilt_rad), math.cos(camera.tilt_rad)
    yn = (np.arange(camera.height, dtype=np.float64) + 0.5 - camera.cy) / camera.focal_px
    forward = cos_t - yn * sin_t
    return np.where(forward > 1e-9, wall_z / np.where(forward > 1e-9, forward, 1.0), 0.0).astype(np.float32)


def pixels_per_metre(camera: Camera, depth: np.ndarray) -> np.ndarray:
    """Image scale of an object at ``depth``: how many pixels one metre spans, parallel to the image plane."""
    return camera.focal_px / np.asarray(depth, dtype=np.float64)

"""Pure geometry on annotation arrays: clamping heads into the picture and following EXIF orientation.

Benchmarks annotate the pixels as stored (MATLAB's ``imread`` ignores EXIF orientation), while Hugging Face
``datasets`` applies the EXIF orientation when it decodes an image. So for the rare picture that carries an
orientation tag, points and boxes are mapped into the oriented frame here and the stored bytes stay untouched.
Coordinates are continuous: pixel (i, j) covers [i, i+1) x [j, j+1).
"""

from __future__ import annotations

import numpy as np

MAX_POINT_COLUMNS = 6  # the widest point rows of any supported format (JHU-Crowd: x, y, w, h, o, b)


def as_points(values: object, what: str = "points") -> np.ndarray:
    """A float64 (N, 2) array from nested lists / arrays; (0, 2) for empty. ValueError names the bad shape.

    Rows may carry more than x, y (JHU-Crowd's six columns: x, y, w, h, occlusion, blur); only x, y are kept.
    No point format has more than :data:`MAX_POINT_COLUMNS` columns, so a (2, N) array wider than that is a
    point list saved transposed (a row of x and a row of y) and is refused rather than read as two points.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what} must be numbers (an (N, 2) array of x, y); could not read them: {e}") from e
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"{what} must be an (N, 2) array of x, y; got shape {array.shape}")
    if array.shape[0] == 2 and array.shape[1] > MAX_POINT_COLUMNS:
        raise ValueError(
            f"{what} have shape {array.shape}: a row of {array.shape[1]} x and a row of y, saved transposed; "
            f"save them as {array.shape[1]} rows of x, y (the transpose, e.g. annPoints = annPoints' in MATLAB)"
        )
    array = array[:, :2]
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise ValueError(
            f"{what} hold {bad} non-finite (NaN or inf) coordinates; fix or delete those rows in the annotation file"
        )
    return array


def clamp_points(points: np.ndarray, width: int, height: int) -> tuple[np.ndarray, int]:
    """Move points outside [0, W) x [0, H) onto the nearest border pixel; return them and how many moved.

    Points inside are left exactly as annotated; a point past the right edge lands at x = W - 1, one left of
    the image at x = 0 (same for y). The count is unchanged: a head annotated just outside still counts.
    """
    if len(points) == 0:
        return points.copy(), 0
    x, y = points[:, 0], points[:, 1]
    outside = (x < 0) | (x >= width) | (y < 0) | (y >= height)
    clamped = points.copy()
    clamped[:, 0] = np.where((x < 0) | (x >= width), np.clip(x, 0, width - 1), x)
    clamped[:, 1] = np.where((y < 0) | (y >= height), np.clip(y, 0, height - 1), y)
    return clamped, int(outside.sum())


def clamp_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip (N, 4) x0, y0, x1, y1 boxes to the picture [0, W] x [0, H] (a box edge may lie on the border)."""
    clipped = boxes.astype(np.float64).copy()
    clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0, width)
    clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0, height)
    return clipped


def oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """The (W, H) a picture of stored size (width, height) has after EXIF ``orientation`` is applied."""
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def orient_points(points: np.ndarray, width: int, height: int, orientation: int) -> np.ndarray:
    """Map points from the stored pixel frame (W x H) into the frame PIL's ``exif_transpose`` produces.

    Orientation values follow the EXIF standard: 1 identity, 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
    6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
    """
    x, y = points[:, 0], points[:, 1]
    w, h = float(width), float(height)
    mapped = {
        1: (x, y),
        2: (w - x, y),
        3: (w - x, h - y),
        4: (x, h - y),
        5: (y, x),
        6: (h - y, x),
        7: (h - y, w - x),
        8: (y, w - x),
    }
    if orientation not in mapped:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
    new_x, new_y = mapped[orientation]
    return np.stack([new_x, new_y], axis=1) if len(points) else points.copy()


def orient_boxes(boxes: np.ndarray, width: int, height: int, orientation: int) -> np.ndarray:
    """Map (N, 4) boxes like :func:`orient_points` maps their corners, keeping x0 <= x1 and y0 <= y1."""
    if len(boxes) == 0:
        return boxes.copy()
    corner0 = orient_points(boxes[:, 0:2], width, height, orientation)
    corner1 = orient_points(boxes[:, 2:4], width, height, orientation)
    return np.concatenate([np.minimum(corner0, corner1), np.maximum(corner0, corner1)], axis=1)

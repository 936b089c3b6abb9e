"""Generated pictures for the dedup, filter and report tests: distinct scenes and their edited copies."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from harvest.pool import Pool


def scene(seed: int, width: int = 192, height: int = 144) -> Image.Image:
    """A distinct picture per seed: a smooth colour field with random discs and boxes of varied sizes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    field = np.zeros((height, width, 3))
    for channel in range(3):
        a, b, phase = rng.uniform(-3, 3, 3)
        field[..., channel] = 0.5 + 0.25 * np.sin(6 * a * x + 6 * b * y + phase)
    image = Image.fromarray((field * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    small = seed % 3 == 1  # every third scene is crowd-like: many small blobs
    for _ in range(150 if small else 25):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(2, 6) if small else rng.uniform(6, 36)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            draw.rectangle([cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r], fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def edited_copies(image: Image.Image) -> dict[str, Image.Image]:
    """The edits a re-posted photo typically goes through: each must still count as the same picture."""
    w, h = image.size
    return {
        "resized": image.resize((w // 2, h // 2), Image.LANCZOS),
        "recompressed": Image.open(io.BytesIO(encode(image, quality=30))),
        "cropped": image.crop((round(0.02 * w), round(0.02 * h), round(0.98 * w), round(0.98 * h))),
        "brightened": ImageEnhance.Brightness(image).enhance(1.2),
    }


def add_pictures(pool: Pool, images: dict[str, Image.Image], source: str = "local", **extra: Any) -> dict[str, str]:
    """Store each picture in the pool as a status-ok row; return name -> id."""
    rows, ids = [], {}
    for name, image in images.items():
        data = encode(image)
        image_id, path = pool.store_image(data, "jpg")
        ids[name] = image_id
        row = {"id": image_id, "url": f"file:///{name}.jpg", "source": source, "mode": "local", "status": "ok"}
        row.update(path=path, width=image.width, height=image.height, bytes=len(data), format="JPEG", title=name)
        row.update(extra)
        rows.append(row)
    pool.append_rows(rows)
    return ids


def write_folder(folder: Path, images: dict[str, Image.Image]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in images.items():
        (folder / f"{name}.jpg").write_bytes(encode(image))
    return folder

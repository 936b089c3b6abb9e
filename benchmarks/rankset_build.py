"""Benchmark: `rankset build` against a plain "decode fully, crop, resize each patch" loop, in one run.

Both write the same ranked-set dataset (same geometry, same writer) from the same 1-2 MP JPEGs, so the
ratio isolates how the pictures are decoded and cut. Prints seconds, pictures per second and the ratios:

    .venv/bin/python benchmarks/rankset_build.py [--n 60] [--num-proc 2]

Reference A ("plain"): for every patch, open and fully decode the JPEG, apply EXIF orientation, convert to
RGB, crop the box and resize it. Reference B ("decode once"): one full decode per picture, then crop and
resize each patch; it shows how much of the gain comes from decoding once versus reduced decoding and
worker processes.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from rankset.build import BuildConfig, build_ranked_sets, source_rng
from rankset.geometry import nested_boxes
from rankset.images import encode_jpeg, to_rgb
from rankset.inputs import scan_folder
from rankset.io import write_dataset_dict
from rankset.schema import ranked_features


def make_pictures(root: Path, n: int, seed: int = 0) -> list[Path]:
    """Photo-like JPEGs of 1-2 MP: smooth background, a few thousand blobs, mild blur, quality 90."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    sizes = [(1280, 960), (1600, 1200), (1440, 1080), (1200, 1200)]
    paths = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(60, 200, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(2500):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, 14)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        img = img.filter(ImageFilter.GaussianBlur(0.8))
        path = root / f"pic{i:04d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def plain_rows(root: Path, cfg: BuildConfig, decode_once: bool):
    """The reference: same geometry and output as rankset build, the obvious way."""
    for picture in scan_folder(root)[0]:
        rng = source_rng(cfg.seed, picture.source_id)
        with Image.open(picture.path) as probe:
            w, h = ImageOps.exif_transpose(probe).size
        ns = nested_boxes(w, h, cfg.k, cfg.s, cfg.r, rng)
        full = to_rgb(ImageOps.exif_transpose(Image.open(picture.path))) if decode_once else None
        patches = []
        for box in ns.boxes:
            img = full if decode_once else to_rgb(ImageOps.exif_transpose(Image.open(picture.path)))
            crop = img.crop(tuple(round(v) for v in box)).resize((cfg.size, cfg.size), Image.Resampling.BICUBIC)
            patches.append({"bytes": encode_jpeg(crop, cfg.quality), "path": None})
        yield {
            "set_id": f"{picture.source_id}-0",
            "source_id": picture.source_id,
            "images": patches,
            "boxes": [list(b) for b in ns.boxes],
            "anchor": list(ns.anchor),
            "source_size": [w, h],
            "license": None,
            "author": None,
            "source_url": picture.source_url,
        }


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60, help="pictures")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-rankset-"))
    try:
        pics = make_pictures(work / "pics", args.n)
        megapixels = np.mean([np.prod(Image.open(p).size) for p in pics]) / 1e6
        cfg = BuildConfig(str(work / "pics"), str(work / "out"), size=args.size, num_proc=args.num_proc)
        features = ranked_features(cfg.k)
        t_plain = timed(
            lambda: write_dataset_dict(work / "plain", {"train": plain_rows(work / "pics", cfg, False)}, features)
        )
        t_once = timed(
            lambda: write_dataset_dict(work / "once", {"train": plain_rows(work / "pics", cfg, True)}, features)
        )
        t_serial = timed(lambda: build_ranked_sets(BuildConfig(**{**cfg.__dict__, "num_proc": 1}), progress=False))
        t_build = timed(lambda: build_ranked_sets(cfg, progress=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.n} JPEGs, mean {megapixels:.2f} MP, k={cfg.k}, s={cfg.s}, patch {cfg.size} px")
    rows = [
        ("plain: full decode per patch", t_plain),
        ("decode once, full resolution", t_once),
        ("rankset build, 1 process", t_serial),
        (f"rankset build, {args.num_proc} processes", t_build),
    ]
    for name, seconds in rows:
        print(f"  {name:<36} {seconds:7.2f} s  {args.n / seconds:7.1f} pictures/s  x{t_plain / seconds:5.2f}")
    print(f"ratio rankset build / plain reference: {t_plain / t_build:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()

"""Tiled whole-image inference against one pass over the whole picture, same model and picture, same process.

``train eval`` / ``predict`` cut a picture larger than ``--tile`` into tiles whose kept cores carry half the model's
receptive field of context (train.evaluate). This prints, per model and tile, the time of the tiled pass over the
time of one whole pass (the price of bounded memory: context pixels are computed twice), the relative difference of
the two counts and the largest cell difference over the largest cell (both 0 up to float rounding when the tile
leaves room for the full context). Weights are random (the same FLOPs as trained ones); the picture is smooth noise.

    python benchmarks/eval_tiling.py --models cfcn,vgg16-density --size 1536x2304 --tiles 512,1024
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def smooth_picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 noise upsampled 16x: smooth like a photo, not white noise."""
    from PIL import Image

    small = np.random.default_rng(seed).integers(0, 255, size=(max(1, height // 16), max(1, width // 16), 3))
    return np.array(Image.fromarray(small.astype(np.uint8)).resize((width, height), Image.BILINEAR))


def timed_density(model: object, picture: np.ndarray, tile: int, device: object) -> tuple[np.ndarray, float]:
    """The density map of ``picture`` in tiles of ``tile`` and the seconds it took."""
    from train.evaluate import predict_density

    stride = int(model.output_stride)  # type: ignore[attr-defined]
    start = time.perf_counter()
    density = predict_density(model, picture, stride, tile, device, False, 1.0)
    return density, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cfcn,vgg16-density", help="comma-separated registered models")
    parser.add_argument("--size", default="1024x1536", help="picture HxW in pixels")
    parser.add_argument("--tiles", default="512,1024", help="comma-separated --tile values")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from train.evaluate import context_margin
    from train.models.registry import create_model

    torch.manual_seed(0)
    device = torch.device(args.device)
    height, width = (int(v) for v in args.size.lower().split("x"))
    picture = smooth_picture(height, width)
    print(f"picture {height}x{width}, device {device}, torch threads {torch.get_num_threads()}")
    header = ("model", "tile", "margin", "tiled/whole time", "count rel. diff", "max cell diff")
    print(f"{header[0]:<15} {header[1]:>5} {header[2]:>6} {header[3]:>17} {header[4]:>16} {header[5]:>14}")
    for arch in args.models.split(","):
        model = create_model(arch).eval().to(device)
        stride = int(model.output_stride)
        align = max(stride, int(getattr(model, "input_multiple", stride)))
        one_pass = max(height, width) + align  # a tile larger than the picture: one whole pass
        timed_density(model, picture, one_pass, device)  # warm-up
        whole, whole_s = timed_density(model, picture, one_pass, device)
        for tile in (int(v) for v in args.tiles.split(",")):
            tiled, tiled_s = timed_density(model, picture, tile, device)
            count_diff = abs(float(tiled.sum()) - float(whole.sum())) / max(abs(float(whole.sum())), 1e-12)
            cell_diff = float(np.abs(tiled - whole).max() / max(float(np.abs(whole).max()), 1e-12))
            margin = context_margin(model, tile // align * align, align)
            print(f"{arch:<15} {tile:>5} {margin:>6} {tiled_s / whole_s:>17.2f} {count_diff:>16.1e} {cell_diff:>14.1e}")


if __name__ == "__main__":
    main()

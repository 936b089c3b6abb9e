"""Benchmark: `harvest filter` embedding throughput against the bare ``model.encode_image`` loop.

Both sides use the same randomly initialised open_clip model, device and batch size. The reference feeds
ready-made tensors to ``encode_image``; the pipeline (``harvest.embed.embed_pictures``) decodes JPEG files
from a pool in DataLoader workers, preprocesses, encodes and normalises. The ratio pipeline / bare
(target >= 0.9) says how much the input pipeline costs. Also timed: the whole ``filter_pool`` run.

    python benchmarks/clip_filter_throughput.py --device cpu                       # small model, CPU
    python benchmarks/clip_filter_throughput.py --device cuda --model ViT-B-32 --images 4096 --batch-size 256
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

# A small ViT for CPU runs: 64 px input, 8 px patches (64 tokens), width 256, 4 layers.
BENCH_SMALL = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 256, "head_width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
}


def make_pool(root: Path, count: int, width: int, height: int, seed: int) -> object:
    """A pool of ``count`` JPEG pictures (smooth noise, ~photo-sized files) with status-ok rows."""
    from PIL import Image

    from harvest.pool import Pool

    pool = Pool.create(root)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(count):
        small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        image_id, path = pool.store_image(buffer.getvalue(), "jpg")
        rows.append({"id": image_id, "url": f"file:///{k}.jpg", "status": "ok", "path": path,
                     "width": width, "height": height})  # fmt: skip
    pool.append_rows(rows)
    return pool


def main() -> None:
    import open_clip
    import torch

    from harvest.clip_filter import FilterConfig, filter_pool
    from harvest.embed import ClipBundle, embed_pictures, register_model_configs, resolve_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="crowdrank-bench-small")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader decoding processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--picture-size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed runs per side")
    args = parser.parse_args()

    register_model_configs()
    work = Path(tempfile.mkdtemp(prefix="clip-bench-"))
    if args.model == "crowdrank-bench-small":
        (work / "configs").mkdir()
        (work / "configs" / "crowdrank-bench-small.json").write_text(json.dumps(BENCH_SMALL))
        open_clip.add_model_config(work / "configs")
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(args.model, pretrained=None, device=device)
    model.eval()
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    bundle = ClipBundle(model, preprocess, open_clip.get_tokenizer(args.model), device, "bench", size)
    pool = make_pool(work / "pool", args.images, *args.picture_size, seed=0)
    paths = [str(pool.path_of(p)) for p in pool.read_index()["path"]]
    cuda = device.type == "cuda"

    def bare() -> float:
        batches = [
            torch.randn(min(args.batch_size, args.images - s), 3, size, size)
            for s in range(0, args.images, args.batch_size)
        ]
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast(device.type, enabled=cuda):
            for batch in batches:
                model.encode_image(batch.to(device, non_blocking=True), normalize=True).float().cpu()
        if cuda:
            torch.cuda.synchronize()
        return args.images / (time.perf_counter() - start)

    def pipeline() -> float:
        start = time.perf_counter()
        embed_pictures(bundle, paths, batch_size=args.batch_size, workers=args.workers)
        if cuda:
            torch.cuda.synchronize()
        return args.images / (time.perf_counter() - start)

    bare(), pipeline()  # warm-up: kernels, allocator, page cache
    # Interleaved, so that load from other processes on a shared machine hits both sides alike; median ratio.
    rates = [(bare(), pipeline()) for _ in range(args.repeats)]
    ratios = sorted(p / b for b, p in rates)
    bare_rate = float(np.median([b for b, _ in rates]))
    pipe_rate = float(np.median([p for _, p in rates]))

    checkpoint = work / "weights.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    config = FilterConfig(pool.root, model=args.model, checkpoint=checkpoint, device=args.device,
                          batch_size=args.batch_size, workers=args.workers, progress=False)  # fmt: skip
    start = time.perf_counter()
    filter_pool(config)
    full_s = time.perf_counter() - start
    start = time.perf_counter()
    filter_pool(config)  # every embedding cached: re-scoring only
    rescore_s = time.perf_counter() - start

    print(f"device {device}, model {args.model} ({size} px input), {args.images} pictures of "
          f"{args.picture_size[0]}x{args.picture_size[1]} JPEG, batch {args.batch_size}, workers {args.workers}, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"bare encode_image loop : {bare_rate:9.1f} images/s (median)")
    print(f"embed_pictures pipeline: {pipe_rate:9.1f} images/s (median)")
    print(f"ratio pipeline / bare  : {ratios[len(ratios) // 2]:9.3f}   (median of {len(ratios)} interleaved pairs; "
          f"range {ratios[0]:.3f}..{ratios[-1]:.3f}; target >= 0.9)")  # fmt: skip
    print(
        f"filter_pool, cold      : {full_s:9.2f} s  ({args.images / full_s:.1f} images/s incl. model load, text, cache)"
    )
    print(f"filter_pool, cached    : {rescore_s:9.2f} s  (new threshold, no model)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: `harvest filter` embedding throughput against the bare ``model.encode_image`` loop.

Both sides use the same randomly initialised open_clip model, device and batch size. The reference feeds
ready-made float32 tensors (on the host, as a loader would hand them over) to ``encode_image``; the pipeline
(``harvest.embed.embed_pictures``) decodes JPEG files from a pool in DataLoader workers, resizes and crops
them there, and normalises on the device before encoding. Each timed pipeline call builds its own DataLoader,
as ``harvest filter`` does, so three figures are reported for it:

* including worker start-up: all pictures / the whole call (worker processes start, import torch, decode);
* start-up: the time from the call to the first batch's embeddings on the host;
* steady state: the pictures of the batches between the first round (one batch per worker; those decode in
  parallel during start-up) and the last batch (maybe partial; on CUDA collected without a next batch to wait
  for) / the time from the first round's last batch embedded to the second-last batch embedded. It needs
  several batches per worker: use ``--images`` of at least ``8 * workers * batch-size`` for a stable figure.

The ratio steady state / bare (target >= 0.9) says how much the input pipeline costs a long ``harvest filter``
run; the ratio including start-up is what a run of only ``--images`` pictures gets. Also timed: decoding alone
(the DataLoader without a model) and the whole ``filter_pool`` run. ``--json PATH`` writes every figure.

    python benchmarks/clip_filter_throughput.py --device cpu                       # small model, CPU
    python benchmarks/clip_filter_throughput.py --device cuda --model ViT-B-32 --images 16384 --batch-size 256 \
        --workers 8
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
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


@dataclass
class PipelineRun:
    """One timed call: its total seconds and, per batch, the seconds since the call and the pictures so far."""

    total_s: float
    marks: list[tuple[float, int]]

    def steady(self, first_round: int) -> tuple[float, int] | None:
        """(images/s, pictures counted) of the batches after the first ``first_round`` and before the last one.

        Each batch is timed from the previous one's mark to its own, so start-up, the first round (decoded in
        parallel while the workers started) and the last batch stay out; None with too few batches.
        """
        if len(self.marks) < first_round + 2:
            return None
        at, done = self.marks[first_round - 1]
        end, count = self.marks[-2]
        return (count - done) / (end - at), count - done


def median(values: list[float]) -> float:
    return float(np.median(values))


def main() -> None:
    import open_clip
    import torch

    from harvest.clip_filter import FilterConfig, filter_pool
    from harvest.embed import ClipBundle, PictureFiles, embed_pictures, register_model_configs, resolve_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="crowdrank-bench-small")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader decoding processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--picture-size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timed runs per side")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
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
    batches = -(-args.images // args.batch_size)
    first_round = max(args.workers, 1)  # batches that decode in parallel while the workers start

    # The reference's input: float32 host tensors of the model's input shape, made once outside the timers (a ring
    # of up to 8 distinct batches, so that a large --images does not hold every batch in memory).
    ring = [torch.randn(args.batch_size, 3, size, size) for _ in range(min(8, batches))]

    def bare() -> float:
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast(device.type, enabled=cuda):
            for k, s in enumerate(range(0, args.images, args.batch_size)):
                batch = ring[k % len(ring)][: min(args.batch_size, args.images - s)]
                model.encode_image(batch.to(device, non_blocking=True), normalize=True).float().cpu()
        if cuda:
            torch.cuda.synchronize()
        return args.images / (time.perf_counter() - start)

    def pipeline() -> PipelineRun:
        marks: list[tuple[float, int]] = []
        start = time.perf_counter()

        def mark(count: int) -> None:  # called once a batch's embeddings are on the host
            marks.append((time.perf_counter() - start, (marks[-1][1] if marks else 0) + count))

        embed_pictures(bundle, paths, batch_size=args.batch_size, workers=args.workers, on_progress=mark)
        if cuda:
            torch.cuda.synchronize()
        return PipelineRun(time.perf_counter() - start, marks)

    def decode_only() -> PipelineRun:
        """The same DataLoader as embed_pictures, no model: what the workers can deliver."""
        loader = torch.utils.data.DataLoader(
            PictureFiles(paths, preprocess, size),
            batch_size=args.batch_size,
            num_workers=args.workers,
            pin_memory=cuda,
            prefetch_factor=4 if args.workers > 0 else None,
        )
        marks: list[tuple[float, int]] = []
        start = time.perf_counter()
        for positions, _, _ in loader:
            marks.append((time.perf_counter() - start, (marks[-1][1] if marks else 0) + len(positions)))
        return PipelineRun(time.perf_counter() - start, marks)

    bare(), pipeline()  # warm-up: kernels, allocator, page cache
    # Interleaved, so that load from other processes on a shared machine hits both sides alike; median ratios.
    pairs = [(bare(), pipeline()) for _ in range(args.repeats)]
    bare_rates = [b for b, _ in pairs]
    total_rates = [args.images / run.total_s for _, run in pairs]
    startups = [run.marks[0][0] for _, run in pairs if run.marks]
    steadies = [run.steady(first_round) for _, run in pairs]
    steady_rates = [s[0] for s in steadies if s is not None]
    total_ratios = sorted(t / b for t, b in zip(total_rates, bare_rates, strict=True))
    steady_ratios = sorted(s[0] / b for s, b in zip(steadies, bare_rates, strict=True) if s is not None)
    decoded = decode_only()
    decode_steady = decoded.steady(first_round)

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

    def mid(values: list[float]) -> float:
        return values[len(values) // 2]

    print(f"device {device}, model {args.model} ({size} px input), {args.images} pictures of "
          f"{args.picture_size[0]}x{args.picture_size[1]} JPEG, batch {args.batch_size} ({batches} batches), "
          f"workers {args.workers}, torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"bare encode_image loop          : {median(bare_rates):9.1f} images/s (median; float32 host batches)")
    print(f"pipeline, incl. worker start-up : {median(total_rates):9.1f} images/s (median; whole embed_pictures call, "
          f"new DataLoader)")  # fmt: skip
    print(f"pipeline start-up               : {median(startups):9.3f} s        (median; call -> first batch embedded)")
    if steady_rates:
        counted = steadies[0][1] if steadies[0] else 0
        print(f"pipeline, steady state          : {median(steady_rates):9.1f} images/s (median; the {counted} pictures "
              f"after the first {first_round} batch(es) and before the last)")  # fmt: skip
    else:
        print(f"pipeline, steady state          :       n/a   ({batches} batches < {first_round} workers + 2: "
              f"raise --images)")  # fmt: skip
    if decode_steady:
        print(f"decoding alone (no model)       : {decode_steady[0]:9.1f} images/s (steady state, one run; "
              f"{args.images / decoded.total_s:.1f} incl. start-up)")  # fmt: skip
    if steady_ratios:
        print(f"ratio steady state / bare       : {mid(steady_ratios):9.3f}   (median of {len(steady_ratios)} "
              f"interleaved pairs; range {steady_ratios[0]:.3f}..{steady_ratios[-1]:.3f}; target >= 0.9)")  # fmt: skip
    print(f"ratio incl. start-up / bare     : {mid(total_ratios):9.3f}   (median of {len(total_ratios)}; range "
          f"{total_ratios[0]:.3f}..{total_ratios[-1]:.3f}; start-up is paid once per harvest filter run)")  # fmt: skip
    print(f"filter_pool, cold               : {full_s:9.2f} s  ({args.images / full_s:.1f} images/s incl. model load, "
          f"text, cache)")  # fmt: skip
    print(f"filter_pool, cached             : {rescore_s:9.2f} s  (new threshold, no model)")
    if args.json is not None:
        figures = {
            "device": str(device),
            "model": args.model,
            "image_size": size,
            "images": args.images,
            "picture_size": list(args.picture_size),
            "batch_size": args.batch_size,
            "workers": args.workers,
            "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(),
            "bare_images_per_s": median(bare_rates),
            "pipeline_images_per_s_incl_startup": median(total_rates),
            "pipeline_startup_s": median(startups) if startups else None,
            "pipeline_images_per_s_steady": median(steady_rates) if steady_rates else None,
            "steady_first_round_batches": first_round,
            "decode_only_images_per_s_steady": decode_steady[0] if decode_steady else None,
            "decode_only_images_per_s_incl_startup": args.images / decoded.total_s,
            "ratio_steady": mid(steady_ratios) if steady_ratios else None,
            "ratio_steady_range": [steady_ratios[0], steady_ratios[-1]] if steady_ratios else None,
            "ratio_incl_startup": mid(total_ratios),
            "ratio_incl_startup_range": [total_ratios[0], total_ratios[-1]],
            "filter_pool_cold_s": full_s,
            "filter_pool_cached_s": rescore_s,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

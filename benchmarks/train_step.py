"""Training throughput of ``train fit`` against a plain hand-written PyTorch loop, same model and batch, same run.

The library side runs the real ``train.loop.fit`` (count-only, DataLoader workers decoding JPEGs, cropping and
rendering density targets) and reads its ``metrics.jsonl``: images per second over the step loop and the time
spent waiting for data versus computing. The plain side feeds the same model pre-made tensors already on the
device (no data loading at all) through normalise -> forward -> Eq. 1 loss -> backward -> optimizer step.
A third figure runs ``train.loop.train_step`` in the plain loop's place (no data loading), isolating the step.
A ratio near 1 says the loop adds no overhead; a small data-wait share says the loader is not the bottleneck.
On a CPU the DataLoader workers share the cores with the step, so for a tiny model the whole-loop ratio also
measures JPEG decoding, cropping and target rendering that the plain loop never does.

With ``--paradigm multitask`` each step also sees ``--sets`` ranked sets of ``--k`` patches (the paper's 5 x 5),
read by a second DataLoader from a generated ranked-set dataset, and the plain loop adds Eq. 5's hinge on the same
number of device-resident patches in the same forward pass. Throughput counts labeled crops plus ranked patches.

    python benchmarks/train_step.py --model cfcn --input-size 128 --batch 8 --steps 60 [--device cuda]
    python benchmarks/train_step.py --paradigm multitask --sets 5 --k 5
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_labeled(out: Path, images: int, size: tuple[int, int], seed: int = 0) -> Path:
    """A labeled dataset of ``images`` noisy JPEGs with random head points, through rankset's writer."""
    from PIL import Image

    from rankset.io import write_dataset_dict
    from rankset.schema import labeled_features

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(images):
        pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        points = rng.uniform(0, 1, size=(int(rng.integers(10, 200)), 2)) * np.array(size)
        rows.append(
            {
                "image_id": f"img{i}",
                "image": {"bytes": buffer.getvalue(), "path": None},
                "points": points.astype(np.float32).tolist(),
                "count": len(points),
                "dataset": "bench",
                "split": "train",
            }
        )

    write_dataset_dict(out, {"train": rows}, labeled_features())  # an iterable of rows is written in order
    return out


def make_ranked(out: Path, sets: int, k: int, side: int, seed: int = 1) -> Path:
    """A ranked-set dataset of ``sets`` sets of ``k`` noisy JPEG patches stored at ``side`` px, as ``rankset build
    --size`` writes them when it matches the training input size."""
    from PIL import Image

    from rankset.io import write_dataset_dict
    from rankset.schema import ranked_features

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(sets):
        cells = []
        for _ in range(k):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, size=(side, side, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
            cells.append({"bytes": buffer.getvalue(), "path": None})
        boxes = [[0.0, 0.0, float(side * (k - j)), float(side * (k - j))] for j in range(k)]
        rows.append(
            {
                "set_id": f"set{i}",
                "source_id": f"src{i}",
                "images": cells,
                "boxes": boxes,
                "anchor": [0.0, 0.0],
                "source_size": [side * k, side * k],
                "license": None,
                "author": None,
                "source_url": None,
            }
        )

    write_dataset_dict(out, {"train": rows}, ranked_features(k))
    return out


def per_step_images(args: argparse.Namespace) -> int:
    """Pictures through the forward pass per step: labeled crops, plus ranked patches when multitask."""
    return args.batch + (args.sets * args.k if args.paradigm == "multitask" else 0)


def library_run(data: Path, ranked: Path | None, run: Path, args: argparse.Namespace) -> dict[str, float]:
    """``fit`` for ``args.steps`` steps; throughput and data-wait share from the log, first interval excluded.
    The log's ``images_per_s`` counts every picture of a step: labeled crops and ranked patches."""
    from train.loop import fit
    from train.manifest import config_from_dict

    log_every = max(1, args.steps // 6)
    multitask = args.paradigm == "multitask"
    config = config_from_dict(
        {
            "name": "bench",
            "model": {"arch": args.model, "pretrained": "none"},
            "tasks": {"rank": {"weight": 1.0, "sets_per_batch": args.sets}} if multitask else {},
            "data": {
                "labeled": [str(data)],
                "ranked": [str(ranked)] if multitask else [],
                "crop": [args.input_size, args.input_size * 2],
                "input_size": args.input_size,
                "sigma": 4.0,
                "workers": args.workers,
            },
            "schedule": {
                "paradigm": args.paradigm,
                "steps": args.steps,
                "batch": args.batch,
                "eval_every": args.steps,
                "log_every": log_every,
                "device": args.device,
                "compile": args.compile,
            },
            "optim": {"name": "sgd", "lr": 1e-6, "momentum": 0.9, "weight_decay": 5e-4},
        }
    )
    fit(config, run, show_progress=False)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steady = [r for r in logged if "images_per_s" in r][1:]  # the first interval holds warm-up
    wait = sum(r["data_wait_s"] for r in steady)
    compute = sum(r["compute_s"] for r in steady)
    images = sum(r["images_per_s"] * (r["data_wait_s"] + r["compute_s"]) for r in steady)
    return {"images_per_s": images / (wait + compute), "data_wait_share": wait / (wait + compute)}


def plain_run(args: argparse.Namespace, use_library_step: bool = False) -> float:
    """Images per second of a hand-written loop on device-resident tensors (same model, batch and optimizer).

    With ``use_library_step`` the body is ``train.loop.train_step`` instead: the step itself, without data loading.
    Multitask: the ranked patches join the labeled crops in one forward pass, and Eq. 5's hinge is added.
    """
    import torch

    from train.device import autocast, normalize, resolve_device
    from train.losses import density_mse, ranking_hinge
    from train.models import create_model

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = create_model(args.model).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # as train.loop.fit does on CUDA
    if args.compile:
        model = torch.compile(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9, weight_decay=5e-4)
    side, out_side = args.input_size, args.input_size // create_model(args.model).output_stride
    images = torch.randint(0, 255, (args.batch, 3, side, side), dtype=torch.uint8, device=device)
    targets = torch.rand(args.batch, 1, out_side, out_side, device=device)
    multitask = args.paradigm == "multitask"
    ranked = (
        torch.randint(0, 255, (args.sets, args.k, 3, side, side), dtype=torch.uint8, device=device)
        if multitask
        else None
    )
    pixels = torch.cat([images, ranked.flatten(0, 1)]) if multitask else images

    from train.loop import train_step
    from train.manifest import config_from_dict

    config = config_from_dict(
        {
            "data": {"labeled": ["unused"], "ranked": ["unused"] if multitask else []},
            "tasks": {"rank": {"weight": 1.0, "sets_per_batch": args.sets}} if multitask else {},
            "schedule": {"paradigm": args.paradigm, "device": args.device},
        }
    )

    def library_step() -> None:
        train_step(model, optimizer, (images, targets), ranked, config, device)["loss"].item()

    def plain_step() -> None:
        x = normalize(pixels)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, True):
            out = model(x)
        loss = density_mse(out[: args.batch], targets)
        if multitask:
            loss = loss + ranking_hinge(out[args.batch :].unflatten(0, (args.sets, args.k)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # the library reads every loss term each step (divergence check); so does this loop

    step = library_step if use_library_step else plain_step
    warmup = max(1, args.steps // 6)
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps - warmup):
        step()
    return (args.steps - warmup) * per_step_images(args) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cfcn")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--images", type=int, default=64, help="labeled images in the generated dataset")
    parser.add_argument("--image-size", default="512x384", help="WIDTHxHEIGHT of the generated images")
    parser.add_argument("--workers", type=int, default=-1, help="-1: min(8, cpus), the library default")
    parser.add_argument("--paradigm", choices=("count-only", "multitask"), default="count-only")
    parser.add_argument("--sets", type=int, default=5, help="ranked sets per step (multitask)")
    parser.add_argument("--k", type=int, default=5, help="patches per ranked set (multitask)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.image_size.split("x"))

    with tempfile.TemporaryDirectory(prefix="crowdrank-bench-") as tmp:
        data = make_labeled(Path(tmp) / "data", args.images, (width, height))
        multitask = args.paradigm == "multitask"
        ranked = make_ranked(Path(tmp) / "ranked", args.images, args.k, args.input_size) if multitask else None
        plain = plain_run(args)
        step_only = plain_run(args, use_library_step=True)
        library = library_run(data, ranked, Path(tmp) / "run", args)
    import torch

    from train.device import resolve_device

    figures = {
        "device": str(resolve_device(args.device)),
        "torch_threads": torch.get_num_threads(),
        "model": args.model,
        "paradigm": args.paradigm,
        "input_size": args.input_size,
        "batch": args.batch,
        "steps": args.steps,
        "plain_images_per_s": plain,
        "train_step_images_per_s": step_only,
        "train_step_ratio": step_only / plain,
        "library_images_per_s": library["images_per_s"],
        "ratio": library["images_per_s"] / plain,
        "data_wait_share": library["data_wait_share"],
    }
    for key, value in figures.items():
        print(f"{key:>22}: {value:.3f}" if isinstance(value, float) else f"{key:>22}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

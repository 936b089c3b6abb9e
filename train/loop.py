"""The training loop, top to bottom: set up, then ``train_step()`` per step, ``evaluate()`` every ``eval_every``.

``fit`` owns the run folder (DESIGN.md): ``config.toml``, ``metrics.jsonl``, ``last.pt``, ``best.pt``
(lowest validation MAE, never chosen on test), ``eval.json`` (test split, once, with ``best.pt``) and
``plots/``. ``resume=True`` restores model, optimizer, scheduler, step and RNG states from ``last.pt``; the
data order is a function of the draw number (train.data), so a resumed run sees the same batches.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rankset.io import staged_file
from train.checkpoint import load_checkpoint, load_weights, restore_rng_states, save_checkpoint
from train.config import RunConfig
from train.data import LABELED_STREAM, RANKED_STREAM, DrawSampler, LabeledCrops, RankedSets, make_loader
from train.device import autocast, normalize, resolve_device, to_device
from train.errors import ConfigError, DivergenceError
from train.evaluate import evaluate_sources
from train.losses import multitask_loss
from train.manifest import config_to_dict, config_to_toml
from train.models.registry import density_of
from train.paradigms import active_tasks, batches_before
from train.runlock import run_folder_lock
from train.runlog import (
    MetricsLog,
    clear_partial_run,
    remove_temp_files,
    write_json,
    write_rows_csv,
    write_text_atomic,
)
from train.sources import RunSources, resolve_sources


@dataclass
class FitResult:
    """What a finished run reports: where it is, how far it went, its best validation and test numbers."""

    out: Path
    steps: int
    resumed_from: int
    best_val_mae: float
    test: dict[str, float] = field(default_factory=dict)
    last_terms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def param_groups(model: Any, config: RunConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups. ``optim.lr_mult = "uniform"``: one group. ``"caffe"``: Caffe's convention,
    as in the prototxt of Liu et al. 2018: weights at (lr, weight decay) x (m, 1) and biases x (2m, 0), where m is
    1, or the model's ``head_lr_mult`` for its new layers (vgg16-density's density conv: 10). Groups keep the order
    of first appearance, so a resumed run rebuilds the same groups."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    o = config.optim
    if o.lr_mult == "uniform":
        return [{"params": [p for _, p in params]}]
    net = model.base if hasattr(model, "base") else model
    heads: dict[str, float] = getattr(net, "head_lr_mult", {})
    groups: dict[tuple[float, float], list[Any]] = {}
    for name, p in params:
        local = name.removeprefix("base.")
        mult = next((m for prefix, m in heads.items() if local.startswith(prefix + ".")), 1.0)
        bias = name.endswith(".bias")
        groups.setdefault((mult * (2.0 if bias else 1.0), 0.0 if bias else 1.0), []).append(p)
    return [{"params": ps, "lr": o.lr * lr, "weight_decay": o.weight_decay * wd} for (lr, wd), ps in groups.items()]


def build_optimizer(model: Any, config: RunConfig) -> tuple[Any, Any]:
    """The optimizer of ``[optim]`` over :func:`param_groups` and a per-step MultiStepLR over ``lr_milestones``."""
    import torch

    o = config.optim
    params = param_groups(model, config)
    if o.name == "sgd":
        optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    elif o.name == "adam":
        optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(o.lr_milestones), gamma=o.lr_gamma)
    return optimizer, scheduler


def train_step(
    model: Any,
    optimizer: Any,
    count_batch: tuple[Any, ...] | None,
    rank_batch: Any | None,
    config: RunConfig,
    device: Any,
    unlabeled_batch: tuple[Any, ...] | None = None,
    step: int = 0,
) -> dict[str, Any]:
    """One optimisation step on the active tasks; every task shares one forward pass. Returns the loss terms.

    ``unlabeled_batch`` = (pixels, flipped, skipped) of the upside-down task; its pictures join the forward pass
    after the ranked patches. A multi-head model's extra outputs feed :func:`train.tasks.auxiliary_terms`.
    """
    from train.tasks import auxiliary_terms

    separate = rank_batch is not None and config.tasks.rank.batchnorm == "separate"
    parts, count_n, rank_n = [], 0, 0
    if count_batch is not None:
        images, targets = count_batch[0], count_batch[1]  # (B, 3, S, S) uint8, (B, 1, S/s, S/s)
        parts.append(images)
        count_n = images.shape[0]
    if rank_batch is not None:
        sets, k = rank_batch.shape[:2]  # (N, k, 3, S, S) uint8
        rank_n = sets * k
        if not separate:
            parts.append(rank_batch.flatten(0, 1))  # (N*k, 3, S, S)
    if unlabeled_batch is not None:
        parts.append(unlabeled_batch[0])  # (U, 3, S, S)
    out = _forward(model, parts, device, config) if parts else None  # (B + N*k + U, 1, S/s, S/s) or a dict
    density = density_of(out) if out is not None else None
    count_pred = density[:count_n] if count_batch is not None else None
    count_target = to_device(targets, device) if count_batch is not None else None
    if separate:
        with running_stats_frozen(model):
            rank_density = density_of(_forward(model, [rank_batch.flatten(0, 1)], device, config))
        rank_pred = rank_density.unflatten(0, (sets, k))
    elif rank_batch is not None:
        rank_pred = density[count_n : count_n + rank_n].unflatten(0, (sets, k))  # (N, k, 1, h, w)
    else:
        rank_pred = None
    terms = multitask_loss(
        count_pred,
        count_target,
        rank_pred,
        config.tasks.count.weight,
        config.tasks.rank.weight,
        config.tasks.rank.margin,
        config.data.density_scale,
    )
    if isinstance(out, dict):
        on_device = tuple(to_device(t, device) for t in count_batch) if count_batch is not None else None
        flipped = to_device(unlabeled_batch[1], device) if unlabeled_batch is not None else None
        extra = auxiliary_terms(out, count_n, on_device, flipped, config, model, step)
        terms.update(extra)
        terms["loss"] = terms["loss"] + sum(extra.values())
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    return terms


def _forward(model: Any, parts: list[Any], device: Any, config: RunConfig) -> Any:
    """The model's output on the uint8 pixel batches ``parts``, concatenated in order, normalised on ``device``."""
    import torch

    pixels = parts[0] if len(parts) == 1 else torch.cat(parts)
    x = normalize(to_device(pixels, device, channels_last=True))
    with autocast(device, config.schedule.amp):
        return model(x)


@contextmanager
def running_stats_frozen(model: Any) -> Iterator[None]:
    """BatchNorm layers keep normalising with batch statistics but leave their running statistics untouched.

    A momentum of 0 makes the running update ``(1 - 0) * running + 0 * batch`` a no-op; the running statistics,
    which evaluation uses, then describe only the batches seen outside this block.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def evaluate(model: Any, sources: list, config: RunConfig, device: Any) -> tuple[dict[str, float], list[dict]]:
    """Whole-image metrics of ``model`` on ``sources`` (validation or test rows)."""
    return evaluate_sources(
        model,
        sources,
        stride=int(model.output_stride),
        tile=config.schedule.eval_tile,
        device=device,
        amp=config.schedule.amp,
        density_scale=config.data.density_scale,
    )


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_iterators(
    config: RunConfig, sources: RunSources, stride: int, start: int, pin_memory: bool, notes: list[str] | None = None
) -> tuple:
    """Iterators over the count and rank batches steps ``start``.. will consume (None for a task never used).

    The labeled images are decoded into memory first, up to ``data.cache_gb``; a line saying how many goes to
    ``notes``."""
    schedule, workers = config.schedule, config.data.num_workers
    count_from, rank_from = batches_before(schedule, start)
    count_to, rank_to = batches_before(schedule, schedule.steps)
    count_iter = rank_iter = None
    if count_to > count_from:
        crops = LabeledCrops(
            sources.labeled,
            config.data.input_size,
            (config.data.crop[0], config.data.crop[1]),
            config.data.sigma,
            stride,
            config.data.density_scale,
            config.seed,
            with_depth=config.tasks.depth is not None,
            depth_dir=config.data.depth_dir,
        )
        rows, size = crops.fill_cache(int(config.data.cache_gb * 2**30))
        if notes is not None and config.data.cache_gb > 0:
            notes.append(cache_note(config, rows, len(crops), size))
        first, batches = count_from * schedule.batch, count_to - count_from
        sampler = DrawSampler(len(crops), schedule.batch, config.seed, LABELED_STREAM, first, batches)
        count_iter = iter(make_loader(crops, sampler, workers, pin_memory))
    if rank_to > rank_from:
        ranked = RankedSets(sources.ranked, config.data.input_size, config.seed)
        per = config.tasks.rank.sets_per_batch
        sampler = DrawSampler(len(ranked), per, config.seed, RANKED_STREAM, rank_from * per, rank_to - rank_from)
        rank_iter = iter(make_loader(ranked, sampler, workers, pin_memory))
    return count_iter, rank_iter


def cache_note(config: RunConfig, rows: int, total: int, size: int) -> str:
    """What the decoded-image cache did; with depth targets it is off by design, which "decoded 0 of N" hid."""
    if config.tasks.depth is not None:
        return (
            f"decoded-image cache off: [tasks.depth] reads each of the {total} labeled training rows whole, "
            f"so data.cache_gb = {config.data.cache_gb:g} is not used"
        )
    return (
        f"decoded {rows} of {total} labeled training images into memory once ({size / 2**30:.2f} GiB, "
        f"data.cache_gb = {config.data.cache_gb:g})"
    )


def fit(config: RunConfig, out: str | Path, resume: bool = False, show_progress: bool = True) -> FitResult:
    """Train ``config`` into run folder ``out``; every check that can fail does so before the first step.

    The folder is locked for the whole run (train.runlock): a second fit into it fails at once instead of
    interleaving its logs and checkpoints with this one's."""
    with run_folder_lock(Path(out)):
        return _fit(config, Path(out), resume, show_progress)


def _fit(config: RunConfig, out: Path, resume: bool, show_progress: bool) -> FitResult:
    import torch

    from train.models.assemble import build_model
    from train.plots import plot_run
    from train.tasks import calibrate_from_training_crops
    from train.unlabeled import upside_down_iterator

    started = time.perf_counter()
    if (out / "last.pt").exists() and not resume:
        raise ConfigError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")
    if resume and not (out / "last.pt").exists():
        raise ConfigError(
            f"--resume: {out / 'last.pt'} does not exist (a run stopped before its first checkpoint, every "
            f"schedule.eval_every = {config.schedule.eval_every} steps, leaves none); run without --resume to start "
            "afresh: its partial logs are replaced"
        )
    if not resume and (out / "best.pt").exists():  # best.pt is copied from last.pt: someone removed last.pt
        raise ConfigError(f"{out} holds an earlier run's best.pt but no last.pt; choose another --out or move best.pt")
    seed_everything(config.seed)
    device = resolve_device(config.schedule.device)
    sources = resolve_sources(config)
    model = build_model(config)
    stride = int(model.output_stride)
    if config.data.input_size % stride:
        raise ConfigError(
            f"data.input_size = {config.data.input_size} is not a multiple of {config.model.arch}'s output stride "
            f"{stride}; use e.g. {config.data.input_size // stride * stride or stride}"
        )
    if config.tasks.count_class is not None and not resume:  # a resumed run restores the groups from last.pt
        sources.notes.append(calibrate_from_training_crops(model, config, sources, stride))
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # training crops have one fixed size: autotune each conv once
    optimizer, scheduler = build_optimizer(model, config)

    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    stale = remove_temp_files(out) if resume else clear_partial_run(out)
    write_text_atomic(out / "config.toml", config_to_toml(config))
    log = MetricsLog(out / "metrics.jsonl")
    start, best_val, best_step, saved_rng, window = 0, math.inf, -1, None, {}
    notes = list(sources.notes)
    if stale and not resume:
        notes.append(f"started afresh in {out}: removed {', '.join(stale)} of a run stopped before any checkpoint")
    elif stale:
        notes.append(f"removed {', '.join(stale)}: temp files of writes the stopped run did not finish")
    if resume:
        state = load_checkpoint(out / "last.pt")
        fix = "resume with the manifest the run started with (its config.toml), or choose another --out"
        load_weights(model, state["model"], out / "last.pt", "this manifest", fix)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        saved_rng = state["rng"]  # restored once the loaders are made: making one draws from torch's RNG
        window = state.get("log_window", {})  # absent from checkpoints written before it was recorded
        start, best_val = int(state["step"]), float(state.get("best_val_mae", math.inf))
        best_step = int(state.get("best_step", -1))  # -1: a checkpoint from before best_step was recorded
        if best_step == start and _checkpoint_step(out / "best.pt") != start:
            promote_best(out)  # killed after writing last.pt as the new best, before copying it to best.pt
        changed = [k for k, v in config_to_dict(config).items() if state["config"].get(k) != v]
        if changed:
            notes.append(f"resumed with changed manifest sections: {', '.join(changed)}")
        log.truncate_after(start)
        if start < config.schedule.steps:  # a finished run given more steps: unfinished again until its new end
            (out / "eval.json").unlink(missing_ok=True)
    train_model = torch.compile(model) if config.schedule.compile else model

    schedule = config.schedule
    count_iter, rank_iter = make_iterators(config, sources, stride, start, device.type == "cuda", notes)
    upside_iter = upside_down_iterator(config, start, device.type == "cuda", sources.unlabeled)
    if saved_rng is not None:  # only now: making a loader draws its seed from torch's RNG, which the uninterrupted
        restore_rng_states(saved_rng)  # run did before step 0, so a dropout model gets its masks after a resume too

    def run_validation(step: int) -> float:
        if not sources.validation:
            return math.nan
        summary, _ = evaluate(model, sources.validation, config, device)
        log.append({"step": step, **{f"val_{k}": v for k, v in summary.items()}})
        return summary["mae"]

    def save(step: int, best: float, best_at: int) -> None:
        # the log window still open (eval_every not a multiple of log_every) and the unreadable-item count: a
        # resumed run logs what the uninterrupted one logs
        open_window = {"sums": dict(sums), "images": images, "wait": wait, "compute": compute, "skipped": skipped}
        extra = {"best_val_mae": best, "best_step": best_at, "log_window": open_window}
        save_checkpoint(out / "last.pt", model, optimizer, scheduler, step, config, extra)

    progress = _progress(show_progress)
    sums: dict[str, float] = {k: float(v) for k, v in window.get("sums", {}).items()}
    images = int(window.get("images", 0))
    wait, compute = float(window.get("wait", 0.0)), float(window.get("compute", 0.0))
    last_terms: dict[str, float] = {}
    skipped = int(window.get("skipped", 0))
    model.train()
    with progress:
        task = progress.add_task(config.name, total=schedule.steps, completed=start)
        for step in range(start, schedule.steps):
            uses_count, uses_rank = active_tasks(schedule, step)
            t0 = time.perf_counter()
            count_batch = next(count_iter) if uses_count else None
            rank_item = next(rank_iter) if uses_rank else None
            rank_batch = rank_item[0] if uses_rank else None  # (N, k, 3, S, S)
            upside = config.tasks.upside_down
            unlabeled = next(upside_iter) if upside is not None and upside.active(step) else None
            skipped += int(count_batch[3].sum()) if uses_count else 0
            skipped += int(rank_item[1].sum()) if uses_rank else 0
            skipped += int(unlabeled[2].sum()) if unlabeled is not None else 0
            t1 = time.perf_counter()
            terms = train_step(train_model, optimizer, count_batch, rank_batch, config, device, unlabeled, step)
            scheduler.step()
            values = {name: float(value.detach()) for name, value in terms.items()}  # syncs: the step is done
            t2 = time.perf_counter()
            for name, value in values.items():
                if not math.isfinite(value):
                    again = (
                        "--resume from the last good last.pt"
                        if (out / "last.pt").exists()
                        else "rerun without --resume (no last.pt yet: it stopped before its first checkpoint)"
                    )
                    raise DivergenceError(
                        f"step {step + 1}: loss term {name!r} is {value} (terms: {values}); lower optim.lr or "
                        f"check the data, then {again}"
                    )
                sums[name] = sums.get(name, 0.0) + value
            sums["steps"] = sums.get("steps", 0.0) + 1
            images += (count_batch[0].shape[0] if uses_count else 0) + (
                rank_batch.shape[0] * rank_batch.shape[1] if uses_rank else 0
            )
            wait, compute = wait + (t1 - t0), compute + (t2 - t1)
            done = step + 1
            progress.update(task, completed=done)
            if done % schedule.log_every == 0 or done == schedule.steps:
                n = sums.pop("steps")
                last_terms = {k: v / n for k, v in sums.items()}
                log.append(
                    {
                        "step": done,
                        **last_terms,
                        "lr": scheduler.get_last_lr()[0],
                        "images_per_s": images / max(wait + compute, 1e-9),
                        "data_wait_s": wait,
                        "compute_s": compute,
                        "skipped_unreadable": skipped,
                    }
                )
                sums, images, wait, compute = {}, 0, 0.0, 0.0
            if done % schedule.eval_every == 0 or done == schedule.steps:
                val_mae = run_validation(done)
                improved = val_mae < best_val
                best_val = val_mae if improved else best_val
                if improved or not sources.validation or not (out / "best.pt").exists():
                    best_step = done
                save(done, best_val, best_step)  # last.pt first: it records best_step, so a resume can finish
                if best_step == done:  # the copy a kill interrupted (see the resume above)
                    promote_best(out)

    test: dict[str, float] = {}
    if sources.test and (out / "best.pt").exists():
        best_state = load_checkpoint(out / "best.pt")
        model.load_state_dict(best_state["model"])
        test, rows = evaluate(model, sources.test, config, device)
        test.update(split="test", checkpoint="best.pt", step=int(best_state["step"]))
        write_rows_csv(out / "eval_images.csv", rows)
    plot_run(out, model, sources.validation or sources.test, config, device)
    if test:  # last: eval.json marks a finished run (train study reads one back instead of resuming the run)
        write_json(out / "eval.json", test)
    if skipped:
        notes.append(f"{skipped} unreadable training items were replaced by the next readable row")
    return FitResult(out, schedule.steps, start, best_val, test, last_terms, notes, time.perf_counter() - started)


def promote_best(out: Path) -> None:
    """Copy ``last.pt`` to ``best.pt`` through a temp name, so a kill never leaves half a best.pt."""
    with staged_file(out / "best.pt") as tmp:
        shutil.copyfile(out / "last.pt", tmp)


def _checkpoint_step(path: Path) -> int | None:
    """The step of the checkpoint at ``path``, or None when there is none."""
    return int(load_checkpoint(path)["step"]) if path.is_file() else None


def _progress(enabled: bool) -> Any:
    """A rich progress bar (disabled = invisible, for tests and benchmarks)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )

"""Checkpoints: model, optimizer, scheduler, step, RNG states and the resolved manifest, written atomically.

A checkpoint carries everything to rebuild its model without the manifest file: the resolved config (as a
dict and as TOML text), ``arch``, ``output_stride`` and ``density_scale`` (the internal target scale that
predictions are divided by before any count is reported).

Every checkpoint is read with ``torch.load(weights_only=True)``: unpickling anything else can run code, and
``train eval``/``predict`` are pointed at files from other people. So a checkpoint holds only tensors and plain
data (dicts, lists, str, int, float); the RNG states of Python and NumPy are stored as tensors and lists
(format 2). A format-1 file (crowdrank before that change) pickled NumPy's state: ``train upgrade`` rewrites
one you trust.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from rankset.io import staged_file
from train.config import RunConfig
from train.errors import ConfigError, ModelError
from train.manifest import config_from_dict, config_to_dict, config_to_toml
from train.runlog import make_out_folder

FORMAT_VERSION = 2  # 2: RNG states as tensors and lists, so the file loads with weights_only=True


def plain_python_state(state: tuple) -> dict[str, Any]:
    """``random.getstate()`` as data a weights-only load accepts (its 625 words as an int64 tensor)."""
    import torch

    version, internal, gauss_next = state
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next}


def plain_numpy_state(state: tuple) -> dict[str, Any]:
    """NumPy's legacy ``get_state()`` tuple as data a weights-only load accepts (no ndarray, which is pickled)."""
    import torch

    name, key, pos, has_gauss, cached_gaussian = state
    key = torch.from_numpy(np.asarray(key, dtype=np.uint32).astype(np.int64))  # (624,) words < 2**32
    return {
        "name": str(name),
        "key": key,
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(cached_gaussian),
    }


def rng_states() -> dict[str, Any]:
    """Every RNG a step may touch, in a form :func:`load_checkpoint` can read without unpickling code."""
    import torch

    states = {
        "python": plain_python_state(random.getstate()),
        "numpy": plain_numpy_state(np.random.get_state(legacy=True)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`rng_states`."""
    import torch

    python, numpy_state = states["python"], states["numpy"]
    random.setstate((python["version"], tuple(int(v) for v in python["internal"].tolist()), python["gauss_next"]))
    key = numpy_state["key"].numpy().astype(np.uint32)
    np.random.set_state((numpy_state["name"], key, numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    path: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    step: int,
    config: RunConfig,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the checkpoint to a temp name beside ``path`` and rename it, so a kill never leaves half a file."""
    import torch

    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
    state = {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": step,
        "rng": rng_states(),
        "config": config_to_dict(config),
        "config_toml": config_to_toml(config),
        "arch": config.model.arch,
        "output_stride": int(model.output_stride),
        "density_scale": float(config.data.density_scale),
        **(extra or {}),
    }
    with staged_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on CPU), with a clear error for anything else."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist; pass RUN_DIR/best.pt or RUN_DIR/last.pt")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code from a .pt
    except Exception as e:  # zip, pickle and torch errors: "not a checkpoint", or one that pickles code
        raise ModelError(unreadable_checkpoint_message(path, e)) from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ModelError(f"{path} is not a crowdrank checkpoint (no 'model'/'config'); pass best.pt or last.pt")
    version = state.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:  # a newer file may mean other things
        raise ModelError(
            f"checkpoint {path} has format_version = {version!r}; this crowdrank reads checkpoint formats 1 to "
            f"{FORMAT_VERSION}. Fix: read it with the crowdrank that wrote it, or upgrade crowdrank"
        )
    check_fields(state, path)
    return state


def check_fields(state: dict[str, Any], path: str | Path) -> None:
    """A ModelError naming the first field that :func:`save_checkpoint` always writes and ``state`` lacks or holds
    in another type; eval, predict, export and push read them all (a missing ``density_scale`` was a KeyError)."""
    import math

    def positive_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0

    expected = {
        "model": (lambda v: isinstance(v, dict), "a dict of weight tensors"),
        "config": (lambda v: isinstance(v, dict), "the resolved manifest as a dict"),
        "config_toml": (lambda v: isinstance(v, str), "the resolved manifest as TOML text"),
        "arch": (lambda v: isinstance(v, str), "the architecture name"),
        "step": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
        "output_stride": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
        "density_scale": (positive_number, "a number > 0"),
    }
    for key, (valid, what) in expected.items():
        if key not in state or not valid(state[key]):
            found = "missing" if key not in state else f"{type(state[key]).__name__} {state[key]!r}"[:80]
            raise ModelError(
                f"checkpoint {path} is damaged or was not written by crowdrank: its {key!r} is {found}, expected "
                f"{what}. Fix: pass the unmodified RUN/best.pt or RUN/last.pt (or a `train push` folder), or retrain"
            )


def load_weights(
    model: Any,
    weights: dict[str, Any],
    path: str | Path,
    built_by: str = "its own stored manifest",
    fix: str = "pass the unmodified RUN/best.pt, or retrain",
) -> None:
    """``model.load_state_dict(weights)`` strictly, or a ModelError listing the first tensors that do not fit."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:  # size mismatch, missing or unexpected keys
        problems = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ModelError(
            f"the weights in checkpoint {path} do not fit the {type(model).__name__} that {built_by} builds "
            f"({shown or e}). Fix: {fix}"
        ) from e


def unreadable_checkpoint_message(path: Path, error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, without torch's advice to retry with ``weights_only=False``.

    A refused class or function (``GLOBAL module.name``) means the file pickles Python objects: a crowdrank
    checkpoint from before format 2, or a file that is not ours and may run code. Anything else is not a checkpoint.
    """
    refused = re.search(r"GLOBAL ([\w.]+)", str(error))
    if refused is None:
        detail = str(error).split("WeightsUnpickler error:")[-1].strip().splitlines()[0] if str(error) else ""
        return (
            f"cannot read checkpoint {path}: not a complete file written by torch.save (truncated or corrupt, or "
            f"not a checkpoint: {type(error).__name__}: {detail}); pass RUN_DIR/best.pt or RUN_DIR/last.pt, or copy "
            "the file again"
        )
    return (
        f"checkpoint {path} holds pickled Python objects that a safe (weights-only) load refuses (it references "
        f"{refused.group(1)}). Checkpoints written by crowdrank before checkpoint format 2 stored RNG states that "
        "way; a file from anyone else could run code when unpickled, so it is not opened. Fix: if you wrote this "
        f"file yourself, `train upgrade {path}` rewrites it in the safe format; otherwise ask for a `train push` "
        "folder or retrain"
    )


def upgrade_checkpoint(path: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Rewrite a format-1 checkpoint (pickled NumPy RNG state) as format 2, at ``out`` (default: in place).

    This is the one place that unpickles a checkpoint with ``weights_only=False``, which can run code: only for
    files the user wrote and asks to upgrade. A file the safe reader already takes as the current format is never
    unpickled nor rewritten (copied to ``out`` when that is another file; ``upgraded`` is False). The result is read
    back with :func:`load_checkpoint` before it replaces anything, so an upgrade either yields a safe file or changes
    nothing.
    """
    import torch

    path = Path(path)
    out = path if out is None else Path(out)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist; pass the RUN_DIR/last.pt or best.pt to upgrade")
    if out.is_dir():
        raise ModelError(f"--out {out} is a folder; pass a file path, e.g. {out / path.name}")
    make_out_folder(out.parent)
    try:
        current = load_checkpoint(path)
    except ModelError:  # format 1, or not loadable the safe way: the unsafe read below decides
        current = None
    if current is not None and current.get("format_version") == FORMAT_VERSION:
        if out.resolve() != path.resolve():
            with staged_file(out) as tmp:
                shutil.copyfile(path, tmp)
        step = int(current["step"])
        return {
            "out": str(out),
            "from_version": FORMAT_VERSION,
            "to_version": FORMAT_VERSION,
            "step": step,
            "upgraded": False,
        }
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # the user vouched for this file
    except Exception as e:  # zip, pickle and torch errors: "not a checkpoint"
        raise ModelError(
            f"cannot read checkpoint {path}: not a complete file written by torch.save (truncated or corrupt, or not a "
            f"checkpoint: {type(e).__name__}: {e}), so there is nothing to upgrade; pass the RUN_DIR/last.pt or "
            "best.pt that crowdrank wrote"
        ) from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ModelError(f"{path} is not a crowdrank checkpoint (no 'model'/'config'); nothing to upgrade")
    check_fields(state, path)
    before = int(state.get("format_version", 1))
    if before > FORMAT_VERSION:
        raise ModelError(f"{path} is checkpoint format {before}, newer than this crowdrank's {FORMAT_VERSION}")
    rng = state.get("rng")
    if isinstance(rng, dict) and isinstance(rng.get("python"), tuple):
        rng["python"] = plain_python_state(rng["python"])
    if isinstance(rng, dict) and isinstance(rng.get("numpy"), tuple):
        rng["numpy"] = plain_numpy_state(rng["numpy"])
    state["format_version"] = FORMAT_VERSION
    with staged_file(out) as tmp:
        torch.save(state, tmp)
        try:
            load_checkpoint(tmp)
        except ModelError as e:
            raise ModelError(f"{path} still holds objects a safe load refuses after the upgrade: {e}") from e
    step = int(state["step"])
    return {"out": str(out), "from_version": before, "to_version": FORMAT_VERSION, "step": step, "upgraded": True}


def model_from_checkpoint(path: str | Path, device: Any) -> tuple[Any, dict[str, Any], RunConfig]:
    """(model in eval mode on ``device``, checkpoint dict, its RunConfig) from a checkpoint file, a folder written
    by ``train push`` or a Hub id ``USER/NAME[@REVISION]`` (train.hub resolves the last two).

    The model is built as the manifest built it (heads, Masksembles, count groups), loaded strictly, then its
    auxiliary heads are dropped: evaluation and prediction cost what the density network costs. An exported
    checkpoint (``"exported": True``, train.export) has no heads to load.
    """
    from train.hub import read_inference_state
    from train.models.assemble import build_model, drop_auxiliary

    state = read_inference_state(path)
    try:
        config = config_from_dict(state["config"])
    except ConfigError as e:
        raise ModelError(f"checkpoint {path} stores a manifest this crowdrank does not accept: {e}") from e
    model = build_model(config, pretrained="none")
    if state.get("exported"):
        drop_auxiliary(model)
    fix = "the file was modified or written by another crowdrank version: pass the unmodified RUN/best.pt"
    load_weights(model, state["model"], path, fix=fix)
    drop_auxiliary(model)
    return model.to(device).eval(), state, config

"""``train push`` and Hub ids as CKPT: a density model on the Hugging Face Hub, and the way back to eval/predict.

A push: read the checkpoint -> build its density model as eval/predict do (auxiliary heads and classifier dropped,
as ``train export`` drops them) -> write an upload folder (``model.safetensors``, ``config.toml``,
``crowdrank.json``, ``README.md``) -> either move it to ``--dry-run OUT`` or commit exactly those files in one
commit. Both paths read the same folder, so a dry run is byte-identical to what would be uploaded.

The way back: :func:`read_inference_state` turns any CKPT that eval and predict accept -- a checkpoint file, a
pushed folder (a ``--dry-run`` output, or a Hub snapshot), or a Hub id ``USER/NAME[@REVISION]`` downloaded with
``snapshot_download`` (from the local cache when offline) -- into the checkpoint dict that
:func:`train.checkpoint.model_from_checkpoint` loads. This is the only module of train that talks to the Hub.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankset.hub import LICENSE_ID, check_push_target, commit_folder, upload_token
from train.errors import ConfigError, HubError, ModelError

WEIGHTS, CONFIG, METADATA, CARD = "model.safetensors", "config.toml", "crowdrank.json", "README.md"
UPLOAD_FILES = (CARD, CONFIG, METADATA, WEIGHTS)
MODEL_FORMAT = "crowdrank-density-model"
MODEL_FORMAT_VERSION = 1
HUB_REFERENCE = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")
LOCAL_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
CKPT_FORMS = "RUN_DIR/best.pt, a folder written by `train push --dry-run`, or a Hub id USER/NAME[@REVISION]"


@dataclass(frozen=True)
class PushConfig:
    """One ``train push``: the checkpoint, the model repo, and how to publish it."""

    checkpoint: Path
    repo_id: str
    private: bool = False
    revision: str = "main"
    dry_run: Path | None = None
    license: str = "other"

    def __post_init__(self) -> None:
        if not Path(self.checkpoint).is_file():
            raise ConfigError(f"CHECKPOINT {self.checkpoint} does not exist; pass RUN_DIR/best.pt or an exported .pt")
        check_push_target(self.repo_id, self.revision, self.dry_run, ConfigError)
        if not LICENSE_ID.match(self.license):
            raise ConfigError(f"--license {self.license!r} is not a Hub licence id; use e.g. mit, apache-2.0, other")


@dataclass
class PushSummary:
    """What was (or, for a dry run, would be) pushed."""

    repo_id: str
    destination: str = ""
    step: int = 0
    kept_values: int = 0
    dropped_values: int = 0
    evaluation: dict[str, Any] | None = None
    files: dict[str, int] = field(default_factory=dict)


def push_model(config: PushConfig) -> PushSummary:
    """Publish ``config.checkpoint``'s density model to ``config.repo_id`` (or write the folder to ``dry_run``)."""
    token = None if config.dry_run is not None else upload_token(HubError)
    summary = PushSummary(repo_id=config.repo_id)
    parent = Path(config.dry_run).parent if config.dry_run is not None else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".train-push-", dir=parent))
    try:
        write_upload_folder(staging, config, summary)
        for name in UPLOAD_FILES:
            (staging / name).chmod(0o644)  # safetensors and mkdtemp create owner-only files
        summary.files = {name: (staging / name).stat().st_size for name in UPLOAD_FILES}
        if config.dry_run is not None:
            out = Path(config.dry_run)
            if out.is_dir():
                out.rmdir()  # empty (checked by the config): replaced by the finished folder in one rename
            staging.chmod(0o755)
            os.replace(staging, out)
            summary.destination = str(out)
        else:
            assert token is not None, "a token is required for an upload"
            summary.destination = upload_folder(staging, config, token, summary)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def public_config(run_config: Any) -> Any:
    """The manifest without the trainer's local paths: a local dataset folder is reduced to its name (Hub ids stay).

    Inference never reads the data keys, so the pushed model loads the same; the local paths would only leak where
    the trainer keeps their files.
    """
    import dataclasses

    from rankset.io import looks_like_hub_id

    def public(path: str) -> str:
        return path if not path or looks_like_hub_id(path) else Path(path).name

    data = run_config.data
    changes: dict[str, Any] = {
        "labeled": [public(p) for p in data.labeled],
        "ranked": [public(p) for p in data.ranked],
        "eval": public(data.eval),
    }
    for key in ("unlabeled", "depth_dir"):
        value = getattr(data, key, None)
        if isinstance(value, list):
            changes[key] = [public(p) for p in value]
        elif isinstance(value, str):
            changes[key] = public(value)
    return dataclasses.replace(run_config, data=dataclasses.replace(data, **changes))


def write_upload_folder(folder: Path, config: PushConfig, summary: PushSummary) -> None:
    """The four files of a pushed model under ``folder``; fills the summary's step, value counts and evaluation."""
    import torch
    from safetensors.torch import save_file

    from train.checkpoint import model_from_checkpoint
    from train.manifest import config_to_toml
    from train.model_card import model_card, run_evaluation

    model, state, run_config = model_from_checkpoint(config.checkpoint, torch.device("cpu"))  # heads dropped
    weights = {name: value.detach().clone().contiguous() for name, value in model.state_dict().items()}
    summary.step = int(state["step"])
    summary.kept_values = sum(v.numel() for v in weights.values())
    summary.dropped_values = sum(v.numel() for v in state["model"].values()) - summary.kept_values
    summary.evaluation = run_evaluation(Path(config.checkpoint), summary.step)
    # one metadata key: safetensors writes a metadata map in hash order, so two keys could swap between pushes
    save_file(weights, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / CONFIG).write_text(config_to_toml(public_config(run_config)), encoding="utf-8")
    metadata = model_metadata(model, state, run_config)
    (folder / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    card = model_card(config.repo_id, run_config, metadata, summary.evaluation, config.license)
    (folder / CARD).write_text(card, encoding="utf-8")


def crowdrank_version() -> str:
    """The installed crowdrank distribution's version (the package's own when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crowdrank")
    except PackageNotFoundError:
        from train import __version__

        return __version__


def model_metadata(model: Any, state: dict[str, Any], run_config: Any) -> dict[str, Any]:
    """``crowdrank.json``: what loading needs besides ``config.toml`` (which rebuilds the network) and the weights.

    The Masksembles masks and cascaded-mtl's count groups are buffers in the weights too; they are repeated here
    so a reader of the repo sees them without loading tensors.
    """
    network = getattr(model, "base", model)
    masks_layer = getattr(model, "masksembles", None)
    masks = run_config.model.masksembles
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "crowdrank_version": crowdrank_version(),
        "arch": state["arch"],
        "output_stride": int(state["output_stride"]),
        "density_scale": float(state["density_scale"]),
        "step": int(state["step"]),
        "weights": WEIGHTS,
        "config": CONFIG,
        "masksembles": None
        if masks is None or masks_layer is None
        else {
            "masks": masks.masks,
            "scale": masks.scale,
            "seed": run_config.seed,
            "channel_masks": masks_layer.masks.int().tolist(),  # (masks, channels) of 0/1
        },
        "count_groups": None
        if getattr(network, "group_edges", None) is None
        else {
            "edges": [float(v) for v in network.group_edges.tolist()],
            "class_weights": [float(v) for v in network.class_weights.tolist()],
        },
    }


def upload_folder(folder: Path, config: PushConfig, token: str, summary: PushSummary) -> str:
    """Commit the four staged files to the model repo in one commit; returns the commit URL."""
    return commit_folder(
        folder,
        list(UPLOAD_FILES),
        repo_id=config.repo_id,
        repo_type="model",
        private=config.private,
        revision=config.revision,
        token=token,
        message=f"train push: density model at step {summary.step}",
        error=HubError,
    )


# -- the way back: CKPT as a checkpoint file, a pushed folder or a Hub id --------------------------------------


def hub_reference(ckpt: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) when ``ckpt`` names a Hub model rather than a local path, else None."""
    match = HUB_REFERENCE.match(ckpt)
    if match is None or Path(ckpt).exists() or ckpt.lower().endswith(LOCAL_SUFFIXES):
        return None
    return match.group("repo"), match.group("revision")


def check_checkpoint_argument(ckpt: str | Path) -> None:
    """Refuse, before any work, a CKPT that is neither a checkpoint file, a pushed folder nor a Hub id."""
    path = Path(ckpt)
    if path.is_file():
        return
    if path.is_dir():
        if not (path / METADATA).is_file():
            raise ConfigError(f"CHECKPOINT {ckpt} is a folder without {METADATA}; pass {CKPT_FORMS}")
        return
    if hub_reference(str(ckpt)) is None:
        raise ConfigError(f"CHECKPOINT {ckpt} does not exist; pass {CKPT_FORMS}")


def read_inference_state(ckpt: str | Path) -> dict[str, Any]:
    """The checkpoint dict of any CKPT eval/predict accept (see the module docstring)."""
    from train.checkpoint import load_checkpoint

    path = Path(ckpt)
    if path.is_dir():
        return read_pushed_folder(path)
    reference = None if path.is_file() else hub_reference(str(ckpt))
    if reference is None:
        return load_checkpoint(path)
    return read_pushed_folder(download_model(*reference))


def download_model(repo_id: str, revision: str | None = None) -> Path:
    """The pushed files of ``repo_id`` in the local Hub cache (downloaded when online); a clear error otherwise."""
    import huggingface_hub.constants
    from huggingface_hub import snapshot_download

    from rankset.hub import hub_unreachable

    name = repo_id if revision is None else f"{repo_id}@{revision}"
    offline = hub_unreachable()  # offline: the cached copy at once, not after the client's retries
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=list(UPLOAD_FILES), local_files_only=offline is not None
            )
        )
    except Exception as e:  # offline, missing repo, HTTP and OS errors: all "no model to load"
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            why = "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
        elif offline is not None:
            why = f"it is not in the local Hugging Face cache and {offline}"
        else:
            why = "the Hub could not be reached or has no such model (private repos need HF_TOKEN)"
        raise HubError(
            f"CHECKPOINT {name!r}: cannot download https://huggingface.co/{repo_id}: {why} "
            f"({type(e).__name__}). Fix: connect once with HF_HUB_OFFLINE unset to cache it, check the id and "
            f"HF_TOKEN, or pass a local folder written by `train push --dry-run`"
        ) from e


def read_pushed_folder(folder: Path) -> dict[str, Any]:
    """A pushed model folder as the checkpoint dict :func:`train.checkpoint.model_from_checkpoint` loads."""
    import tomllib
    from safetensors.torch import load_file

    from train.checkpoint import check_fields
    from train.manifest import config_from_dict, config_to_dict

    missing = [name for name in (WEIGHTS, CONFIG, METADATA) if not (folder / name).is_file()]
    if missing:
        raise ModelError(f"{folder} is not a pushed crowdrank model: {', '.join(missing)} missing; pass {CKPT_FORMS}")
    try:
        metadata = json.loads((folder / METADATA).read_text())
        config_text = (folder / CONFIG).read_text()
        config = config_from_dict(tomllib.loads(config_text))
        weights = load_file(str(folder / WEIGHTS))
    except ConfigError as e:
        raise ModelError(f"{folder / CONFIG} is not a valid manifest for this crowdrank: {e}") from e
    except Exception as e:  # JSON, TOML and safetensors errors: "not a readable pushed model"
        raise ModelError(f"cannot read the pushed model in {folder}: {type(e).__name__}: {e}") from e
    if not isinstance(metadata, dict):
        raise ModelError(f"{folder / METADATA} holds a JSON {type(metadata).__name__}, not an object; {FIX_PUSHED}")
    version = metadata.get("format_version", 0)
    if metadata.get("format") != MODEL_FORMAT or not isinstance(version, int) or version > MODEL_FORMAT_VERSION:
        raise ModelError(
            f"{folder / METADATA} is format {metadata.get('format')!r} version {metadata.get('format_version')}; "
            f"this crowdrank reads {MODEL_FORMAT!r} up to version {MODEL_FORMAT_VERSION} (upgrade crowdrank)"
        )
    if metadata.get("arch") != config.model.arch:
        raise ModelError(f"{folder}: {METADATA} says arch {metadata.get('arch')!r}, {CONFIG} {config.model.arch!r}")
    state = {
        "format_version": version,
        "exported": True,
        "model": weights,
        "config": config_to_dict(config),
        "config_toml": config_text,
        **{key: metadata.get(key) for key in ("step", "arch", "output_stride", "density_scale") if key in metadata},
    }
    check_fields(state, folder / METADATA)
    return state


FIX_PUSHED = "Fix: write the folder again with `train push --dry-run`, or download the model again"


def print_push_summary(summary: PushSummary, dry_run: bool) -> None:
    """The end-of-run table: files and sizes, weights kept and dropped, and the evaluation the card carries."""
    from rich.console import Console
    from rich.table import Table

    verb = "would push (dry run)" if dry_run else "pushed"
    table = Table(title=f"train push {summary.repo_id}: {verb} -> {summary.destination}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, size in summary.files.items():
        table.add_row(name, f"{size:,} bytes")
    table.add_row("checkpoint step", str(summary.step))
    table.add_row("values kept / dropped", f"{summary.kept_values:,} / {summary.dropped_values:,}")
    evaluation = summary.evaluation
    mae = (evaluation or {}).get("mae")
    table.add_row("card metrics", "none (no eval.json of this step)" if mae is None else f"test MAE {mae:.3f}")
    Console().print(table)

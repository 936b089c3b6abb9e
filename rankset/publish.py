"""``rankset push``: a dataset folder as Parquet shards + dataset card + attribution, uploaded to the Hub in one commit.

Data flow: load the dataset (folder or Hub id) -> keep the rows the licence policy allows (licenses.py) ->
write an upload folder (``data/{split}-{i:05d}-of-{n:05d}.parquet`` with images embedded, ``README.md``,
``attribution.csv``) -> either move it to ``--dry-run OUT`` or upload exactly those files in one commit. Both
paths read the same folder, so a dry run is byte-identical to what would be uploaded. This is the only module
of rankset that talks to the Hub's write API. No file of the dataset folder itself travels: its local README.md and
``skipped.csv`` (which names where skipped pictures lay on the builder's disk) stay behind.
"""

from __future__ import annotations

import csv
import errno
import io
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankset.errors import ConfigError, InputError, PublishError
from rankset.hub import LICENSE_ID, check_push_target, commit_folder, upload_token
from rankset.licenses import LicensePolicy, license_id
from rankset.progress import progress_bar

SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
ATTRIBUTION_COLUMNS = (
    "split",
    "source_id",
    "rows",
    "title",
    "author",
    "license",
    "license_url",
    "source_url",
    "page_url",
)


def parse_size(text: str | int) -> int:
    """Bytes from ``500MB``, ``1GiB`` or a plain integer (the ``--max-shard-size`` forms)."""
    if isinstance(text, int):
        return text
    match = SIZE.match(str(text))
    if not match:
        raise ConfigError(f"--max-shard-size {text!r} is not a size; use e.g. 500MB, 1GB, 256MiB or a byte count")
    return int(float(match.group(1)) * UNITS[(match.group(2) or "B").upper()])


@dataclass(frozen=True)
class PublishConfig:
    """One ``rankset push``: what to publish, where, and under which licence policy."""

    dataset: str
    repo_id: str
    private: bool = False
    revision: str = "main"
    dry_run: Path | None = None
    licenses: tuple[str, ...] | None = None
    allow_unknown_license: bool = False
    dataset_license: str | None = None
    max_shard_size: str | int = "500MB"

    def __post_init__(self) -> None:
        check_push_target(self.repo_id, self.revision, self.dry_run, ConfigError)
        if parse_size(self.max_shard_size) < 1_000:
            raise ConfigError(f"--max-shard-size {self.max_shard_size!r} is below 1KB; use e.g. 500MB")
        if self.dataset_license is not None and not LICENSE_ID.fullmatch(self.dataset_license):
            raise ConfigError(
                f"--dataset-license {self.dataset_license!r} is not a licence id; use a lower-case Hub id such "
                "as cc-by-4.0, cc-by-nc-4.0 or other"
            )
        LicensePolicy(self.licenses, self.allow_unknown_license)  # validates --licenses

    @property
    def policy(self) -> LicensePolicy:
        return LicensePolicy(self.licenses, self.allow_unknown_license)


@dataclass
class PublishSummary:
    """What was (or, for a dry run, would be) published, and what was left out and why."""

    repo_id: str
    kind: str
    destination: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    left_out: Counter = field(default_factory=Counter)
    licenses: Counter = field(default_factory=Counter)
    files: dict[str, int] = field(default_factory=dict)
    pictures: int = 0
    notes: list[str] = field(default_factory=list)


def publish_dataset(cfg: PublishConfig, progress: bool = True) -> PublishSummary:
    """Publish ``cfg.dataset`` to ``cfg.repo_id`` (or write the upload folder to ``cfg.dry_run``)."""
    from rankset.io import load_dataset_dict
    from rankset.schema import dataset_kind, decode_build_info

    token = None if cfg.dry_run is not None else upload_token(PublishError)
    dsd = load_dataset_dict(cfg.dataset)
    first = next(iter(dsd.values()), None)
    if first is None:
        raise InputError(f"{cfg.dataset} holds no splits; nothing to publish")
    kind = dataset_kind(first.column_names)
    if kind == "unknown":
        raise InputError(
            f"{cfg.dataset} is neither a ranked-set nor a labeled dataset (columns {first.column_names}); "
            "pass a folder written by `rankset build`, `rankset import` or `rankset synth`"
        )
    if cfg.dataset_license is not None and "license" in first.column_names:
        raise ConfigError(
            f"--dataset-license {cfg.dataset_license}: {cfg.dataset} has a license column per row; "
            "--dataset-license is for datasets without one (filter rows with --licenses instead)"
        )
    summary = PublishSummary(repo_id=cfg.repo_id, kind=kind)
    selected = {}
    for split, ds in dsd.items():
        keep, licenses, left_out = select_rows(ds, cfg.policy, cfg.dataset_license)
        summary.left_out.update(left_out)
        summary.licenses.update(licenses)
        if keep:
            selected[split] = ds.select(keep) if len(keep) < len(ds) else ds
            summary.rows[split] = len(keep)
    if not selected:
        reasons = "; ".join(f"{n} rows: {reason}" for reason, n in summary.left_out.most_common())
        raise PublishError(
            f"every row of {cfg.dataset} was left out by the licence policy ({reasons}); widen --licenses, "
            "pass --allow-unknown-license, or (for a dataset without a license column) --dataset-license ID"
        )
    build_info = decode_build_info(first.info.description)
    staging = make_staging(cfg, summary)
    try:
        try:
            write_upload_folder(staging, selected, cfg, summary, build_info, progress)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            raise PublishError(
                f"no space left in {staging.parent} while writing the upload's Parquet shards there; free some "
                f"space, or push from a copy of {cfg.dataset} on a disk with room for another copy of it"
            ) from e
        summary.files = {rel: (staging / rel).stat().st_size for rel in upload_files(staging)}
        if cfg.dry_run is not None:
            out = Path(cfg.dry_run)
            if out.is_dir():
                out.rmdir()  # empty (checked by the config): replaced by the finished folder in one rename
            os.replace(staging, out)
            summary.destination = str(out)
        else:
            assert token is not None, "a token is required for an upload"
            summary.destination = upload_folder(staging, cfg, token, summary)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


PUSH_STAGING = "rankset-push"  # the target name of a push staged in the system temp folder


def make_staging(cfg: PublishConfig, summary: PublishSummary) -> Path:
    """The folder the upload is written to before it is moved to ``--dry-run`` or committed.

    It is named by :func:`rankset.io.staging_path`, so a later push (or any rankset write there) removes it after a
    kill. A dry run stages beside its output; an upload beside the dataset folder, on the disk that already holds
    the data (the system temp folder is often small, and a kill would leave the copy there). Where that folder
    takes no new entries (a read-only copy, say), or the dataset is a Hub id, the system temp folder is used, with
    a note saying why.
    """
    from rankset.io import remove_stale_staging, staging_path

    if cfg.dry_run is not None:
        Path(cfg.dry_run).parent.mkdir(parents=True, exist_ok=True)
        summary.notes.extend(remove_stale_staging(Path(cfg.dry_run).parent, Path(cfg.dry_run).name))
        staging = staging_path(Path(cfg.dry_run))
        staging.mkdir()
        return staging
    local = Path(cfg.dataset)
    temp = Path(tempfile.gettempdir())
    if local.is_dir():
        target = local.resolve().parent / f"{local.resolve().name}.push"
        try:
            summary.notes.extend(remove_stale_staging(target.parent, target.name))
            staging = staging_path(target)
            staging.mkdir()
            return staging
        except OSError as e:
            summary.notes.append(
                f"cannot stage the upload beside {cfg.dataset} ({target.parent}: {e.strerror or e}); staged in "
                f"{temp} instead, which needs room for a copy of the dataset. Make {target.parent} writable, or "
                "set TMPDIR to a roomy folder"
            )
    summary.notes.extend(remove_stale_staging(temp, PUSH_STAGING, arrow_caches=False))
    staging = staging_path(temp / PUSH_STAGING)
    try:
        staging.mkdir()
    except OSError as e:
        raise PublishError(
            f"cannot stage the upload in {temp} ({e.strerror or e}); set TMPDIR to a folder you can write to"
        ) from e
    return staging


def select_rows(ds: Any, policy: LicensePolicy, dataset_license: str | None) -> tuple[list[int], Counter, Counter]:
    """Indices of the rows the policy publishes, their licences, and the number left out per reason.

    Only the small ``license`` column is read; a dataset without one has ``dataset_license`` on every row.
    """
    has_column = "license" in ds.column_names
    values = ds.select_columns(["license"])[:]["license"] if has_column else [dataset_license] * len(ds)
    keep: list[int] = []
    licenses: Counter = Counter()
    left_out: Counter = Counter()
    for i, value in enumerate(values):
        reason = policy.refusal(value)
        if reason is None:
            keep.append(i)
            licenses[license_id(value) or "unknown"] += 1
        else:
            left_out[reason] += 1
    return keep, licenses, left_out


def write_upload_folder(
    folder: Path,
    splits: dict[str, Any],
    cfg: PublishConfig,
    summary: PublishSummary,
    build_info: dict[str, Any],
    progress: bool = True,
) -> None:
    """Parquet shards per split, ``attribution.csv`` and ``README.md`` (the dataset card) under ``folder``."""
    from rankset.card import hub_card

    splits = {split: without_local_urls(ds) for split, ds in splits.items()}
    max_bytes = parse_size(cfg.max_shard_size)
    plans = {split: shard_count(ds, max_bytes) for split, ds in splits.items()}
    with progress_bar(progress, sum(plans.values()), "writing parquet shards") as advance:
        for split, ds in splits.items():
            for index in range(plans[split]):
                shard = ds.shard(num_shards=plans[split], index=index, contiguous=True)
                write_shard(shard, folder, split, index, plans[split])
                advance()
    pool_rows = pool_attribution(build_info.get("input")) if summary.kind == "ranked" else {}
    rows = attribution_rows(splits, summary.kind, cfg.dataset_license, pool_rows)
    summary.pictures = len(rows)
    (folder / "attribution.csv").write_bytes(attribution_csv(rows))
    card = hub_card(
        repo_id=cfg.repo_id,
        kind=summary.kind,
        build_info=public_build_info(build_info),
        splits=summary.rows,
        licenses=dict(summary.licenses),
        left_out=dict(summary.left_out),
        policy=cfg.policy.describe(),
        dataset_license=cfg.dataset_license,
        pictures=len(rows),
    )
    (folder / "README.md").write_text(card, encoding="utf-8")


def is_local_url(url: Any) -> bool:
    """A ``file://`` URL: where a picture lay on the builder's disk, which must not be published."""
    return isinstance(url, str) and url.startswith("file://")


def without_local_urls(ds: Any) -> Any:
    """``ds`` with every ``file://`` source URL blanked (pictures ingested from a local folder)."""
    from rankset.io import quiet_datasets

    if "source_url" not in ds.column_names:
        return ds
    with quiet_datasets():
        return ds.map(
            lambda urls: {"source_url": [None if is_local_url(u) else u for u in urls]},
            input_columns="source_url",
            batched=True,
            keep_in_memory=True,
        )


def public_build_info(build_info: dict[str, Any]) -> dict[str, Any]:
    """Build info for the card, with every local path reduced to its last name: the ``input``, ``root`` and ``out``
    folders, and any absolute path or ``file://`` URL inside (the pool commands' argv and settings), which would
    otherwise publish where the data lay on the builder's disk."""
    from rankset.io import looks_like_hub_id

    public = _without_local_paths(build_info)
    for key in ("input", "root", "out"):
        value = public.get(key)
        if isinstance(value, str) and value and not looks_like_hub_id(value):
            public[key] = _last_name(value)
    return public


def _without_local_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_local_paths(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_local_paths(item) for item in value]
    if isinstance(value, str) and (is_local_url(value) or LOCAL_PATH.match(value)):
        return _last_name(value)
    if isinstance(value, str) and (option := OPTION_WITH_VALUE.match(value)):
        flag, given = option.groups()  # `--out=/home/me/pool` in argv: the path is the option's value
        return f"{flag}={_without_local_paths(given)}"
    return value


LOCAL_PATH = re.compile(r"^(?:/|~|[A-Za-z]:[\\/]|\\\\)")  # POSIX, home, Windows drive or UNC
OPTION_WITH_VALUE = re.compile(r"^(--?[A-Za-z0-9][\w-]*)=(.+)$", re.DOTALL)  # `--flag=value`, one argv item


def _last_name(path: str) -> str:
    """``/home/me/data/part_B/`` -> ``part_B``; ``file:///x/y.jpg`` -> ``y.jpg``; Windows separators too."""
    from urllib.parse import unquote, urlsplit

    text = unquote(urlsplit(path).path) if is_local_url(path) else path
    parts = [part for part in re.split(r"[\\/]", text) if part not in ("", ".", "~")]
    return parts[-1] if parts else text


def shard_count(ds: Any, max_bytes: int) -> int:
    """Shards for one split: its Arrow size over ``max_bytes``, at least 1 and at most one per row."""
    whole = ds.data.nbytes
    total_rows = len(ds.data) or 1
    nbytes = whole * len(ds) / total_rows  # a selection holds about its share of the table's bytes
    return max(1, min(len(ds), math.ceil(nbytes / max_bytes)))


def write_shard(shard: Any, folder: Path, split: str, index: int, count: int) -> Path:
    """One Parquet shard with every image's bytes embedded (a path to a local file would not travel)."""
    from datasets.table import embed_table_storage

    from rankset.io import quiet_datasets

    path = folder / "data" / f"{split}-{index:05d}-of-{count:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_datasets():
        embedded = shard.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True)
        embedded.with_format(None).to_parquet(str(path))
    return path


def pool_attribution(input_path: str | None) -> dict[str, dict[str, Any]]:
    """Image URL, page, title and licence URL per pool id, when the dataset was built from a pool still on disk."""
    if not input_path or not (Path(input_path) / "pool.json").is_file():
        return {}
    from harvest.pool import Pool

    columns = ["id", "url", "page_url", "title", "license_url", "status"]
    df = Pool(Path(input_path)).read_index(columns=columns)
    df = df[df["id"].notna()].sort_values("status", key=lambda s: s != "ok").drop_duplicates("id")
    return {row["id"]: row for row in df.to_dict("records")}


def attribution_rows(
    splits: dict[str, Any], kind: str, dataset_license: str | None, pool_rows: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per published picture and split: who made it, under which licence, where it came from."""
    id_column = "source_id" if kind == "ranked" else "image_id"
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for split, ds in splits.items():
        names = set(ds.column_names)
        columns = [c for c in (id_column, "license", "author", "source_url", "title") if c in names]
        for record in ds.select_columns(columns).with_format(None):
            key = (split, str(record[id_column]))
            if key in out:
                out[key]["rows"] += 1
                continue
            pool = pool_rows.get(key[1], {})
            out[key] = {
                "split": split,
                "source_id": key[1],
                "rows": 1,
                "title": _text(pool.get("title")) or _text(record.get("title")),
                "author": _text(record.get("author")),
                "license": _text(record.get("license")) if "license" in names else dataset_license,
                "license_url": _text(pool.get("license_url")),
                "source_url": next(
                    (u for u in (_text(pool.get("url")), _text(record.get("source_url"))) if u and not is_local_url(u)),
                    None,
                ),
                "page_url": _text(pool.get("page_url")),
            }
    return list(out.values())


def attribution_csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ATTRIBUTION_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in ATTRIBUTION_COLUMNS})
    return buffer.getvalue().encode("utf-8")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value) or None


def upload_files(folder: Path) -> list[str]:
    """Every file of the upload folder as a repo path, in a stable order."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def upload_folder(folder: Path, cfg: PublishConfig, token: str, summary: PublishSummary) -> str:
    """Commit the staged folder to the dataset repo in one commit; returns the commit URL.

    Shards a previous push left under ``data/`` that this one does not write are deleted in the same commit,
    so ``data/train-*`` never mixes two pushes.
    """
    splits = ", ".join(f"{split} {n}" for split, n in summary.rows.items())
    return commit_folder(
        folder,
        upload_files(folder),
        repo_id=cfg.repo_id,
        repo_type="dataset",
        private=cfg.private,
        revision=cfg.revision,
        token=token,
        message=f"rankset push: {summary.kind} dataset ({splits} rows)",
        error=PublishError,
        replace_prefix="data/",
    )


def print_publish_summary(summary: PublishSummary, dry_run: bool) -> None:
    """The end-of-run tables: rows per split and licence, rows left out per reason, files written."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    verb = "would publish (dry run)" if dry_run else "published"
    table = Table(title=f"rankset push {summary.repo_id}: {verb} -> {summary.destination}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for split, n in summary.rows.items():
        table.add_row(f"{split} rows", str(n))
    table.add_row("pictures in attribution.csv", str(summary.pictures))
    for name, n in sorted(summary.licenses.items()):
        table.add_row(f"rows licensed {name}", str(n))
    for reason, n in sorted(summary.left_out.items()):
        table.add_row(f"left out: {reason}", str(n))
    table.add_row("files", f"{len(summary.files)} ({sum(summary.files.values()) / 1e6:.1f} MB)")
    console.print(table)
    for note in summary.notes:
        console.print(f"note: {note}", markup=False)

"""Writing and reading dataset folders: streamed, atomic, and accepting Hub ids where a folder is accepted.

Every dataset rankset writes goes through :func:`write_dataset_dict`: rows are streamed from generators
into Arrow files (memory flat in the number of rows), saved under a temporary name beside ``out`` and
renamed into place, so a killed run never leaves a half-written dataset at ``out``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from rankset.errors import EmptySplitError, InputError, PublishError


def write_dataset_dict(
    out: str | Path,
    splits: dict[str, tuple[Callable[..., Iterator[dict[str, Any]]], dict[str, Any]] | Iterable[dict[str, Any]]],
    features: Any,
    description: str | None = None,
    num_proc: int | None = None,
    card: str | Callable[[], str] | None = None,
    extra_files: dict[str, bytes | Callable[[], bytes]] | None = None,
    inputs: Iterable[str | Path] = (),
    notes: list[str] | None = None,
) -> Any:
    """Stream each split's rows into Arrow files and save the DatasetDict atomically at ``out``.

    ``splits`` maps a split name to either an iterable of rows (consumed in this process, in order: the
    caller may parallelise producing them) or ``(generator, gen_kwargs)``; with ``num_proc`` > 1, list-valued
    gen_kwargs are sharded across processes, as ``Dataset.from_generator`` does. ``card`` (text, or a
    function called once every row is written, so it can report counts) becomes ``out/README.md``;
    ``extra_files`` (bytes, or functions called after the card, likewise) are written beside it. Returns the
    DatasetDict loaded from ``out``.

    ``out`` is replaced only when it is missing, empty or a dataset folder, and never when it is, or holds, one of
    ``inputs``; a split with no rows raises :class:`EmptySplitError`. Both checks leave ``out`` as it was.
    Staging folders of ``out`` left by killed runs are removed first (:func:`remove_stale_staging`), and a sentence
    for each is appended to ``notes`` for the run summary.
    """
    import datasets

    out = Path(out)
    check_replaceable(out, inputs, features)
    out.parent.mkdir(parents=True, exist_ok=True)
    removed = remove_stale_staging(out.parent, out.name)
    if notes is not None:
        notes.extend(removed)
    work = staging_path(out)  # holds the Arrow cache and the finished dataset: one folder to clean up after a kill
    staging = work / "dataset"
    try:
        with quiet_datasets():
            _write_staging(work, splits, features, description, num_proc)
        if card is not None:
            (staging / "README.md").write_text(card() if callable(card) else card)
        for fname, data in (extra_files or {}).items():
            (staging / fname).write_bytes(data() if callable(data) else data)
        put_in_place(staging, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return datasets.load_from_disk(str(out))


RENAME_RACES = 5  # a run writing the same --out at once can put its folder there between two of our steps this often


def put_in_place(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` folder to ``out``; an existing ``out`` is moved aside first and deleted once the
    new one is in place (a kill between the two renames: the next write puts it back, :func:`remove_stale_staging`).

    Another run writing the same ``out`` at the same moment can rename its own folder to ``out``, or move ``out``
    aside, between two of these steps: the rename then fails (``out`` is there after all, or gone). Each such race
    is taken again from the top, so the run that finishes last wins and ``out`` always holds one whole dataset."""
    aside: list[Path] = []
    try:
        for attempt in range(RENAME_RACES):
            if out.exists() or out.is_symlink():
                trash = staging_path(out, "old")
                try:
                    os.replace(out, trash)
                except FileNotFoundError:  # the other run moved it aside meanwhile
                    continue
                aside.append(trash)
            try:
                os.replace(staging, out)
                return
            except OSError as e:  # ENOTEMPTY/EEXIST: the other run renamed its folder to out meanwhile
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == RENAME_RACES - 1:
                    raise
        raise OSError(errno.EBUSY, f"other runs kept replacing {out} while this one tried to put its data there")
    except BaseException:
        if aside and not (out.exists() or out.is_symlink()):
            os.replace(aside.pop(), out)  # the dataset that was there before, rather than none
        raise
    finally:
        for trash in aside:
            shutil.rmtree(trash, ignore_errors=True)


HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
STAGING_SUFFIX = re.compile(r"\.(?P<kind>tmp|old)-(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-[0-9a-f]{8}")


# Staging names of crowdrank before the HOST-PID scheme: ``.NAME.tmp-TOKEN`` (8 hex digits; dataset folders and
# import.json), ``.NAME.tmp-PID`` (synth --unlabeled files) and ``.cache-XXXXXXXX`` (an Arrow cache made by
# tempfile beside --out). No current writer makes them, and they do not say which machine or process made them.
LEGACY_STAGING = re.compile(r"\.(?P<target>.+)\.tmp-(?:[0-9a-f]{8}|\d{1,10})")
LEGACY_CACHE = re.compile(r"\.cache-[a-z0-9_]{8}")
LEGACY_PUSH = re.compile(r"\.rankset-push-[a-z0-9_]{8}")  # push's tempfile staging (system temp, beside --dry-run)
LEGACY_CACHE_FILES = (".arrow", ".lock", ".json")  # all an Arrow cache of Dataset.from_generator holds
# A legacy staging entry is removed once nothing in it has changed for this long. A writer still running (an older
# crowdrank on a shared disk) appends to its Arrow files batch by batch, so a day without any change means it is
# gone; a day also outlasts any single build or import, and keeps a folder made by someone else today out of reach.
LEGACY_STALE_SECONDS = 24 * 3600


def staging_path(target: Path, kind: str = "tmp") -> Path:
    """A hidden name beside ``target`` for writing it (``tmp``) or for moving the old one aside (``old``).

    The name carries this machine and process (``.NAME.tmp-HOST-PID-TOKEN``), so a later write to ``target`` can tell
    a leftover of a killed run from the work of one still running (:func:`remove_stale_staging`).
    """
    assert kind in ("tmp", "old"), f"staging kind {kind!r} is neither tmp nor old"
    return target.with_name(f".{target.name}.{kind}-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def writer_alive(host: str, pid: int) -> bool:
    """Whether the process that named a staging folder may still be running; True whenever that cannot be told
    (another machine on a shared disk, a process of another user)."""
    if host != HOST or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, and belongs to someone else
        return True
    return True


def remove_stale_staging(folder: Path, name: str | None = None, arrow_caches: bool = True) -> list[str]:
    """Delete the staging files and folders in ``folder`` (of the target ``name``, or of any target) whose writer
    is no longer running, and say what was done, one sentence each, for the run summary.

    A kill between moving the old target aside and renaming the new one into place leaves no target but an ``old``
    folder: that one is put back, so the earlier dataset is never lost. Staging entries of the scheme before this
    one (:data:`LEGACY_STAGING`, :data:`LEGACY_CACHE`) name no process, so they go only once nothing in them has
    changed for :data:`LEGACY_STALE_SECONDS` (:func:`remove_legacy_staging`). ``arrow_caches=False`` leaves
    ``.cache-*`` folders alone: in a folder other programs share (the system temp folder) the name proves nothing.
    """
    if not folder.is_dir():
        return []
    stale: list[tuple[Path, str, str, str]] = []
    legacy: list[Path] = []
    for entry in folder.iterdir():
        if not entry.name.startswith("."):
            continue
        match = STAGING_SUFFIX.search(entry.name)
        if match is None or match.end() != len(entry.name):
            if is_legacy_staging(entry, name) and (arrow_caches or LEGACY_CACHE.fullmatch(entry.name) is None):
                legacy.append(entry)
            continue
        target = entry.name[1 : match.start()]
        if (name is None or target == name) and not writer_alive(match["host"], int(match["pid"])):
            stale.append((entry, target, match["kind"], match["pid"]))
    done: list[str] = remove_legacy_staging(legacy)
    for entry, target, kind, pid in sorted(stale, key=lambda item: _mtime(item[0]), reverse=True):
        where = folder / target
        if kind == "old" and not where.exists():
            os.replace(entry, where)
            done.append(f"put back {where}, moved aside by a run that was killed before its new data was in place")
            continue
        size = _tree_size(entry)
        _remove_entry(entry)
        done.append(
            f"removed {entry} ({size / 1e6:.1f} MB), left by process {pid}, a run that was killed before it finished"
        )
    return done


def _remove_entry(entry: Path) -> None:
    """Delete a staging folder (its tree) or file; a link is removed itself, never what it points at."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def is_legacy_staging(entry: Path, name: str | None = None) -> bool:
    """Whether ``entry`` is a staging name of the scheme before HOST-PID, made by this user (of the target ``name``
    when given; an Arrow cache or push folder names no target, so it counts for any). A ``.cache-*`` folder must
    hold nothing but Arrow cache files, so a folder of the user's that happens to have such a name is never taken
    for one."""
    if STAGING_SUFFIX.search(entry.name) is not None:  # the current scheme: judged by its writer's pid, never here
        return False
    try:
        if entry.lstat().st_uid != os.getuid():  # another user's: not ours to judge (nor, often, to delete)
            return False
    except OSError:
        return False
    match = LEGACY_STAGING.fullmatch(entry.name)
    if match is not None:
        return name is None or match["target"] == name
    if LEGACY_PUSH.fullmatch(entry.name) is not None:
        return entry.is_dir() and not entry.is_symlink()
    if LEGACY_CACHE.fullmatch(entry.name) is None or entry.is_symlink() or not entry.is_dir():
        return False
    try:
        return all(p.is_dir() or p.name.endswith(LEGACY_CACHE_FILES) for p in entry.rglob("*"))
    except OSError:
        return False


def remove_legacy_staging(entries: Iterable[Path], now: float | None = None) -> list[str]:
    """Delete the legacy staging ``entries`` in which nothing has changed for :data:`LEGACY_STALE_SECONDS`, and say
    what was done with each, one sentence for the run summary (those kept too: they are not cleaned up yet)."""
    now = time.time() if now is None else now
    done: list[str] = []
    for entry in sorted(entries):
        idle = now - _newest_mtime(entry)
        size = _tree_size(entry)
        if idle < LEGACY_STALE_SECONDS:
            done.append(
                f"kept {entry} ({size / 1e6:.1f} MB), a staging folder of an earlier crowdrank version changed "
                f"{idle / 3600:.1f} h ago: it may still be written; it is removed once untouched for "
                f"{LEGACY_STALE_SECONDS // 3600} h, or delete it yourself if no older rankset is running"
            )
            continue
        _remove_entry(entry)
        done.append(
            f"removed {entry} ({size / 1e6:.1f} MB), left by a run of an earlier crowdrank version that did not "
            f"finish (untouched for {idle / 3600:.0f} h)"
        )
    return done


def _newest_mtime(path: Path) -> float:
    """The latest change to ``path`` or anything under it: a live writer appends to files deep inside a folder
    without touching the folder's own time."""
    newest = _mtime(path)
    if path.is_dir() and not path.is_symlink():
        try:
            for p in path.rglob("*"):
                newest = max(newest, _mtime(p))
        except OSError:
            pass
    return newest


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _tree_size(path: Path) -> int:
    """Bytes under ``path``; what vanishes meanwhile (another run cleaning up too) counts as 0."""
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
        return sum(_size(p) for p in path.rglob("*"))
    except OSError:
        return 0


def _size(path: Path) -> int:
    try:
        return 0 if path.is_dir() else path.lstat().st_size
    except OSError:
        return 0


@contextmanager
def staged_file(path: Path, clean: bool = True) -> Iterator[Path]:
    """A staging name beside ``path`` to write the whole file under; renamed onto ``path`` when the block ends, and
    deleted when it fails (Ctrl-C, a full disk, a check that refuses what was written). A kill leaves the old file or
    the new one, never a torn one under its name; the staging files such kills leave of ``path`` (their writers no
    longer run) are removed first, so kills never pile them up (:func:`remove_stale_staging`). That lists the
    folder: a caller writing many files into one folder passes ``clean=False`` and cleans the folder once itself."""
    if clean:
        remove_stale_staging(path.parent, path.name, arrow_caches=False)
    staging = staging_path(path)
    try:
        yield staging
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def write_file_atomic(path: Path, data: bytes, clean: bool = True) -> None:
    """Write ``data`` to ``path`` through :func:`staged_file`."""
    with staged_file(path, clean) as staging:
        staging.write_bytes(data)


def write_figure(fig: Any, path: Path, dpi: int) -> Path:
    """Render a matplotlib figure as PNG in memory, then write it with :func:`write_file_atomic`: a kill or a failed
    render leaves the previous file (or none) at ``path``, never a torn PNG under the final name. The figure is
    closed either way (every figure of crowdrank is written once); a caller that can fail before this call closes it
    itself. Staging files of ``path`` left by killed writers are removed first (:func:`staged_file`)."""
    from io import BytesIO

    import matplotlib.pyplot as plt

    try:
        buffer = BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        write_file_atomic(path, buffer.getvalue())
    finally:
        plt.close(fig)
    return path


KIND_WORDS = {"ranked": "ranked-set dataset (rankset build)", "labeled": "labeled dataset (rankset import/synth)"}


def check_replaceable(out: Path, inputs: Iterable[str | Path] = (), features: Any = None) -> None:
    """Refuse an ``--out`` whose replacement would delete something other than an earlier dataset of the same kind
    (ranked sets or labeled, judged from ``features``, the Features about to be written)."""
    target = out.resolve()
    for given in inputs:
        source = Path(given).resolve()
        if Path(given).exists() and (target == source or target in source.parents):
            raise InputError(
                f"--out {out} is or holds the input {given}, which writing it would delete; choose another"
            )
    if not existing_out_folder(out, "the dataset"):
        return
    if is_dataset_folder(out):
        if features is not None:
            from rankset.schema import dataset_kind

            new, old = dataset_kind(features), saved_kind(out)
            if new != old and {new, old} <= set(KIND_WORDS):
                raise InputError(
                    f"--out {out} holds a {KIND_WORDS[old]}; writing a {KIND_WORDS[new]} there would delete it. "
                    "Choose another folder, or delete that one first if it is no longer needed"
                )
        return
    entries = sorted(p.name for p in out.iterdir())
    if entries:
        shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
        raise InputError(
            f"--out {out} holds files that are not a dataset ({shown}); writing the dataset there would delete "
            f"them. Choose a new or empty folder, or move those files away"
        )


def out_folder_problem(out: Path, flag: str) -> str | None:
    """Why the folder ``out`` could not be written (one of its folders is a file, or the nearest existing one takes
    no new entries: read-only, no permission), as a message naming ``flag`` and the fix; None when it can be."""
    existing = Path(out)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir() and existing != Path(out):
        return f"{flag} {out}: {existing} is a file, so no folder can be made there; choose another path"
    base = existing if existing.is_dir() and existing != Path(out) else Path(out).parent
    if not base.is_dir():
        return None  # out itself is a file: the caller says so
    try:  # the staging folder is made beside out; try that once, so a refusal comes before any work
        os.rmdir(tempfile.mkdtemp(prefix=".rankset-probe-", dir=base))
    except OSError as e:
        return f"{flag} {out}: cannot write in {base} ({e.strerror or e}); choose a folder you can write to"
    return None


def existing_out_folder(out: Path, holds: str) -> bool:
    """InputError when ``--out`` cannot be written (:func:`out_folder_problem`) or is a file; True when it is a
    folder that exists already (the caller decides whether it may be replaced), False when it is still to be made."""
    problem = out_folder_problem(out, "--out")
    if problem is not None:
        raise InputError(problem)
    if not out.exists():
        return False
    if not out.is_dir():
        raise InputError(f"--out {out} is a file; pass a folder path for {holds}")
    return True


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence HF datasets' own progress bars (casts, saves) while our rich bars and tables are on screen."""
    import datasets

    were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if were_on:
            datasets.enable_progress_bars()


def _write_staging(
    work: Path, splits: dict[str, Any], features: Any, description: str | None, num_proc: int | None
) -> None:
    """Write the DatasetDict to ``work/dataset``, through an Arrow cache in ``work/cache``."""
    import datasets

    cache_dir = work / "cache"
    cache_dir.mkdir(parents=True)
    built = {}
    for name, spec in splits.items():
        info = datasets.DatasetInfo(description=description) if description else None
        if not isinstance(spec, tuple):
            built[name] = _write_rows(spec, features, cache_dir / f"{name}.arrow", info, name)
            continue
        generator, gen_kwargs = spec
        proc = num_proc if (num_proc and num_proc > 1 and _shardable(gen_kwargs)) else None
        built[name] = datasets.Dataset.from_generator(
            generator,
            features=features,
            gen_kwargs=gen_kwargs,
            cache_dir=str(cache_dir),
            num_proc=proc,
            info=info,
            split=datasets.NamedSplit(name),
        )
    empty = [name for name, ds in built.items() if ds.num_rows == 0]
    if empty:  # save_to_disk would write a folder load_from_disk cannot read
        raise EmptySplitError(f"split {empty[0]!r} got no rows", empty)
    datasets.DatasetDict(built).save_to_disk(str(work / "dataset"))
    del built


def _write_rows(rows: Iterable[dict[str, Any]], features: Any, path: Path, info: Any, split: str) -> Any:
    """Encode and write rows one by one (memory flat in their number), then map the file as a Dataset."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    with ArrowWriter(features=features, path=str(path)) as writer:
        for row in rows:
            writer.write(features.encode_example(row))
        writer.finalize()
    return datasets.Dataset.from_file(str(path), info=info, split=datasets.NamedSplit(split))


def _shardable(gen_kwargs: dict[str, Any]) -> bool:
    lists = [v for v in gen_kwargs.values() if isinstance(v, list)]
    return bool(lists) and all(len(v) > 1 for v in lists)


def saved_kind(folder: Path) -> str:
    """``ranked``, ``labeled`` or ``unknown``: the kind of a ``save_to_disk`` folder, from its saved feature names, or
    of a Parquet snapshot (``rankset push --dry-run`` output, a Hub download), from the columns of its first shard."""
    from rankset.schema import dataset_kind

    if not (folder / "dataset_dict.json").is_file() and not (folder / "dataset_info.json").is_file():
        import pyarrow.parquet as pq

        for shard in sorted((folder / "data").glob("*.parquet")):
            try:
                return dataset_kind(pq.read_schema(shard).names)
            except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError: try the next shard
                continue
        return "unknown"

    infos = [folder / "dataset_info.json"]
    try:
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        infos += [folder / str(split) / "dataset_info.json" for split in splits]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for info in infos:
        try:
            features = json.loads(info.read_text(encoding="utf-8"))["features"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(features, dict):
            return dataset_kind(features)
    return "unknown"


def is_dataset_folder(path: str | Path) -> bool:
    """A folder written by ``save_to_disk`` (a DatasetDict or a single Dataset), or a Parquet Hub snapshot."""
    p = Path(path)
    return (p / "dataset_dict.json").is_file() or (p / "dataset_info.json").is_file() or is_parquet_snapshot(p)


def is_parquet_snapshot(path: str | Path) -> bool:
    """A folder laid out as on the Hub (``rankset push`` output, a downloaded snapshot): ``data/*.parquet``."""
    data = Path(path) / "data"
    return data.is_dir() and any(data.glob("*.parquet"))


def empty_saved_splits(folder: Path) -> list[str]:
    """Splits of a ``save_to_disk`` folder that hold no Arrow file (0 rows): ``datasets`` saves such a split
    without data files and then cannot load the folder at all."""
    try:
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        states = {split: json.loads((folder / split / "state.json").read_text(encoding="utf-8")) for split in splits}
    except (OSError, ValueError, KeyError, TypeError):  # not such a folder (one Dataset, Parquet files): none known
        return []
    return [split for split, state in states.items() if isinstance(state, dict) and not state.get("_data_files")]


def looks_like_hub_id(name: str) -> bool:
    """``USER/NAME`` that cannot be a path here: nothing of that name exists and ``USER`` is no local folder.

    ``data/shb`` while ``data/`` exists is a local path not made yet, not a Hub dataset of the user ``data``.
    """
    from rankset.hub import REPO_ID

    user = name.split("/", 1)[0]
    return bool(REPO_ID.match(name)) and not Path(name).exists() and not Path(user).is_dir()


def load_dataset_dict(path_or_id: str | Path) -> Any:
    """A DatasetDict from a dataset folder, or from the Hub for ``user/name`` (with a clear offline error)."""
    import datasets

    path = Path(path_or_id)
    if is_parquet_snapshot(path):  # the README's `configs` (or the data/{split}-* names) say which file is which split
        from rankset.card import card_build_info
        from rankset.schema import encode_build_info

        try:
            with quiet_datasets():
                loaded = datasets.load_dataset("parquet", data_files=snapshot_data_files(path))
        except Exception as e:  # a broken shard or card: say which folder, not a deep datasets traceback
            raise InputError(f"cannot read the Parquet dataset folder {path}: {e}") from e
        build_info = card_build_info(path / "README.md")
        for split in loaded.values():  # Parquet keeps only the features; the card keeps how the data was built
            split.info.description = encode_build_info(build_info) if build_info else split.info.description
        return loaded
    if is_dataset_folder(path):
        empty = empty_saved_splits(path)
        if empty:  # datasets would fail on the whole folder with an IndexError
            raise EmptySplitError(
                f"{path} has an empty split ({', '.join(empty)}: 0 rows), which cannot be loaded", empty
            )
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as e:  # a damaged or partly deleted folder: datasets raises JSON, OS, Arrow or Unicode errors
            raise InputError(
                f"cannot read the dataset folder {path}: it is damaged or incomplete ({type(e).__name__}: {e}). "
                "Write it again with the rankset command that made it (build, import or synth), or restore it from "
                "a backup"
            ) from e
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({"train": loaded})
        return loaded
    name = str(path_or_id)
    if looks_like_hub_id(name):
        from rankset.hub import hub_offline, hub_unreachable

        offline = hub_unreachable()
        try:  # offline: a copy loaded here before, without the client's retries first
            with hub_offline() if offline is not None else nullcontext():
                return datasets.load_dataset(name)
        except Exception as e:  # the Hub client raises many types; all mean "could not get it"
            why = (
                f"{offline}, and it is not in the local cache. Connect once to download it"
                if offline is not None
                else f"{e}. Check the id, your network and HF_TOKEN for private datasets"
            )
            raise PublishError(
                f"cannot load Hub dataset {name!r} (there is no local folder of that name either): {why}; "
                "offline, pass a local folder written by `rankset`"
            ) from e
    if path.exists():
        raise InputError(f"{path} is not a dataset folder (no dataset_dict.json); pass a folder written by rankset")
    raise InputError(missing_path_message(path))


def snapshot_data_files(path: Path) -> dict[str, list[str]]:
    """Each split's Parquet files in a snapshot folder, as absolute paths, by the card's `configs` or file names.

    ``load_dataset(folder)`` caches a card's `configs` under the folder's *name* and the relative patterns only, so
    two snapshots called ``upload`` (or one rewritten in place) would load the first one's cached rows. Loading the
    resolved files with the ``parquet`` builder keys the cache on their absolute paths and modification times.
    """
    import datasets

    builder = datasets.load_dataset_builder(str(path))
    return {str(split): [str(f) for f in files] for split, files in (builder.config.data_files or {}).items()}


def missing_path_message(path: Path) -> str:
    """Why ``path`` is neither a local dataset nor a Hub id, saying how it was read."""
    if path.parent != Path(".") and path.parent.is_dir():
        folder = path.parent.as_posix().rstrip("/") + "/"  # "/", not "//", for a path at the root
        return f"{path} does not exist (its folder {folder} does, so it is read as a local path, not a Hub id)"
    return f"{path} does not exist and is not a Hub id of the form user/name"

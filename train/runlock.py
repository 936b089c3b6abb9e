"""One writer per run folder: ``train fit`` holds ``RUN/.lock`` while it writes ``RUN``.

Two fits in one folder (a study rerun while a killed study's child still trains, or two shells) would interleave
``metrics.jsonl`` lines and overwrite each other's ``last.pt``. The lock is an ``flock``: the kernel drops it when
its holder exits, even by SIGKILL, so a crashed run never leaves a stale lock behind. Where ``fcntl`` is missing
(Windows) nothing is locked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from train.errors import ConfigError

LOCK_NAME = ".lock"


@contextmanager
def run_folder_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` for the block; a second holder gets a ConfigError at once, naming the first one's pid."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a run folder; choose another --out")
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks to take
        yield
        return
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with open(out / LOCK_NAME, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise ConfigError(
                    f"{out} is being written by another `train fit` (pid {holder}, holding {out / LOCK_NAME}); wait "
                    "for it to finish or stop it, or choose another --out"
                ) from e
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        if created:  # a fit that failed before writing anything (a missing dataset) leaves no empty run folder
            _remove_if_only_the_lock(out)


def _remove_if_only_the_lock(out: Path) -> None:
    """Remove ``out`` when the lock is all it holds; another writer or a vanished folder leaves it as it is."""
    try:
        if [p.name for p in out.iterdir()] == [LOCK_NAME]:
            (out / LOCK_NAME).unlink()
            out.rmdir()
    except OSError:
        pass

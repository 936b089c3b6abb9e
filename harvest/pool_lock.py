"""One writing command at a time per pool: an exclusive ``flock`` on ``POOL/.lock``, held for a whole run.

Every command that writes a pool (``keywords``, ``qbe``, ``local``, ``dedup``, ``filter``) holds it from before it
reads the index until its last write. A second writer, in another process or another thread, fails at once with a
:class:`PoolError` naming the command that holds it, instead of appending rows that a rewrite then deletes, or
fetching and writing the same URLs a second time. The lock is the kernel's: it dies with its process, so a killed
run never leaves a pool locked. It is re-entrant in the thread that holds it (``Pool.rewrite`` inside a ``dedup``
run). Readers (``report``, ``rankset build``) take no lock: :meth:`Pool.read_index` checks its read instead.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harvest.errors import PoolError

try:
    import fcntl
except ImportError:  # Windows: no flock; pools work, but nothing stops two writers there
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


@dataclass
class _Hold:
    file: IO[str]
    depth: int


_holds: dict[tuple[str, int], _Hold] = {}  # (pool folder, thread id) -> the lock that thread holds
_holds_guard = threading.Lock()


def _drop_inherited_locks() -> None:
    """In a child made by ``fork`` (hash_files' process pool, a DataLoader's workers): give up the parent's locks.

    A forked child shares its parent's open lock file, and a ``flock`` lasts while any process has it open, so a
    worker left behind by a killed run (a process-pool worker waits on its queue for ever) kept the pool locked for
    good. The child's copy now points at /dev/null instead: the parent's lock stays its own (no ``LOCK_UN``, which
    would release it for the parent too), and dies with the parent.
    """
    global _holds_guard
    _holds_guard = threading.Lock()  # another thread may have held it at the fork: in the child it would stay held
    held = list(_holds.values())  # the child has one thread, and the dict is whole: fork happens under the GIL
    _holds.clear()
    for hold in held:
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, hold.file.fileno())
            os.close(null)
        except (OSError, ValueError):  # already closed: nothing inherited
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


def holds(root: Path) -> bool:
    """Whether this thread holds the writer lock of the pool at ``root``."""
    with _holds_guard:
        return (str(Path(root).resolve()), threading.get_ident()) in _holds


@contextmanager
def exclusive(root: Path, command: str | None = None, required: bool = True) -> Iterator[bool]:
    """Hold the writer lock of the pool at ``root`` for the block; yields True.

    When another command holds it, or the lock file cannot be opened (a read-only pool): raises :class:`PoolError`
    saying so (``required``), or yields False holding nothing (``required=False``, for work that is only safe while
    no writer runs). ``command`` names this run in the message a second writer gets.
    """
    key = (str(Path(root).resolve()), threading.get_ident())
    with _holds_guard:
        hold = _holds.get(key)
        if hold is not None:
            hold.depth += 1
    if hold is not None:  # this thread holds it already
        try:
            yield True
        finally:
            with _holds_guard:
                hold.depth -= 1
        return
    try:
        lock_file = open(Path(root) / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as e:  # a read-only pool (a shared or mounted copy): readers go on without recovery
        if required:
            raise PoolError(
                f"cannot take the writer lock {Path(root) / LOCK_NAME}: {e}; a pool is written only where its folder "
                "is writable: copy it somewhere writable first"
            ) from e
        yield False
        return
    with lock_file as f:
        try:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            acquired = True
        except BlockingIOError:
            acquired = False
        if not acquired:
            if required:
                raise PoolError(_busy_message(Path(root), f))
            yield False
            return
        try:
            _record_holder(f, command)
            with _holds_guard:
                _holds[key] = _Hold(f, 1)
            yield True
        finally:
            with _holds_guard:
                _holds.pop(key, None)
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def _record_holder(f: IO[str], command: str | None) -> None:
    """Who holds the lock, for the message of the next writer that finds it taken."""
    holder = {
        "command": command,
        "argv": sys.argv,
        "pid": os.getpid(),
        "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    f.seek(0)
    f.truncate()
    f.write(json.dumps(holder))
    f.flush()


def _busy_message(root: Path, f: IO[str]) -> str:
    try:
        f.seek(0)
        holder = json.loads(f.read())
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict):
        holder = {}
    argv = holder.get("argv") or []
    command_line = " ".join([Path(str(argv[0])).name, *map(str, argv[1:])]) if argv else ""
    who = f"`{command_line}`" if command_line else "another command"
    details = [
        f"harvest {holder['command']}" if holder.get("command") else "",
        f"pid {holder['pid']}" if holder.get("pid") else "",
        f"since {holder['since']}" if holder.get("since") else "",
    ]
    if any(details):
        who += f" ({', '.join(d for d in details if d)})"
    return (
        f"pool {root} is being written by {who}; a pool takes one writing command at a time, so run this one "
        "again when that one has finished"
    )

"""What a kill-and-resume fuzz of `harvest qbe` (real SIGKILL/SIGINT at random moments) found, pinned down.

Each test puts the process where the fuzz caught it, deterministically: the kill point is signalled through a
file, never guessed by timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harvest.qbe_examples import WORKDIR_PREFIX, _example_workdir, open_examples
from tests.harvest.imagegen import encode, scene
from tests.harvest.test_qbe import labeled_dataset

_HOLD_A_WORKDIR = """
import sys, time
from pathlib import Path
from harvest.qbe_examples import _example_workdir
with _example_workdir() as workdir:
    (workdir / "IMG_1.jpg").write_bytes(b"a train picture")
    Path(sys.argv[1]).write_text(str(workdir))
    time.sleep(600)
"""


def _wait_for(path: Path, process: subprocess.Popen[bytes]) -> str:
    """The text ``path`` gets once the child writes it (no deadline: the child either writes it or exits)."""
    while not path.exists() or not path.read_text():
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    return path.read_text()


def test_a_killed_runs_example_folder_is_removed_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset's train split is copied to a temporary folder for the run; a SIGKILLed run never removed it, so
    every killed `harvest qbe --examples DATASET` left a copy of the whole train split in $TMPDIR (the fuzz: 4 of
    12 kills). The next run now removes the folders whose run is gone, and leaves a live run's alone."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    ready = tmp_path / "ready"
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(Path(__file__).parents[2])}
    child = subprocess.Popen([sys.executable, "-c", _HOLD_A_WORKDIR, str(ready)], env=env)
    try:
        killed = Path(_wait_for(ready, child))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert killed.parent == tmp and (killed / "IMG_1.jpg").exists()  # what SIGKILL leaves behind

    dataset = labeled_dataset(
        tmp_path / "shb", {"train": {"IMG_1": encode(scene(1, 48, 40))}, "test": {"IMG_9": encode(scene(9, 48, 40))}}
    )
    with _example_workdir() as live, open_examples(str(dataset)) as examples:
        assert [e.example_id for e in examples.examples] == ["IMG_1"]
        assert not killed.exists()
        assert live.exists()  # a run still going keeps its folder while the other one sweeps
    assert not live.exists() and list(tmp.glob(f"{WORKDIR_PREFIX}*")) == []


def test_a_folder_that_only_looks_like_an_example_folder_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep removes only folders with an unlocked ``.owner``: not someone else's file of the same prefix."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    foreign = tmp_path / f"{WORKDIR_PREFIX}not-ours"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with _example_workdir():
        pass
    assert (foreign / "keep.txt").exists()

"""What SIGTERM (``kill PID``; SLURM, Kubernetes and systemd stopping a job) and a SIGINT sent to `train study`
alone do: the same as Ctrl-C. A line saying what was kept and how to go on, a non-zero exit, no fit left running.

The study tests start a real `train study` process and signal it; its `train fit` children are stand-ins that
sleep until they are interrupted (no torch is imported, so each test takes a second or two). Nothing is timed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from train.cli import app

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})


class GuardTerminated(Exception):
    """What SIGTERM raises in this test process unless the command under test installs its own handler."""


@pytest.fixture
def guarded_sigterm() -> Iterator[Any]:
    """SIGTERM raises :class:`GuardTerminated` here, so a command that leaves SIGTERM alone fails the test instead of
    ending pytest; the handler in place before is put back afterwards."""

    def guard(signum: int, frame: object) -> None:
        raise GuardTerminated

    before = signal.signal(signal.SIGTERM, guard)
    yield guard
    signal.signal(signal.SIGTERM, before)


def sigterm_self(*args: Any, **kwargs: Any) -> None:
    """Stands in for the work of a command: a scheduler's SIGTERM arrives while it runs."""
    import time

    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # the handler's exception ends the sleep at once


def test_sigterm_in_fit_says_how_to_continue_and_exits_143(
    blob_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guarded_sigterm: Any
) -> None:
    """SIGTERM ended `train fit` at once with exit 143 and nothing said: no word that last.pt was kept or that
    --resume continues from it, unlike Ctrl-C."""
    import train.loop
    from tests.train.test_cli import manifest

    monkeypatch.setattr(train.loop, "fit", sigterm_self)
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    result = runner.invoke(app, ["fit", str(manifest(tmp_path, blob_data)), "--out", str(run)])
    assert result.exit_code == 143, result.output
    assert "rerun the same command with --resume" in result.output and "Traceback" not in result.output
    assert signal.getsignal(signal.SIGTERM) is guarded_sigterm  # put back when the command ends


def test_sigterm_in_predict_names_what_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guarded_sigterm: Any
) -> None:
    """SIGTERM ended `train predict` (and eval, export) in silence; Ctrl-C says counts.csv was not written."""
    import train.predict

    monkeypatch.setattr(train.predict, "predict_images", sigterm_self)
    (tmp_path / "best.pt").write_bytes(b"")
    (tmp_path / "a.jpg").write_bytes(b"")
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", str(tmp_path / "best.pt"), str(tmp_path / "a.jpg"), "--out", str(out)])
    assert result.exit_code == 143, result.output
    assert f"interrupted before {out / 'counts.csv'} was written" in result.output
    assert signal.getsignal(signal.SIGTERM) is guarded_sigterm

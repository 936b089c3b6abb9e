"""What SIGTERM (``kill PID``; SLURM, Kubernetes and systemd stopping a job) and a SIGINT sent to `train study`
alone do: the same as Ctrl-C. A line saying what was kept and how to go on, a non-zero exit, no fit left running.

The study tests start a real `train study` process and signal it; its `train fit` children are stand-ins that
sleep until they are interrupted (no torch is imported, so each test takes a second or two). Nothing is timed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


# Each run's `train fit` child: mark that it started, sleep, and on Ctrl-C (SIGINT) mark that it stopped in order.
SLEEPING_FIT = (  # "started" is written inside the try: a signal sent once it exists always finds the handler
    "import pathlib, sys, time; out = pathlib.Path(sys.argv[sys.argv.index('--out') + 1]); "
    'exec(\'try:\\n (out / "started").write_text(""); time.sleep(60)\\n'
    'except KeyboardInterrupt:\\n (out / "stopped").write_text(""); sys.exit(130)\')'
)

# The study process: every dataset check left out (the base manifest names none), each fit a SLEEPING_FIT tied to
# the study by train.study.child_code (so that a study killed outright still takes its children with it).
STUDY = (
    "import sys, train.study; real = train.study.child_code; train.study.preflight = lambda study, runs: None; "
    f"train.study.child_code = lambda code: real({SLEEPING_FIT!r}); "
    "from train.cli import app; app(sys.argv[1:], prog_name='train')"
)


def started_runs(out: Path) -> list[str]:
    return sorted(p.parent.name for p in (out / "runs").glob("*/started"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals to the study process alone: POSIX")
@pytest.mark.parametrize(("sent", "jobs"), [("SIGTERM", 1), ("SIGTERM", 2), ("SIGINT", 1), ("SIGINT", 2)])
def test_a_signalled_study_stops_its_fits_and_says_how_to_go_on(tmp_path: Path, sent: str, jobs: int) -> None:
    """SIGTERM ended `train study` at once (exit -15, nothing said), its fits killed by their parent-death signal;
    a SIGINT sent to the study alone (not the terminal's Ctrl-C, which reaches the fits too) made it wait for every
    running fit to finish, hours perhaps. Both now interrupt the running fits, start no other, and say so."""
    (tmp_path / "base.toml").write_text("name = 'base'\n")
    (tmp_path / "s.toml").write_text('name = "s"\nmanifest = "base.toml"\nseeds = [0, 1, 2]\n')
    out = tmp_path / "out"
    command = [sys.executable, "-c", STUDY, "study", str(tmp_path / "s.toml"), "--out", str(out), "--jobs", str(jobs)]
    study = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path.cwd())
    try:
        while len(started_runs(out)) < jobs and study.poll() is None:
            time.sleep(0.05)
        study.send_signal(getattr(signal, sent))
        _, stderr = study.communicate(timeout=30)
    finally:
        study.kill()  # a no-op once it has exited; else its children go with it (parent-death signal)
    assert study.returncode == (143 if sent == "SIGTERM" else 130), stderr
    assert f"interrupted before {out / 'results.csv'} was written" in stderr and "rerun the same command" in stderr
    started = started_runs(out)
    assert len(started) == jobs  # no run was started after the signal
    stopped = sorted(p.parent.name for p in (out / "runs").glob("*/stopped"))
    assert stopped == started  # each running fit was interrupted (and so keeps its last.pt), none left training

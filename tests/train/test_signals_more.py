"""Ctrl-C and SIGTERM in the commands and moments tests/train/test_signals.py leaves out: pseudo-label, upgrade,
compare and push; any command while it still imports torch and reads its arguments; and a terminal's Ctrl-C on
`train study`, which reaches the whole process group.

Each test starts a real `train` process whose work is a stand-in that marks that it started and sleeps (no torch is
imported), signals it once the mark is there, and reads what it said. Nothing is timed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="real signals to real processes: POSIX")

# argv: MODULE NAME MARK then the train command line. MODULE.NAME becomes a stand-in that writes MARK and sleeps.
STAND_IN = """
import importlib, pathlib, sys, time
module, name, mark = sys.argv[1:4]
def work(*args, **kwargs):
    pathlib.Path(mark).write_text("")
    time.sleep(60)
setattr(importlib.import_module(module), name, work)
from train.cli import app
app(sys.argv[4:], prog_name="train")
"""


def signalled(stand_in: str, argv: list[str], sent: signal.Signals, mark: Path) -> tuple[int, str]:
    """Run ``train ARGV`` with ``stand_in`` (MODULE.NAME) sleeping, send ``sent`` once it runs: (exit code, stderr)."""
    module, name = stand_in.rsplit(".", 1)
    command = [sys.executable, "-c", STAND_IN, module, name, str(mark), *argv]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path.cwd())
    try:
        while not mark.exists() and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(sent)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()  # a no-op once it has exited
    assert mark.exists(), f"the stand-in never ran: {stderr}"
    return process.returncode, stderr


def expected_code(sent: signal.Signals) -> int:
    return 143 if sent == signal.SIGTERM else 130


SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.mark.parametrize("sent", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("command", ["pseudo-label", "upgrade", "upgrade --out", "compare", "push --dry-run", "push"])
def test_the_other_commands_say_what_they_did_not_write(tmp_path: Path, command: str, sent: signal.Signals) -> None:
    """pseudo-label, upgrade, compare and push had no interrupt handler: Ctrl-C and SIGTERM both ended them with
    exit 130 (typer's, for SIGTERM too) and nothing said. Each now names what it did not write and exits 130 or 143.
    """
    checkpoint = tmp_path / "run" / "best.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"")
    (tmp_path / "run" / "eval.json").write_text("{}")
    (tmp_path / "pictures").mkdir()
    out = tmp_path / "out"
    cases: dict[str, tuple[str, list[str], str]] = {
        "pseudo-label": (
            "train.pseudo_label.pseudo_label",
            ["pseudo-label", str(checkpoint), "--images", str(tmp_path / "pictures"), "--out", str(out)],
            f"interrupted before {out} was written: rerun the same command",
        ),
        "upgrade": (
            "train.checkpoint.upgrade_checkpoint",
            ["upgrade", str(checkpoint)],
            f"interrupted before {checkpoint} was rewritten (it is as it was): rerun the same command",
        ),
        "upgrade --out": (
            "train.checkpoint.upgrade_checkpoint",
            ["upgrade", str(checkpoint), "--out", str(tmp_path / "new.pt")],
            f"interrupted before {tmp_path / 'new.pt'} was written: rerun the same command",
        ),
        "compare": (
            "train.compare.compare_runs",
            ["compare", str(checkpoint.parent), "--out", str(tmp_path / "c.png")],
            f"interrupted before {tmp_path / 'c.png'} was written: rerun the same command",
        ),
        "push --dry-run": (
            "train.hub.push_model",
            ["push", str(checkpoint), "--repo-id", "someone/model", "--dry-run", str(out)],
            f"interrupted before {out} was written: rerun the same command",
        ),
        "push": (
            "train.hub.push_model",
            ["push", str(checkpoint), "--repo-id", "someone/model"],
            "interrupted before the commit to someone/model (revision main) was made",
        ),
    }
    stand_in, argv, said = cases[command]
    code, stderr = signalled(stand_in, argv, sent, tmp_path / "mark")
    assert code == expected_code(sent), stderr
    assert said in stderr and "Traceback" not in stderr and "Aborted" not in stderr, stderr


@pytest.mark.parametrize("sent", SIGNALS, ids=lambda s: s.name)
def test_a_signal_while_fit_starts_says_nothing_was_written(tmp_path: Path, sent: signal.Signals) -> None:
    """In its first second or so `train fit` imports torch and reads the manifest, outside the block that says what an
    interrupted run kept: Ctrl-C there ended it with exit 130 and nothing said, and SIGTERM with 130 as well."""
    argv = ["fit", str(tmp_path / "m.toml"), "--out", str(tmp_path / "run")]
    code, stderr = signalled("train.manifest.load_manifest", argv, sent, tmp_path / "mark")
    assert code == expected_code(sent), stderr
    assert "interrupted before train fit started: nothing was written; rerun the same command" in stderr, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("stand_in", "argv"),
    [
        ("train.evaluate.EvalConfig", ["eval", "x.pt", "--data", "d"]),
        ("train.predict.PredictConfig", ["predict", "x.pt", "a.jpg"]),
        ("train.export.ExportConfig", ["export", "x.pt"]),
        ("train.study.load_study", ["study", "s.toml", "--out", "o"]),
    ],
)
def test_every_command_says_so_when_stopped_while_starting(tmp_path: Path, stand_in: str, argv: list[str]) -> None:
    """The same for eval, predict, export and study: SIGTERM while they read their arguments ended them with typer's
    exit 130 and no word."""
    code, stderr = signalled(stand_in, argv, signal.SIGTERM, tmp_path / "mark")
    assert code == 143, stderr
    assert f"interrupted before train {argv[0]} started: nothing was written" in stderr, stderr


# Each run's `train fit` child: mark that it started, then note who sent each SIGINT it gets until a moment after
# the first (another sent with it has arrived by then; two sent at once may merge, the first sender's kept), exit 130.
SENDERS_FIT = """
import pathlib, signal, sys
out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
(out / "started").write_text("")
senders = [signal.sigtimedwait([signal.SIGINT], 60).si_pid]
while (got := signal.sigtimedwait([signal.SIGINT], 0.5)) is not None:
    senders.append(got.si_pid)
(out / "senders").write_text(" ".join(map(str, senders)))
sys.exit(130)
"""

STUDY = (
    "import sys, train.study; real = train.study.child_code; train.study.preflight = lambda study, runs: None; "
    f"train.study.child_code = lambda code: real({SENDERS_FIT!r}); "
    "from train.cli import app; app(sys.argv[1:], prog_name='train')"
)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_terminal_ctrl_c_reaches_each_study_fit_once(tmp_path: Path, jobs: int) -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group: every `train fit` of a study got it, then
    again from the study, which passes a SIGINT to each running fit (for one sent to the study alone). The second
    could land while a fit printed how to go on, ending its study.log in a traceback. The fits now run in their own
    process group, so only the study's SIGINT reaches them: one each."""
    (tmp_path / "base.toml").write_text("name = 'base'\n")
    (tmp_path / "s.toml").write_text('name = "s"\nmanifest = "base.toml"\nseeds = [0, 1, 2]\n')
    out = tmp_path / "out"
    command = [sys.executable, "-c", STUDY, "study", str(tmp_path / "s.toml"), "--out", str(out), "--jobs", str(jobs)]
    study = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path.cwd(), start_new_session=True
    )  # a process group of its own, as a shell gives a job: the test signals that group as a terminal would
    try:
        while len(list((out / "runs").glob("*/started"))) < jobs and study.poll() is None:
            time.sleep(0.02)
        os.killpg(study.pid, signal.SIGINT)
        _, stderr = study.communicate(timeout=30)
    finally:
        study.kill()
    assert study.returncode == 130, stderr
    assert f"interrupted before {out / 'results.csv'} was written" in stderr
    started = sorted(p.parent for p in (out / "runs").glob("*/started"))
    assert len(started) == jobs
    for run in started:  # the terminal's (here the test's) SIGINT did not reach the fit, only the study's
        assert (run / "senders").read_text() == str(study.pid), run.name

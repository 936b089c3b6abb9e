"""``train study``: run a grid of manifests (e.g. paradigm x labeled fraction x seed) and tabulate the results.

A study file names a base manifest, the grid, the seeds and overrides common to every run:

```toml
name = "synthetic-table2"
manifest = "../synthetic.toml"       # relative to the study file
seeds = [0, 1, 2]
metric = "mae"                       # what the table and the plot report
[grid]
"schedule.paradigm" = ["count-only", "multitask"]
"data.labeled_fraction" = [0.1, 1.0]
[set]                                # overrides for every run (then the command line's --set)
"schedule.steps" = 600
```

``folds = ["data/ucf-fold1", ..., "data/ucf-fold5"]`` runs every grid point and seed once per fold, with that
fold's dataset as ``data.labeled`` and ``data.eval`` (UCF_CC_50's 5-fold protocol), and the tables average over
folds and seeds together.

Every grid point and seed is one ``train fit`` in its own process (``DIR/runs/<name>``), so a killed study
resumes run by run: finished runs (with ``eval.json``) are read back, interrupted ones continue from
``last.pt``. The results land in ``DIR/results.csv`` (one row per run), ``DIR/results.md`` (mean and standard
deviation over seeds) and ``DIR/results.png`` (named ``<study name>.*`` instead when several studies share
one folder: runs with the same name and overrides are then trained once and read by every study); they are
written by :mod:`train.study_results`.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from train.config import SEED_LIMIT, SEED_RANGE
from train.errors import ConfigError, DataError, TrainError
from train.runlog import write_text_atomic
from train.study_results import ordering_metrics, write_results

STUDY_KEYS = {"name", "manifest", "seeds", "metric", "grid", "set", "description", "folds"}
FOLD_KEYS = ("data.labeled", "data.eval")  # what each fold sets
METRICS = ("mae", "rmse", "nae", "game0", "game1", "game2", "game3", "spearman", "count_ratio")


@dataclass(frozen=True)
class StudyConfig:
    """A parsed study file; ``runs()`` lists its runs in a stable order."""

    name: str
    manifest: Path
    seeds: tuple[int, ...] = (0,)
    metric: str = "mae"
    grid: dict[str, list[Any]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    folds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(not isinstance(f, str) or not f for f in self.folds):
            raise ConfigError(f"study folds = {list(self.folds)!r}: expected a list of dataset folders or Hub ids")
        clash = [k for k in FOLD_KEYS if self.folds and (k in self.grid or k in self.overrides)]
        if clash:
            raise ConfigError(
                f"study sets {clash} and `folds`: each fold sets data.labeled and data.eval itself; remove them "
                "from [grid], [set] and --set"
            )
        if not self.manifest.is_file():
            raise ConfigError(
                f"study manifest = {str(self.manifest)!r} does not exist; give a path relative to the study"
            )
        if not self.seeds:
            raise ConfigError("study seeds = [] is empty; give at least one seed, e.g. seeds = [0, 1, 2]")
        bad = [seed for seed in self.seeds if not 0 <= seed < SEED_LIMIT]
        if bad:  # checked here too, so a study fails before its first run, not in every run's process
            raise ConfigError(
                f"study seeds = {list(self.seeds)} holds {bad}: each seed must be {SEED_RANGE}, e.g. seeds = [0, 1, 2]"
            )
        if self.metric not in METRICS:
            raise ConfigError(f"study metric = {self.metric!r} is unknown; choose one of {', '.join(METRICS)}")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"study grid.{key!r} = {values!r}: expected a non-empty list of values")

    def runs(self) -> list[dict[str, Any]]:
        """Every (grid point, fold, seed) with its run name and ``--set`` overrides."""
        keys = list(self.grid)
        folds: list[tuple[int | None, dict[str, Any]]] = [
            (k, {"data.labeled": [path], "data.eval": path}) for k, path in enumerate(self.folds, start=1)
        ] or [(None, {})]
        runs = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            for fold, fold_overrides in folds:
                for seed in self.seeds:
                    parts = [f"{_short(k)}={_slug(v)}" for k, v in point.items()]
                    name = "__".join(parts + ([f"fold={fold}"] if fold else []) + [f"seed={seed}"])
                    overrides = {**self.overrides, **point, **fold_overrides, "seed": seed, "name": name}
                    runs.append({"name": name, "point": point, "fold": fold, "seed": seed, "overrides": overrides})
        return runs


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _slug(value: Any) -> str:
    return str(value).replace("/", "_").replace(" ", "")


def run_sets(run: dict[str, Any]) -> list[str]:
    """A run's overrides as ``train fit --set`` items, ``key=<TOML literal>``: what its child and the preflight read."""
    return [f"{key}={_toml_literal(value)}" for key, value in run["overrides"].items()]


def _toml_literal(value: Any) -> str:
    """A value as TOML text for ``--set key=value``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    return repr(value)


def load_study(path: str | Path, extra_overrides: list[str] | None = None) -> StudyConfig:
    """Parse a study file; unknown keys are errors naming the key."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:  # not UTF-8 is a ValueError, not an OSError
        raise ConfigError(f"cannot read study {path}: {e}; save it as UTF-8 TOML (see manifests/studies/)") from e
    unknown = set(table) - STUDY_KEYS
    if unknown:
        raise ConfigError(f"unknown study keys {sorted(unknown)} in {path}; valid keys: {sorted(STUDY_KEYS)}")
    if "manifest" not in table:
        raise ConfigError(f"{path} has no `manifest` key: name the base manifest, e.g. manifest = '../quickstart.toml'")
    _check_study_types(table, path)
    overrides = dict(table.get("set", {}))
    for item in extra_overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set schedule.steps=300")
        try:
            overrides[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = value
    reserved = {"seed", "name"} & set(overrides)
    if reserved:
        raise ConfigError(
            f"{sorted(reserved)} cannot be overridden in a study: each run's seed comes from `seeds` and its name "
            "from the grid; list the seeds in the study file instead"
        )
    return StudyConfig(
        name=str(table.get("name", path.stem)),
        manifest=(path.parent / table["manifest"]).resolve(),
        seeds=tuple(int(s) for s in table.get("seeds", [0])),
        metric=str(table.get("metric", "mae")),
        grid=dict(table.get("grid", {})),
        overrides=overrides,
        description=str(table.get("description", "")),
        folds=_as_tuple(table.get("folds", [])),
    )


STUDY_TYPES: dict[str, tuple[type, str]] = {
    "name": (str, 'name = "shb-table2"'),
    "manifest": (str, 'manifest = "../quickstart.toml"'),
    "metric": (str, 'metric = "mae"'),
    "description": (str, 'description = "what the study asks"'),
    "seeds": (list, "seeds = [0, 1, 2]"),
    "grid": (dict, '[grid] with "schedule.paradigm" = ["count-only", "multitask"]'),
    "set": (dict, '[set] with "schedule.steps" = 300'),
}


def _check_study_types(table: dict[str, Any], path: Path) -> None:
    """A study key of the wrong TOML type fails naming the key, the value and a line to write (a number for
    ``manifest`` or a string for ``seeds`` raised TypeError / ValueError tracebacks; seeds = [1.7] became 1)."""
    for key, (kind, example) in STUDY_TYPES.items():
        if key in table and not isinstance(table[key], kind):
            raise ConfigError(f"study {key} = {table[key]!r} in {path} has the wrong type; write e.g. {example}")
    for seed in table.get("seeds", []):
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(
                f"study seeds = {table['seeds']!r} in {path} holds {seed!r}, not an integer; "
                "write e.g. seeds = [0, 1, 2]"
            )


def _as_tuple(value: Any) -> tuple[Any, ...]:
    """A TOML list as a tuple; a single value as a one-item tuple (validated by :class:`StudyConfig`)."""
    return tuple(value) if isinstance(value, list) else (value,)


def run_one(
    study: StudyConfig, run: dict[str, Any], out: Path, threads: int, children: RunningFits | None = None
) -> dict[str, Any]:
    """One ``train fit`` in a child process (resumed when interrupted), one of ``children``; returns its row."""
    folder = out / "runs" / run["name"]
    eval_path = folder / "eval.json"
    recorded = folder / "study_overrides.json"
    wanted = json.dumps(run["overrides"], sort_keys=True, default=str)
    if recorded.is_file() and recorded.read_text() != wanted:
        raise ConfigError(
            f"{folder} was trained with other overrides ({recorded.read_text()}) than this study asks for "
            f"({wanted}); use another --out for this study"
        )
    started = time.perf_counter()
    if not eval_path.is_file():
        command = [
            sys.executable,
            "-c",
            child_code("from train.cli import app; app()"),
            "fit",
            str(study.manifest),
            "--out",
            str(folder),
        ]
        for item in run_sets(run):
            command += ["--set", item]
        if (folder / "last.pt").is_file() or chain_started(folder):  # a single run, or a [rounds] chain
            command.append("--resume")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(recorded, wanted)  # a kill mid-write left it empty: "other overrides ()" on every rerun
        with open(folder / "study.log", "a") as log:
            code = call_fit(command, stdout=log, stderr=subprocess.STDOUT, env=env, children=children)
        if code != 0 or not eval_path.is_file():
            return {**_row_keys(run), "status": f"failed (exit {code})"}
    metrics = {**json.loads(eval_path.read_text()), **ordering_metrics(folder / "eval_images.csv")}
    row = {**_row_keys(run), "status": "ok"}
    row.update({m: metrics.get(m) for m in METRICS})
    row["best_step"] = metrics.get("step")
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def chain_started(folder: Path) -> bool:
    """Whether ``folder`` holds a started [rounds] chain, which ``train fit`` continues only with ``--resume``: its
    ``round-0/``, or the chain's ``config.toml`` (with its ``[rounds]`` table), written before ``round-0/`` exists.
    Looking for ``round-0/`` alone, a run killed between the two was rerun without ``--resume`` and refused."""
    if (folder / "round-0").is_dir():
        return True
    try:
        return "rounds" in tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):  # none yet: a fresh run, or a single run's
        return False


class RunningFits:
    """The study's running ``train fit`` children, so that a stopped study stops them and starts no more.

    A SIGINT or SIGTERM sent to the study alone (``kill PID``, a scheduler ending the job) used to leave them
    training: the study waited for each to finish, minutes to hours, before it said anything or exited."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen[bytes]] = set()
        self.stopped = False

    def stop(self) -> None:
        """SIGINT (Ctrl-C) each running fit: it exits at once, keeping its last.pt for the rerun to resume."""
        with self.lock:
            self.stopped = True
            for child in self.running:
                child.send_signal(signal.SIGINT)  # a no-op for one that has just exited


def call_fit(command: list[str], children: RunningFits | None = None, **kwargs: Any) -> int:
    """``subprocess.call(command, **kwargs)``, the child known to ``children`` while it runs; once they are
    stopped, no child starts (exit 130, as a fit stopped by Ctrl-C).

    The child runs in a session (and process group) of its own, so that a terminal's Ctrl-C, sent to the study's
    whole group, reaches the fits only through :meth:`RunningFits.stop`: once. Each used to get it twice, the
    second perhaps while it printed how to go on, ending its study.log in a traceback. A study killed outright still
    takes its fits with it (:func:`die_with_parent`)."""
    children = children or RunningFits()
    with children.lock:
        if children.stopped:
            return 130
        child = subprocess.Popen(command, start_new_session=True, **kwargs)
        children.running.add(child)
    try:
        return child.wait()
    finally:
        with children.lock:
            children.running.discard(child)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def child_code(code: str) -> str:
    """``python -c`` text that first ties the child to this process (:func:`die_with_parent`), then runs ``code``."""
    return f"from train.study import die_with_parent; die_with_parent({os.getpid()}); {code}"


def die_with_parent(parent_pid: int) -> None:
    """On Linux, have the kernel SIGTERM this process when ``parent_pid`` (the study) dies, even by SIGKILL.

    Otherwise a killed study leaves its ``train fit`` training on, and a rerun would start a second writer of the
    same run folder (which the folder's lock then refuses, failing that run). Set in the child rather than with
    ``preexec_fn``, which is unsafe while the study's threads run. The kernel watches the thread that started the
    child, so :func:`run_one` waits for it in that same thread. Elsewhere, or if prctl is missing, a no-op.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):  # no libc prctl: the child simply outlives a killed study, as before
        return
    if os.getppid() != parent_pid:  # the study died before prctl took hold: nobody is left to signal us
        raise SystemExit(f"train study (pid {parent_pid}) exited before this run started; not training")


def _row_keys(run: dict[str, Any]) -> dict[str, Any]:
    """The identifying columns of a results row: run name, seed, fold (when the study has folds), grid point."""
    return {"run": run["name"], "seed": run["seed"], **({"fold": run["fold"]} if run["fold"] else {}), **run["point"]}


def run_study(study: StudyConfig, out: str | Path, jobs: int = 1, progress: bool = True) -> list[dict[str, Any]]:
    """Run every run not finished yet (``jobs`` at a time) and write results.csv / .md / .png."""
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs} is out of range: expected an integer >= 1 (runs trained at once)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a study folder; choose another --out")
    runs = study.runs()
    preflight(study, [r for r in runs if not (out / "runs" / r["name"] / "eval.json").is_file()])
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "study.json").is_file():  # the first study in a folder owns results.*
        record = {"name": study.name, "manifest": str(study.manifest), "runs": [r["name"] for r in runs]}
        write_text_atomic(out / "study.json", json.dumps(record, indent=2))  # torn, every rerun failed reading it
    threads = max(1, (os.cpu_count() or 1) // jobs)
    rows: list[dict[str, Any]] = []
    children = RunningFits()
    with _progress(progress, len(runs)) as advance, ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            for row in pool.map(lambda r: run_one(study, r, out, threads, children), runs):
                rows.append(row)
                advance(row)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (train.cli): stop the running fits before waiting for them
            children.stop()
            raise
    write_results(study, rows, out)
    failed = [r["run"] for r in rows if r["status"] != "ok"]
    if failed:
        first = last_error_line(out / "runs" / failed[0] / "study.log")
        raise TrainError(
            f"{len(failed)} of {len(rows)} runs failed ({', '.join(failed[:3])} …); see their study.log"
            + (f". The first, {failed[0]}, ended with: {first}" if first else "")
        )
    return rows


def preflight(study: StudyConfig, runs: list[dict[str, Any]]) -> None:
    """Check, before any run starts, what would make runs fail at once: each run's manifest with its overrides, and
    every dataset the runs name (each opened once). Otherwise a missing dataset failed every run of the grid one by
    one, minutes apart, and the reason stood only in each run's study.log."""
    from train.data import open_dataset
    from train.manifest import load_manifest

    checked: set[tuple[str, str]] = set()
    for run in runs:
        try:
            config = load_manifest(study.manifest, run_sets(run))
            data = config.data
            named = [(f"data.labeled[{i}]", path, "labeled") for i, path in enumerate(data.labeled)]
            if config.schedule.paradigm != "count-only":
                named += [(f"data.ranked[{i}]", path, "ranked") for i, path in enumerate(data.ranked)]
            named += [("data.eval", data.eval, "labeled")] if data.eval else []
            for key, path, kind in named:
                if (path, kind) not in checked:
                    open_dataset(path, key, kind)
                    checked.add((path, kind))
        except (ConfigError, DataError) as e:  # their messages already name the key, the value and the fix
            raise type(e)(f"study run {run['name']}: {e} (no run was started)") from e


def last_error_line(log: Path) -> str:
    """The last line of a run's study.log that starts with ``error:`` (what ``train fit`` printed last), or ""."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.lower().startswith("error")), "")


class _progress:
    """A rich progress bar over runs, printing each finished run's metric."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda row: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        )
        self.bar.start()
        task = self.bar.add_task("study runs", total=self.total)

        def advance(row: dict[str, Any]) -> None:
            mae = row.get("mae")
            result = f"MAE {mae:.2f}" if isinstance(mae, float) else row["status"]
            self.bar.console.print(f"{row['run']}: {result}")
            self.bar.advance(task)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

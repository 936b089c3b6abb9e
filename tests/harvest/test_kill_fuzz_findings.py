"""What a kill-and-resume fuzz of the harvest CLI (real SIGKILL/SIGINT at random moments) found, pinned down.

Each test puts the process where the fuzz caught it, deterministically: no timing, no real signal.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from harvest.cli import app


class _CtrlCOnImport(importlib.abc.MetaPathFinder):
    """Raises KeyboardInterrupt when ``name`` is imported: Ctrl-C during a command's second of library imports."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        if fullname == self.name:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("harvest.local", ["local", "{tmp}", "--out", "{tmp}/pool"]),
        ("harvest.collect", ["keywords", "--terms", "a", "--out", "{tmp}/pool"]),
        ("harvest.dedup_pool", ["dedup", "{tmp}/pool"]),
        ("harvest.clip_filter", ["filter", "{tmp}/pool"]),
        ("harvest.report", ["report", "{tmp}/pool"]),
        ("harvest.qbe", ["qbe", "--examples", "{tmp}", "--out", "{tmp}/pool"]),
    ],
)
def test_ctrl_c_while_a_command_imports_its_library_says_so_and_exits_130(
    module: str, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the first second or so of a run (the command imports pandas, pyarrow, torch) exited 130 with
    nothing on the screen: the imports ran before ``command_errors``, and typer turned the KeyboardInterrupt into
    a silent exit. Found by the fuzz: 3 of 8 SIGINTs to `harvest local` landed there."""
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_CtrlCOnImport(module), *sys.meta_path])
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = CliRunner().invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 130, result.output
    command = argv[0]
    assert f"harvest {command} interrupted" in result.output and "run the same command again" in result.output

"""`rankset COMMAND --help` is where a new user learns each flag: every option says what it does, and the import
formats can be read whole in an 80-column terminal."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rankset.cli import app


def _commands() -> dict[str, Any]:
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]  # a group: one per subcommand


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_of_every_command_has_help_text(name: str) -> None:
    bare = [
        "/".join(param.opts)
        for param in _commands()[name].params
        if param.param_type_name == "option" and not (param.help or "").strip()
    ]
    assert bare == [], f"rankset {name}: options without help text: {bare}"


def test_import_help_lists_every_format_in_an_80_column_terminal() -> None:
    result = CliRunner().invoke(app, ["import", "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    for name in ("shanghaitech", "ucf-cc-50", "ucf-qnrf", "jhu-crowd", "nwpu-crowd", "mall", "points"):
        assert name in text, f"{name!r} missing from rankset import --help:\n{result.output}"

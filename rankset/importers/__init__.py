"""Importers of the standard crowd-counting benchmarks into labeled datasets (`rankset import FORMAT ROOT`).

One module per format registers itself with ``@register_importer("name")``; :func:`create_importer` builds one
by name and :func:`list_importers` names them all. :func:`import_benchmark` runs any of them.
"""

from __future__ import annotations

from rankset.importers.base import (
    Annotation,
    Importer,
    Pair,
    Plan,
    Skipped,
    create_importer,
    list_importers,
    register_importer,
)
from rankset.importers.writer import ImportConfig, ImportSummary, SplitStats, import_benchmark

__all__ = [
    "Annotation",
    "ImportConfig",
    "ImportSummary",
    "Importer",
    "Pair",
    "Plan",
    "Skipped",
    "SplitStats",
    "create_importer",
    "import_benchmark",
    "list_importers",
    "register_importer",
]

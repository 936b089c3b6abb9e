"""Reading MATLAB annotation files (ShanghaiTech, UCF_CC_50, UCF-QNRF, Mall) with clear per-file errors.

scipy reads MATLAB v4 to v7 files. Version 7.3 files are HDF5 containers that scipy refuses; crowdrank does not
depend on h5py, so such a file becomes a per-file error that says how to convert it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rankset.errors import AnnotationError
from rankset.importers.geometry import as_points

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def load_mat(path: Path) -> dict[str, Any]:
    """The variables of a .mat file (MATLAB's ``__header__`` etc. dropped); AnnotationError if unreadable."""
    import scipy.io

    try:
        with open(path, "rb") as handle:
            head = handle.read(520)
    except OSError as e:
        raise AnnotationError(f"cannot read {path.name}: {e.strerror or e}") from e
    if b"MATLAB 7.3" in head[:128] or head[512:520] == HDF5_MAGIC:
        raise AnnotationError(
            f"{path.name} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; re-save it in MATLAB with "
            f"save('{path.name}', '-v7') or convert it with h5py"
        )
    try:
        variables = scipy.io.loadmat(str(path))
    except NotImplementedError as e:  # scipy's message for v7.3 files it did not catch above
        raise AnnotationError(f"{path.name}: {e}") from e
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... for broken files; all mean unreadable
        raise AnnotationError(
            f"{path.name} is not a readable MATLAB file ({type(e).__name__}: {e}); download it again, or re-save it "
            f"in MATLAB with save('{path.name}', '-v7')"
        ) from e
    return {key: value for key, value in variables.items() if not key.startswith("__")}


def mat_variable(variables: dict[str, Any], name: str, path: Path) -> Any:
    """``variables[name]``, or an AnnotationError that lists the variables the file does hold."""
    if name not in variables:
        raise AnnotationError(f"{path.name} has no variable {name!r}; it holds {sorted(variables) or 'nothing'}")
    return variables[name]


def mat_points(value: Any, path: Path, what: str) -> np.ndarray:
    """An (N, 2) float64 point array from a MATLAB matrix; AnnotationError naming ``what`` when malformed."""
    try:
        return as_points(value, what)
    except (ValueError, TypeError) as e:
        raise AnnotationError(f"{path.name}: {e}") from e


def struct_field(value: Any, field: str, path: Path, what: str) -> Any:
    """Field ``field`` of a MATLAB struct as scipy loads it (a (1, 1) structured array), with a clear error."""
    try:
        record = np.asarray(value).reshape(-1)[0]
        return record[field]
    except (IndexError, KeyError, ValueError, TypeError) as e:
        raise AnnotationError(f"{path.name}: {what} is not a struct with field {field!r}") from e

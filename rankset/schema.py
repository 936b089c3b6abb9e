"""The Hugging Face ``Features`` of both dataset kinds crowdrank writes (DESIGN.md, "Datasets").

This is the contract between rankset and train: train imports only this module of rankset. Images are
stored as their encoded bytes (``{"bytes": ..., "path": None}``), so a JPEG crop is never re-encoded.
"""

from __future__ import annotations

import json
from typing import Any

RANKED_FIELDS = ("set_id", "source_id", "images", "boxes", "anchor", "source_size", "license", "author", "source_url")
LABELED_FIELDS = ("image_id", "image", "points", "count", "dataset", "split")
LABELED_OPTIONAL_FIELDS = ("boxes", "roi", "depth")

# Depth maps are stored as 16-bit PNG images: value = depth in metres * DEPTH_SCALE; 0 means "no depth" (sky).
DEPTH_SCALE = 256.0


def _list(feature: Any, length: int = -1) -> Any:
    """A list feature that works on datasets 2.x (``Sequence``) and 3.x/4.x (``List``)."""
    import datasets

    if hasattr(datasets, "List"):
        return datasets.List(feature, length=length)
    return datasets.Sequence(feature, length=length)


def ranked_features(k: int | None = None) -> Any:
    """Features of a ranked-set dataset; with ``k`` the ``images`` and ``boxes`` lists have fixed length."""
    import datasets

    length = -1 if k is None else int(k)
    return datasets.Features(
        {
            "set_id": datasets.Value("string"),
            "source_id": datasets.Value("string"),
            "images": _list(datasets.Image(), length=length),
            "boxes": _list(_list(datasets.Value("float32"), length=4), length=length),
            "anchor": _list(datasets.Value("float32"), length=2),
            "source_size": _list(datasets.Value("int32"), length=2),
            "license": datasets.Value("string"),
            "author": datasets.Value("string"),
            "source_url": datasets.Value("string"),
        }
    )


def labeled_features(optional: tuple[str, ...] = (), extra: dict[str, Any] | None = None) -> Any:
    """Features of a labeled dataset: the required fields, the named optional ones, then ``extra``.

    Optional fields: ``boxes`` (per-head [x0, y0, x1, y1]), ``roi`` (an L-mode mask image, 255 inside),
    ``depth`` (a 16-bit PNG, metres * DEPTH_SCALE).
    """
    import datasets

    unknown = set(optional) - set(LABELED_OPTIONAL_FIELDS)
    if unknown:
        raise ValueError(f"unknown optional labeled fields {sorted(unknown)}; known: {LABELED_OPTIONAL_FIELDS}")
    fields: dict[str, Any] = {
        "image_id": datasets.Value("string"),
        "image": datasets.Image(),
        "points": _list(_list(datasets.Value("float32"), length=2)),
        "count": datasets.Value("int32"),
        "dataset": datasets.Value("string"),
        "split": datasets.Value("string"),
    }
    if "boxes" in optional:
        fields["boxes"] = _list(_list(datasets.Value("float32"), length=4))
    if "roi" in optional:
        fields["roi"] = datasets.Image()
    if "depth" in optional:
        fields["depth"] = datasets.Image()
    fields.update(extra or {})
    return datasets.Features(fields)


def dataset_kind(features: Any) -> str:
    """``"ranked"``, ``"labeled"`` or ``"unknown"`` from a dataset's features (or column names)."""
    names = set(features)
    if set(RANKED_FIELDS) <= names:
        return "ranked"
    if set(LABELED_FIELDS) <= names:
        return "labeled"
    return "unknown"


def encode_build_info(params: dict[str, Any]) -> str:
    """The JSON put in ``info.description``: how a dataset was built (k, s, r, size, seed, ...)."""
    return json.dumps(params, sort_keys=True)


def decode_build_info(description: str | None) -> dict[str, Any]:
    """Inverse of :func:`encode_build_info`; an empty or non-JSON description gives ``{}``."""
    if not description:
        return {}
    try:
        value = json.loads(description)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}

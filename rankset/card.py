"""Dataset cards (README.md with YAML front matter) that say how a dataset was built and whose pictures it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Licence ids the Hugging Face Hub knows, in the normal form harvest writes (lower case, dashes).
HUB_LICENSES = {
    "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-2.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
    "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cc-by-nd-4.0", "cc-by-nc-nd-4.0", "mit", "apache-2.0", "pddl", "odc-by", "odbl", "unknown", "other",
}  # fmt: skip


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def card_license(licenses: dict[str, int]) -> str:
    """One Hub licence id when every row shares it, else ``other`` (the body lists them all)."""
    names = {name for name, count in licenses.items() if count}
    if len(names) == 1:
        (name,) = names
        return name if name in HUB_LICENSES else "other"
    return "unknown" if not names else "other"


def front_matter(fields: dict[str, Any]) -> str:
    """A YAML block from scalars, lists and nested dicts (block style; scalars as JSON, which is valid YAML)."""
    lines = ["---"]
    for key, value in fields.items():
        lines.extend(_yaml(key, value, ""))
    lines.append("---")
    return "\n".join(lines) + "\n"


def _yaml(key: str, value: Any, pad: str) -> list[str]:
    if isinstance(value, dict):
        return [f"{pad}{key}:", *(line for k, v in value.items() for line in _yaml(k, v, pad + "  "))]
    if isinstance(value, list):
        if not value:
            return [f"{pad}{key}: []"]
        lines = [f"{pad}{key}:"]
        for item in value:
            if isinstance(item, dict):  # "- first: ..." then the other keys aligned under it
                inner = [line for k, v in item.items() for line in _yaml(k, v, pad + "  ")]
                lines.append(f"{pad}- {inner[0][len(pad) + 2 :]}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {json.dumps(item)}")
        return lines
    return [f"{pad}{key}: {json.dumps(value)}"]


def ranked_set_card(cfg: Any, summary: Any) -> str:
    """The card of a ranked-set dataset: parameters, counts, licences, how to load it."""
    total = sum(summary.sets.values())
    licenses = dict(summary.licenses)
    params = cfg.params()
    head = front_matter(
        {
            "license": card_license(licenses),
            "pretty_name": "crowdrank ranked sets",
            "size_categories": [size_category(total)],
            "task_categories": ["image-classification"],
            "tags": ["crowd-counting", "learning-to-rank", "self-supervised", "crowdrank"],
        }
    )
    split_rows = "\n".join(f"| {name} | {count} |" for name, count in summary.sets.items())
    license_rows = "\n".join(f"| {name} | {count} |" for name, count in sorted(licenses.items())) or "| - | 0 |"
    skipped = str(len(summary.skipped))
    by_reason = sorted(getattr(summary, "skipped_by_reason", {}).items())
    if by_reason:
        skipped += " (" + ", ".join(f"{reason}: {count}" for reason, count in by_reason) + ")"
    return f"""{head}
# Ranked patch sets

Nested square patches cut from {summary.used} pictures ({summary.input_kind} input) with Algorithm 1 of Liu, van de
Weijer & Bagdanov, *Leveraging Unlabeled Data for Crowd Counting by Learning to Rank* (CVPR 2018): every set holds
k patches around one anchor, largest first, so `count(images[i]) >= count(images[j])` for `i < j`.

| parameter | value |
|---|---|
| k (patches per set) | {params["k"]} |
| s (side ratio between consecutive patches) | {params["s"]} |
| r (anchor region is 1/r of the picture) | {params["r"]} |
| patch size | {params["size"]} x {params["size"]} px, JPEG quality {params["quality"]} |
| sets per picture | {params["sets_per_image"]} |
| seed | {params["seed"]} |
| validation fraction (by picture) | {params["val_fraction"]} |

| split | sets |
|---|---|
{split_rows}

Pictures skipped: {skipped}. `skipped.csv` beside this card lists each of them (`source`, `reason`, and a
`message` with the fix); it names local files, so `rankset push` does not upload it.

## Licences

Each row carries the `license`, `author` and `source_url` of the picture it was cut from.

| licence | sets |
|---|---|
{license_rows}

## Use

```python
from datasets import load_from_disk
sets = load_from_disk("PATH")["train"]
```

Build parameters as JSON: `{json.dumps(params, sort_keys=True)}`
"""


# -- the card `rankset push` uploads ---------------------------------------------------------------------------

PARAM_LABELS = {
    "k": "k (patches per set)",
    "s": "s (side ratio between consecutive patches)",
    "r": "r (anchor region is 1/r of the picture)",
    "size": "patch size (pixels)",
    "sets_per_image": "sets per picture",
    "seed": "seed",
    "val_fraction": "validation fraction (by picture)",
    "quality": "JPEG quality",
}
BUILD_INFO_KEY = "crowdrank_build_info"  # front-matter key holding info.description's JSON as YAML
KIND_TEXT = {
    "ranked": (
        "crowdrank ranked sets",
        ["image-classification"],
        ["crowd-counting", "learning-to-rank", "self-supervised", "crowdrank"],
        "Nested square patches cut with Algorithm 1 of Liu, van de Weijer & Bagdanov, *Leveraging Unlabeled Data "
        "for Crowd Counting by Learning to Rank* (CVPR 2018): each row is a set of k patches around one anchor, "
        "largest first, so `count(images[i]) >= count(images[j])` for `i < j`.",
    ),
    "labeled": (
        "crowdrank labeled crowd images",
        ["object-detection"],
        ["crowd-counting", "density-estimation", "crowdrank"],
        "Crowd pictures with head annotations: each row holds an `image`, its head `points` ([x, y] in pixels) "
        "and the annotated `count`.",
    ),
}


def card_build_info(readme: Path) -> dict[str, Any]:
    """The build info a pushed card carries under ``crowdrank_build_info``, so a snapshot keeps its provenance."""
    from huggingface_hub import DatasetCard

    try:
        value = DatasetCard(readme.read_text(encoding="utf-8")).data.to_dict().get(BUILD_INFO_KEY)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def license_fields(licenses: dict[str, int]) -> dict[str, Any]:
    """Front-matter licence fields: one Hub id, or ``other`` with the list of every licence published."""
    chosen = card_license(licenses)
    if chosen != "other":
        return {"license": chosen}
    names = sorted(name for name, count in licenses.items() if count)
    return {
        "license": "other",
        "license_name": names[0] if len(names) == 1 else "mixed",
        "license_link": "attribution.csv",
        "licenses": names,
    }


def pool_commands(path: str | Path) -> list[dict[str, Any]]:
    """The commands pool.json records for the pool at ``path`` (how its pictures were collected), leaving out runs
    that failed; [] otherwise."""
    from harvest.errors import PoolError
    from harvest.pool import Pool

    if not Pool.is_pool(path):
        return []
    try:
        return Pool(Path(path)).finished_commands()
    except PoolError:
        return []


def collection_section(commands: list[dict[str, Any]]) -> str:
    """A table of the harvest commands (search terms, sources, dedup / leakage / filter settings) behind a pool."""
    if not commands:
        return ""
    rows = []
    for number, entry in enumerate(commands, 1):
        name = entry.get("command") or entry.get("stage") or " ".join(entry.get("argv", [])[:2]) or "?"
        settings = dict(entry.get("config") or {})
        settings.update((k, v) for k, v in entry.items() if k not in {"argv", "version", "at", "command", "stage"})
        settings.pop("config", None)
        cells = "; ".join(f"{key} = {_short(value)}" for key, value in _flatten(settings) if key != "out")
        cells = cells.replace("|", "\\|")  # a pipe inside a cell would split the Markdown table
        rows.append(f"| {number} | {name} | {entry.get('at', '')} | {cells} |")
    return (
        "## How the pictures were collected\n\nThe pictures come from a crowdrank harvest pool; these commands were "
        "run on it, in order (`dedup`'s `exclude_like` names the evaluation sets whose near-copies were removed, "
        "so they do not leak into training):\n\n| # | command | at | settings |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\n"
    )


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.extend(_flatten(value, f"{prefix}{key}."))
        elif value not in (None, [], {}, ""):
            out.append((f"{prefix}{key}", value))
    return out


def _short(value: Any, limit: int = 100) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def hub_card(
    repo_id: str,
    kind: str,
    build_info: dict[str, Any],
    splits: dict[str, int],
    licenses: dict[str, int],
    left_out: dict[str, int],
    policy: str,
    dataset_license: str | None,
    pictures: int,
) -> str:
    """The README.md `rankset push` uploads: Hub front matter (licence, sizes, configs) and how the data was made."""
    pretty_name, tasks, tags, intro = KIND_TEXT[kind]
    total = sum(splits.values())
    head = front_matter(
        {
            **license_fields(licenses),
            "pretty_name": pretty_name,
            "size_categories": [size_category(total)],
            "task_categories": tasks,
            "tags": tags,
            "configs": [
                {
                    "config_name": "default",
                    "data_files": [{"split": split, "path": f"data/{split}-*"} for split in splits],
                }
            ],
            BUILD_INFO_KEY: build_info,
        }
    )
    params = {key: value for key, value in build_info.items() if key != "pool_commands"}
    param_rows = "\n".join(f"| {PARAM_LABELS.get(k, k)} | {_short(v)} |" for k, v in params.items()) or "| - | - |"
    split_rows = "\n".join(f"| {name} | {count} |" for name, count in splits.items())
    license_rows = "\n".join(f"| {name} | {count} |" for name, count in sorted(licenses.items()))
    left_rows = "\n".join(f"| {reason} | {count} |" for reason, count in sorted(left_out.items())) or "| (none) | 0 |"
    given = (
        f"\nThe rows carry no licence of their own; the publisher gave the whole dataset the licence "
        f"`{dataset_license}` (`--dataset-license`).\n"
        if dataset_license
        else ""
    )
    collected = collection_section(build_info.get("pool_commands") or [])
    return f"""{head}
# {pretty_name}

{intro}

| split | rows |
|---|---|
{split_rows}

## How it was built

| parameter | value |
|---|---|
{param_rows}

{collected}## Licences

Licence policy used to publish: {policy}.
{given}
| licence | rows |
|---|---|
{license_rows}

Rows left out by the policy:

| reason | rows |
|---|---|
{left_rows}

## Attribution

[`attribution.csv`](attribution.csv) lists each of the {pictures} pictures (per split): its `title`, `author`,
`license`, `license_url`, `source_url` (the picture) and `page_url` (where it was found), and how many rows were
cut from it. Reuse must credit the authors as their licences require.

## Use

```python
from datasets import load_dataset
ds = load_dataset("{repo_id}")
```

crowdrank accepts the id wherever it accepts a dataset folder (`rankset build`, manifests, `train eval`).

Build parameters as JSON: `{json.dumps(params, sort_keys=True)}`
"""

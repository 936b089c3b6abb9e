"""Dataset cards (README.md with YAML front matter) that say how a dataset was built and whose pictures it holds."""

from __future__ import annotations

import json
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
    """A YAML block from a small dict of strings and lists of strings (JSON strings are valid YAML scalars)."""
    lines = ["---"]
    for key, value in fields.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines.extend(f"- {json.dumps(v)}" for v in value)
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    lines.append("---")
    return "\n".join(lines) + "\n"


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
    skipped = len(summary.skipped)
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

Pictures skipped as unreadable: {skipped}.

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

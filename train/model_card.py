"""The model card (``README.md``) of a pushed density model: Hub metadata for machines, a page for people.

The YAML front matter carries ``tags``, ``license``, ``datasets`` (the manifest's labeled and ranked inputs that
are Hub ids) and, when the run folder's ``eval.json`` scores the pushed weights, ``metrics`` and a
``model-index`` with MAE, RMSE, NAE and GAME(0-3). The body says how the model was trained (paradigm, tasks and
weights), on what, how to use it from the Hub id, and the metrics table. Local paths are shown by folder name
only: they mean nothing to a reader and say where things lay on the trainer's disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rankset.io import looks_like_hub_id
from train.hub import CONFIG, METADATA

CARD_METRICS = ("mae", "rmse", "nae", "game0", "game1", "game2", "game3")
TAGS = ["crowd-counting", "crowdrank", "density-estimation"]


def run_evaluation(checkpoint: Path, step: int) -> dict[str, Any] | None:
    """The run folder's ``eval.json`` when it scores these weights (same step), else None.

    ``train fit`` evaluates ``best.pt`` on the test split once; pushing ``last.pt`` of a later step must not
    claim those numbers.
    """
    path = checkpoint.parent / "eval.json"
    if not path.is_file():
        return None
    try:
        evaluation = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(evaluation, dict) or evaluation.get("step") != step:
        return None
    return evaluation


def model_card(
    repo_id: str, run_config: Any, metadata: dict[str, Any], evaluation: dict[str, Any] | None, license: str
) -> str:
    """``README.md``: YAML front matter (tags, licence, datasets, model-index) and a body for people."""
    from huggingface_hub import EvalResult, ModelCardData

    data = run_config.data
    hub_datasets = [d for d in [*data.labeled, *data.ranked] if looks_like_hub_id(d)]
    eval_data = data.eval if looks_like_hub_id(data.eval) else Path(data.eval).name or "evaluation set"
    scores = {m: float(evaluation[m]) for m in CARD_METRICS if evaluation and evaluation.get(m) is not None}
    results = [
        EvalResult(
            task_type="crowd-counting",
            task_name="Crowd counting",
            dataset_type=eval_data,
            dataset_name=eval_data,
            dataset_split=str(evaluation.get("split", "test")) if evaluation else "test",
            metric_type=name,
            metric_name=name.upper(),
            metric_value=value,
        )
        for name, value in scores.items()
    ]
    card_data = ModelCardData(
        license=license,
        tags=TAGS,
        datasets=hub_datasets or None,
        metrics=list(scores) or None,
        model_name=repo_id if results else None,
        eval_results=results or None,
    )
    return f"---\n{card_data.to_yaml()}\n---\n\n{card_body(repo_id, run_config, metadata, scores, eval_data)}"


def card_body(repo_id: str, run_config: Any, metadata: dict[str, Any], scores: dict[str, float], eval_data: str) -> str:
    """The card's Markdown: method, training data, usage and the metrics table."""
    tasks, schedule, data = run_config.tasks, run_config.schedule, run_config.data
    active = [f"count (weight {tasks.count.weight:g})"]
    if schedule.paradigm != "count-only":
        active.append(f"rank (weight {tasks.rank.weight:g}, margin {tasks.rank.margin:g})")
    if tasks.count_class is not None:
        active.append(f"count_class (weight {tasks.count_class.weight:g}, {tasks.count_class.groups} groups)")
    active += [f"{name} (weight {task.weight:g}, dropped at inference)" for name, task in tasks.auxiliary.items()]
    masks = metadata["masksembles"]
    method = [
        ("architecture", f"`{metadata['arch']}` (output stride {metadata['output_stride']})"),
        ("paradigm", f"`{schedule.paradigm}`"),
        ("tasks", ", ".join(active)),
        ("Masksembles", "none" if masks is None else f"{masks['masks']} masks, scale {masks['scale']:g}"),
        ("checkpoint step", f"{metadata['step']} of {schedule.steps}"),
        ("optimizer", f"{run_config.optim.name}, lr {run_config.optim.lr:g}, batch {schedule.batch}"),
        ("crowdrank", metadata["crowdrank_version"]),
    ]
    lines = [
        f"# {repo_id}",
        "",
        "A crowd-counting density network trained with crowdrank, which follows Liu, van de Weijer & Bagdanov, "
        '"Leveraging Unlabeled Data for Crowd Counting by Learning to Rank" (CVPR 2018): nested crops of unlabeled '
        "photos give ranking labels that are trained together with counting. The sum of the predicted density "
        "map is the count.",
        "",
        "## Method",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in method),
        "",
        "## Training data",
        "",
        f"- labeled: {dataset_list(data.labeled)} (labeled fraction {data.labeled_fraction:g})",
        f"- ranked sets: {dataset_list(data.ranked)}",
        f"- evaluated on: {dataset_list([data.eval] if data.eval else [])}",
        f"- crops {data.crop[0]}-{data.crop[1]} px resized to {data.input_size} px, Gaussian sigma {data.sigma}",
        "",
        f"The resolved manifest is `{CONFIG}`; `{METADATA}` says how to rebuild the network.",
        "",
        "## How to use",
        "",
        "```bash",
        f"train predict {repo_id} photo.jpg --out counts/      # counts.csv + a density overlay per picture",
        f"train eval {repo_id} --data DATASET --split test     # MAE, RMSE, NAE, GAME into eval.json",
        "```",
        "",
        "```python",
        "from train.checkpoint import model_from_checkpoint",
        "",
        f'model, state, config = model_from_checkpoint("{repo_id}", "cpu")',
        "```",
        "",
        "## Evaluation",
        "",
    ]
    if scores:
        lines += [f"On `{eval_data}`, checkpoint step {metadata['step']}:", ""]
        lines += ["| " + " | ".join(n.upper() for n in scores) + " |", "|" + "---|" * len(scores)]
        lines += ["| " + " | ".join(f"{v:.3f}" for v in scores.values()) + " |", ""]
    else:
        lines += ["No evaluation results: the pushed checkpoint has no `eval.json` of the same step beside it.", ""]
    return "\n".join(lines)


def dataset_list(names: list[str]) -> str:
    """Hub ids as links, local folders by their name only (a local path says nothing to a reader, and leaks)."""
    shown = [
        f"[{n}](https://huggingface.co/datasets/{n})" if looks_like_hub_id(n) else f"`{Path(n).name}`" for n in names
    ]
    return ", ".join(shown) or "none"

"""The two UCF benchmarks, both MATLAB ``annPoints`` (N, 2) x, y files beside the pictures.

UCF_CC_50 (Idrees et al., CVPR 2013): ``ROOT/N.jpg`` + ``ROOT/N_ann.mat`` for N = 1..50, grayscale. It has no
official split; the standard protocol is 5-fold cross-validation over images 1-10, 11-20, ..., 41-50, recorded
in an int32 ``fold`` column. Everything is split ``train`` unless ``--fold F`` makes fold F the ``test`` split.

UCF-QNRF (Idrees et al., ECCV 2018): ``ROOT/Train/img_0001.jpg`` + ``img_0001_ann.mat`` and ``ROOT/Test/...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rankset.errors import InputError
from rankset.importers.base import (
    Annotation,
    Importer,
    Pair,
    Plan,
    Skipped,
    first_existing,
    image_files,
    pair_by_id,
    register_importer,
)
from rankset.importers.matfile import load_mat, mat_points, mat_variable

if TYPE_CHECKING:
    from rankset.importers.writer import ImportConfig

UCF_CC_50_IMAGES = 50
UCF_CC_50_FOLD_SIZE = 10
ANNOTATION_SUFFIX = "_ann"


def ucf_cc_50_fold(number: int) -> int:
    """The standard cross-validation fold (1..5) of UCF_CC_50 image ``number`` (1..50): 1-10 -> 1, 11-20 -> 2."""
    if not 1 <= number <= UCF_CC_50_IMAGES:
        raise ValueError(f"UCF_CC_50 images are numbered 1..{UCF_CC_50_IMAGES}, got {number}")
    return (number - 1) // UCF_CC_50_FOLD_SIZE + 1


def annotation_files(folder: Path) -> dict[str, Path]:
    """``X_ann.mat`` files in ``folder`` by image id ``X``."""
    return {
        p.stem[: -len(ANNOTATION_SUFFIX)]: p
        for p in sorted(folder.glob("*.mat"))
        if p.stem.endswith(ANNOTATION_SUFFIX) and not p.name.startswith(".")
    }


def read_ann_points(pair: Pair) -> Annotation:
    """The ``annPoints`` of a UCF-style annotation file."""
    assert pair.annotation is not None, "UCF pairs always carry an annotation"
    points = mat_variable(load_mat(pair.annotation), "annPoints", pair.annotation)
    return Annotation(points=mat_points(points, pair.annotation, "annPoints"))


@register_importer("ucf-cc-50")
class UcfCc50Importer(Importer):
    layout = "ROOT/N.jpg with ROOT/N_ann.mat (variable annPoints) for N = 1..50"

    def plan(self, config: ImportConfig) -> Plan:
        root = config.root
        duplicates: list[Skipped] = []
        images = {k: v for k, v in image_files(root, skipped=duplicates).items() if k.isdigit()}
        annotations = {k: v for k, v in annotation_files(root).items() if k.isdigit()}
        if not images and not annotations:
            raise self.no_layout(root)
        plan = Plan(
            dataset="ucf-cc-50", splits={"train": [], "test": []}, extra_columns={"fold": "int32"}, skipped=duplicates
        )
        outside = sorted(k for k in set(images) | set(annotations) if not 1 <= int(k) <= UCF_CC_50_IMAGES)
        for image_id in outside:
            path = images.get(image_id) or annotations[image_id]
            plan.skipped.append(Skipped(str(path), f"not one of UCF_CC_50's images 1..{UCF_CC_50_IMAGES}"))
            images.pop(image_id, None)
            annotations.pop(image_id, None)
        pairs, skipped = pair_by_id("train", images, annotations, lambda i: {"fold": ucf_cc_50_fold(int(i))})
        plan.skipped.extend(skipped)
        for pair in pairs:
            split = "test" if config.fold is not None and pair.extra["fold"] == config.fold else "train"
            plan.splits[split].append(Pair(pair.image_id, split, pair.image, pair.annotation, pair.extra))
        if config.fold is not None and not plan.splits["test"]:
            raise InputError(
                f"--fold {config.fold}: {root} holds no image of fold {config.fold} (images "
                f"{_fold_range(config.fold)}) with its annotation, so the dataset would have no test split; check that "
                f"ROOT is the whole UCF_CC_50 folder, or pick a fold it holds"
            )
        if config.fold is None:
            plan.notes.append("all images in split train; the int32 column `fold` holds the standard 5-fold split")
        else:
            plan.notes.append(f"fold {config.fold} (images {_fold_range(config.fold)}) is split test, the rest train")
        return plan

    def read(self, pair: Pair) -> Annotation:
        return read_ann_points(pair)


def _fold_range(fold: int) -> str:
    return f"{(fold - 1) * UCF_CC_50_FOLD_SIZE + 1}-{fold * UCF_CC_50_FOLD_SIZE}"


@register_importer("ucf-qnrf")
class UcfQnrfImporter(Importer):
    layout = "ROOT/Train/img_XXXX.jpg with ROOT/Train/img_XXXX_ann.mat (variable annPoints), and ROOT/Test/ alike"

    def plan(self, config: ImportConfig) -> Plan:
        root = config.root
        folders = {split: first_existing(root, [split]) for split in ("train", "test")}
        if not any(folders.values()):
            raise self.no_layout(root)
        plan = Plan(dataset="ucf-qnrf", splits={})
        for split, folder in folders.items():
            if folder is None or not folder.is_dir():
                continue
            pairs, skipped = pair_by_id(split, image_files(folder, skipped=plan.skipped), annotation_files(folder))
            plan.splits[split] = pairs
            plan.skipped.extend(skipped)
        return plan

    def read(self, pair: Pair) -> Annotation:
        return read_ann_points(pair)

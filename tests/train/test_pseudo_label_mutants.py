"""Pseudo-labels, pinned where a hand-made mutant survived: each picture draws its heads from its own seeded stream,
so two copies of one picture in a run get the same count but not the same head positions."""

from __future__ import annotations

from pathlib import Path

from tests.train.test_pseudo_label import busy_checkpoint, write_blobs
from train.pseudo_label import PseudoLabelConfig, pseudo_label


def test_each_picture_draws_its_heads_from_its_own_stream(tmp_path: Path) -> None:
    from rankset.io import load_dataset_dict

    pictures = write_blobs(tmp_path / "real", 1)
    (pictures / "p9.jpg").write_bytes((pictures / "p0.jpg").read_bytes())  # the same bytes under a second name
    checkpoint = busy_checkpoint(tmp_path / "ckpt.pt")
    config = PseudoLabelConfig(checkpoint, (str(pictures),), tmp_path / "pseudo", 1.0, "cpu", seed=3)
    pseudo_label(config, show_progress=False)
    rows = {row["image_id"]: row for row in load_dataset_dict(tmp_path / "pseudo")["train"]}
    first, copy = rows["p0"], rows["p9"]
    assert first["count"] == copy["count"] > 0  # same picture, same members, same count
    assert first["points"] != copy["points"]  # but a draw of its own: a shared stream would repeat every head

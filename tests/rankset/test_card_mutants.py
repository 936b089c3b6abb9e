"""The dataset card ``rankset build`` writes, pinned where a hand-made mutant survived: it states how many pictures
were skipped (and why) and how many sets each split holds, as the run counted them."""

from __future__ import annotations

from pathlib import Path

from rankset.build import SKIP_UNREADABLE, BuildConfig, build_ranked_sets
from tests.rankset.test_build import gradient, save


def test_the_card_states_the_skipped_pictures_and_the_sets_of_each_split(tmp_path: Path) -> None:
    pics = tmp_path / "pics"
    for i in range(2):
        save(gradient(160, 120), pics / f"img{i}.jpg", quality=95)
    (pics / "empty.jpg").write_bytes(b"")
    (pics / "words.jpg").write_bytes(b"this is not a picture")
    cfg = BuildConfig(str(pics), str(tmp_path / "ds"), k=3, size=16, sets_per_image=2, val_fraction=0.5)
    summary = build_ranked_sets(cfg, progress=False)
    assert summary.sets == {"train": 2, "validation": 2}
    card = (tmp_path / "ds" / "README.md").read_text()
    assert f"Pictures skipped: 2 ({SKIP_UNREADABLE}: 2)." in card
    assert "| train | 2 |" in card and "| validation | 2 |" in card and "| sets per picture | 2 |" in card

"""harvest qbe --sources local, pinned where a hand-made mutant survived: a picture an earlier run already copied
into the pool, found again by another example, gains that example in ``found_by`` (no second row, no refetch)."""

from __future__ import annotations

from pathlib import Path

from harvest.pool import Pool
from tests.harvest.imagegen import add_pictures, encode, scene, write_folder
from tests.harvest.test_qbe import LookupEmbedder, qbe_config


def test_a_known_picture_found_by_a_new_example_gains_its_tag_in_found_by(tmp_path: Path) -> None:
    from harvest.qbe import harvest_qbe

    candidates = Pool.create(tmp_path / "keyword-pool")
    pictures = {"c0": scene(0, 48, 40), "c1": scene(1, 48, 40)}
    add_pictures(candidates, pictures, source="wikimedia")
    first = write_folder(tmp_path / "ex1", {"A": scene(10, 48, 40)})
    second = write_folder(tmp_path / "ex2", {"B": scene(11, 48, 40)})
    embedder = LookupEmbedder({
        (first / "A.jpg").read_bytes(): [1, 0, 0], (second / "B.jpg").read_bytes(): [0.9, 0.2, 0],
        encode(pictures["c0"]): [1, 0.1, 0], encode(pictures["c1"]): [0, 0, 1],
    })  # fmt: skip
    harvest_qbe(qbe_config(tmp_path / "pool", first, sources=("local",), from_pool=candidates.root, per_query=1),
                embedder=embedder)  # fmt: skip
    again = harvest_qbe(
        qbe_config(tmp_path / "pool", second, sources=("local",), from_pool=candidates.root, per_query=1),
        embedder=embedder,
    )
    df = Pool.open(tmp_path / "pool").read_index()
    assert list(df["title"]) == ["c0"] and (again.fetch.rows, again.fetch.known) == (0, 1)
    assert (again.searches, again.matches) == (1, 1)  # the summary's "matches returned" counts local matches too
    assert list(df.loc[0, "found_by"]) == ["local:A", "local:B"] and df.loc[0, "query"] == "A"  # first finder stays

"""rankset push's attribution.csv for a ranked set built from a harvest pool, pinned where hand-made mutants
survived: a pool row's ``file://`` URL (a picture ingested by ``harvest local``) is never published, and a picture
whose bytes also sit in a later failed row is attributed from its ``ok`` row."""

from __future__ import annotations

from pathlib import Path

from rankset.build import BuildConfig, build_ranked_sets
from tests.rankset.test_publish import jpeg, push, read_attribution


def test_attribution_takes_the_ok_row_of_a_picture_and_never_a_local_file_url(tmp_path: Path) -> None:
    from harvest.pool import Pool

    pool = Pool.create(tmp_path / "pool")
    local_id, local_path = pool.store_image(jpeg(30), "jpg")
    web_id, web_path = pool.store_image(jpeg(31), "jpg")
    common = {"license": "cc-by-4.0", "author": "A", "kept": True, "status": "ok"}
    pool.append_rows(
        [
            {**common, "id": local_id, "path": local_path, "url": "file:///home/me/private/crowd.jpg", "title": "L"},
            {**common, "id": web_id, "path": web_path, "url": "https://img.example.org/w.jpg", "title": "Web",
             "page_url": "https://example.org/w", "license_url": "https://creativecommons.org/licenses/by/4.0/"},
            {**common, "id": web_id, "path": web_path, "url": "https://mirror.example.net/w.jpg", "title": "Mirror",
             "page_url": "https://mirror.example.net/p", "status": "decode_error", "kept": False},
        ]
    )  # fmt: skip
    build_ranked_sets(BuildConfig(str(tmp_path / "pool"), str(tmp_path / "ds"), k=3, size=16), progress=False)
    push(tmp_path / "ds", dry_run=tmp_path / "out")

    attribution = {r["source_id"]: r for r in read_attribution(tmp_path / "out")}
    assert set(attribution) == {local_id, web_id}
    assert attribution[local_id]["source_url"] == "" and attribution[local_id]["title"] == "L"
    assert "file://" not in (tmp_path / "out" / "attribution.csv").read_text()
    web = attribution[web_id]
    assert (web["source_url"], web["page_url"], web["title"]) == (
        "https://img.example.org/w.jpg",
        "https://example.org/w",
        "Web",
    )


def test_the_push_summary_counts_pictures_not_the_sets_cut_from_them(tmp_path: Path) -> None:
    import json

    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(3):
        (pics / f"p{i}.jpg").write_bytes(jpeg(i))
        (pics / f"p{i}.jpg.json").write_text(json.dumps({"author": f"A{i}", "license": "cc0-1.0"}))
    cfg = BuildConfig(str(pics), str(tmp_path / "ranked"), k=3, size=16, sets_per_image=2)
    build_ranked_sets(cfg, progress=False)
    summary = push(tmp_path / "ranked", dry_run=tmp_path / "out")
    attribution = read_attribution(tmp_path / "out")
    assert [r["rows"] for r in attribution] == ["2", "2", "2"]  # two sets per picture
    assert summary.pictures == 3  # "pictures in attribution.csv": its rows, not the 6 sets

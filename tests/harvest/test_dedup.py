"""Dedup: the multi-index search equals brute force, and the pool stage marks copies, leaks and failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from harvest import hash_index
from harvest.dedup import (
    Components,
    cosine_blocks,
    cosine_pairs,
    cross_matches,
    group_labels,
    near_duplicate_groups,
    near_duplicate_pairs,
    representatives,
    unique_hash_pairs,
)
from harvest.dedup_pool import DedupConfig, dedup_pool
from harvest.embed import EmbeddingCache
from harvest.errors import ConfigError
from harvest.hash_bands import (
    BandPlan,
    band_bounds,
    band_radii,
    flip_masks_by_top_bit,
    hamming,
    masks_within,
    plan_bands,
)
from harvest.pool import Pool
from tests.harvest.imagegen import add_pictures, edited_copies, encode, scene, write_folder


def random_hashes_with_copies(rng: np.random.Generator, n: int, copies: int, max_flips: int) -> np.ndarray:
    """``n`` uniform 64-bit hashes; the last ``copies`` repeat the first ones with 0, 1, .., ``max_flips`` flips."""
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n, dtype=np.uint64)
    for k in range(copies):
        flips = rng.choice(64, size=k % (max_flips + 1), replace=False)
        mask = np.uint64(sum(1 << int(b) for b in flips))
        hashes[n - copies + k] = hashes[k] ^ mask
    return hashes


def brute_force_pairs(phash: np.ndarray, dhash: np.ndarray, tp: int, td: int) -> set[tuple[int, int]]:
    close = (hamming(phash[:, None], phash[None]) <= tp) & (hamming(dhash[:, None], dhash[None]) <= td)
    i, j = np.nonzero(np.triu(close, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def found_pairs(phash: np.ndarray, dhash: np.ndarray, tp: int, td: int, workers: int = 1) -> set[tuple[int, int]]:
    i, j = near_duplicate_pairs(phash, dhash, tp, td, workers=workers)
    assert np.all(i < j), "pairs come out as i < j"
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == len(i), "each pair is reported once"
    return set(zip(i.tolist(), j.tolist(), strict=True))


def fixed_plan(bands: int, widest_first: bool):
    """A ``plan_bands`` stand-in that always cuts ``bands`` bands (to test every split the planner may pick)."""

    def plan(threshold: int, n_probe: int, n_indexed: int, self_join: bool) -> BandPlan:
        bounds = sorted(band_bounds(bands), key=lambda band: -band[1] if widest_first else band[1])
        return BandPlan(tuple(bounds), tuple(band_radii(threshold, bands)), 0.0)

    return plan


def test_bands_cover_all_64_bits_without_overlap() -> None:
    bounds = band_bounds(11)
    assert sum(width for _, width in bounds) == 64
    assert [shift for shift, _ in bounds] == list(np.cumsum([0] + [w for _, w in bounds[:-1]]))
    assert max(w for _, w in bounds) - min(w for _, w in bounds) <= 1


def test_radii_for_ten_bits_in_three_bands_are_three_three_two() -> None:
    assert band_radii(10, 3) == [3, 3, 2]
    assert band_radii(8, 3) == [2, 2, 2]
    assert band_radii(1, 3) == [0, 0, -1]  # a 1-bit difference leaves one of the first two bands equal
    assert band_radii(0, 3) == [0, -1, -1]


@settings(max_examples=300, deadline=None)
@given(
    threshold=st.integers(0, 32),
    bands=st.integers(1, 16),
    flips=st.lists(st.integers(0, 63), max_size=32, unique=True),
    seed=st.integers(0, 2**32 - 1),
    widest_first=st.booleans(),
)
def test_any_pair_within_the_threshold_has_a_band_within_its_radius(threshold, bands, flips, seed, widest_first):
    """The pigeonhole rule: with t = q*m + a, some band is within its radius whatever the bits flipped and order."""
    flips = flips[:threshold]
    a = int(np.random.default_rng(seed).integers(0, 2**63)) * 2
    b = a ^ sum(1 << bit for bit in flips)
    radii = band_radii(threshold, bands)
    bounds = sorted(band_bounds(bands), key=lambda band: -band[1] if widest_first else band[1])
    distances = [bin(((a ^ b) >> shift) & ((1 << width) - 1)).count("1") for shift, width in bounds]
    assert any(d <= r for d, r in zip(distances, radii, strict=True)), (distances, radii)
    # tight: bands differing by radius + 1 each add up to t + 1, one bit past the threshold
    assert sum(r + 1 for r in radii) == threshold + 1


def test_flip_masks_are_distinct_within_radius_and_grouped_by_top_bit() -> None:
    groups = flip_masks_by_top_bit(21, 3)
    assert len(groups) == 21
    for top, masks in enumerate(groups):
        assert all(int(m).bit_length() - 1 == top and bin(int(m)).count("1") <= 3 for m in masks)
    every = np.concatenate(groups)
    assert len(np.unique(every)) == len(every) == masks_within(21, 3) - 1 == 1561
    assert flip_masks_by_top_bit(16, 0) == []


def test_planner_uses_three_bands_at_a_million_and_more_bands_for_tiny_sets() -> None:
    million = plan_bands(10, 1_000_000, 1_000_000, self_join=True)
    assert len(million.bands) == 3 and sorted(million.radii) == [2, 3, 3]
    tiny = plan_bands(10, 100, 100, self_join=True)
    assert len(tiny.bands) > 3 and max(width for _, width in tiny.bands) <= 16  # no 4M-slot table for 100 items
    for threshold in (0, 1, 5, 10, 17, 32):
        for n in (10, 10_000, 10_000_000):
            plan = plan_bands(threshold, n, n, self_join=True)
            assert sum(width for _, width in plan.bands) == 64
            assert sum(r + 1 for r in plan.radii) == threshold + 1, (threshold, n, plan)


@pytest.mark.parametrize(
    ("tp", "td"), [(0, 0), (1, 1), (3, 5), (7, 7), (8, 8), (10, 10), (11, 11), (12, 6), (4, 13), (32, 32)]
)
def test_banded_search_finds_exactly_the_brute_force_pairs(tp: int, td: int) -> None:
    rng = np.random.default_rng(tp * 100 + td)
    phash = random_hashes_with_copies(rng, 600, 200, max_flips=14)
    dhash = random_hashes_with_copies(rng, 600, 200, max_flips=14)
    expected = brute_force_pairs(phash, dhash, tp, td)
    assert found_pairs(phash, dhash, tp, td) == expected
    assert len(expected) > (10 if min(tp, td) <= 1 else 40)  # the test data really holds near pairs


@pytest.mark.parametrize("bands", [3, 4, 5, 7, 11])
@pytest.mark.parametrize("widest_first", [False, True])
def test_every_band_split_is_exact_not_only_the_planned_one(monkeypatch, bands: int, widest_first: bool) -> None:
    monkeypatch.setattr(hash_index, "plan_bands", fixed_plan(bands, widest_first))
    rng = np.random.default_rng(bands)
    phash = random_hashes_with_copies(rng, 500, 250, max_flips=13)
    dhash = random_hashes_with_copies(rng, 500, 250, max_flips=13)
    for tp, td in [(10, 10), (9, 12), (2, 2)]:
        expected = brute_force_pairs(phash, dhash, tp, td)
        assert found_pairs(phash, dhash, tp, td) == expected, (tp, td)
        assert len(expected) > 20


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 80),
    tp=st.integers(0, 16),
    td=st.integers(0, 16),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_sets_at_any_thresholds_match_brute_force(n: int, tp: int, td: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    copies = n // 2
    phash = random_hashes_with_copies(rng, n, copies, max_flips=tp + 2)
    dhash = random_hashes_with_copies(rng, n, copies, max_flips=td + 2)
    assert found_pairs(phash, dhash, tp, td) == brute_force_pairs(phash, dhash, tp, td)


def test_a_huge_bucket_of_equal_band_values_is_searched_exactly_in_pieces(monkeypatch) -> None:
    """Blank pictures share a pHash: their bucket is expanded in pieces smaller than itself, still exactly."""
    monkeypatch.setattr(hash_index, "PROBE_BLOCK", 256)
    rng = np.random.default_rng(5)
    phash = np.zeros(1500, dtype=np.uint64)
    phash[1000:] = random_hashes_with_copies(rng, 500, 0, 0) & np.uint64(0xF0F0)  # near zero in a few bits
    dhash = random_hashes_with_copies(rng, 1500, 700, max_flips=12)
    expected = brute_force_pairs(phash, dhash, 10, 10)
    assert found_pairs(phash, dhash, 10, 10) == expected
    assert len(expected) > 300


def test_two_threads_find_the_same_pairs_as_one() -> None:
    rng = np.random.default_rng(11)
    phash = random_hashes_with_copies(rng, 800, 300, max_flips=12)
    dhash = random_hashes_with_copies(rng, 800, 300, max_flips=12)
    one = found_pairs(phash, dhash, 10, 10, workers=1)
    assert one == found_pairs(phash, dhash, 10, 10, workers=2)
    assert len(one) > 100


def test_pairs_one_bit_past_either_threshold_never_merge() -> None:
    rng = np.random.default_rng(2)
    base_p = random_hashes_with_copies(rng, 200, 0, 0)
    base_d = random_hashes_with_copies(rng, 200, 0, 0)
    assert not brute_force_pairs(base_p, base_d, 10, 10)  # random hashes are far apart
    flip = np.uint64(0b111_1111_1111)  # 11 bits
    within = np.uint64(0b11_1111_1111)  # 10 bits
    phash = np.concatenate([base_p, base_p[:50] ^ flip, base_p[50:100] ^ within, base_p[100:150] ^ within])
    dhash = np.concatenate([base_d, base_d[:50], base_d[50:100] ^ flip, base_d[100:150] ^ within])
    labels = near_duplicate_groups(phash, dhash, 10, 10)
    assert len(np.unique(labels[:100])) == 100  # distinct pictures stay apart
    assert np.all(labels[200:300] != labels[:100])  # 11 bits off in pHash or in dHash: not a copy
    assert np.array_equal(labels[300:350], labels[100:150])  # 10 bits off in both: a copy


@pytest.mark.parametrize(("nq", "nr", "tp", "td"), [(150, 100, 6, 6), (100, 400, 10, 10), (300, 30, 3, 9)])
def test_cross_matches_equal_brute_force_between_two_sets(nq: int, nr: int, tp: int, td: int) -> None:
    rng = np.random.default_rng(nq + nr)
    phash = random_hashes_with_copies(rng, nq + nr, nr // 2, max_flips=12)
    dhash = random_hashes_with_copies(rng, nq + nr, nr // 2, max_flips=12)
    qp, qd, rp, rd = phash[:nq], dhash[:nq], phash[nq:], dhash[nq:]
    qi, ri = cross_matches(qp, qd, rp, rd, tp, td)
    close = (hamming(qp[:, None], rp[None]) <= tp) & (hamming(qd[:, None], rd[None]) <= td)
    expected = set(zip(*[a.tolist() for a in np.nonzero(close)], strict=True))
    assert set(zip(qi.tolist(), ri.tolist(), strict=True)) == expected
    assert len(qi) == len(expected) > 5


@pytest.mark.parametrize(("nq", "nr"), [(300, 80), (80, 300)])
def test_closest_cross_matches_keep_the_nearest_reference_of_each_query(nq: int, nr: int) -> None:
    """Both sides of the swap; frames of one scene make every query near many references (ties included)."""
    rng = np.random.default_rng(nq)
    phash = random_hashes_with_copies(rng, nq + nr, nr // 2, max_flips=12)
    dhash = random_hashes_with_copies(rng, nq + nr, nr // 2, max_flips=12)
    dense = dense_clusters(rng, rng.integers(0, 2**63, 1, dtype=np.uint64), 40, flips=2)
    qp, qd = np.r_[phash[:nq], dense[:20]], np.r_[dhash[:nq], dense[:20]]
    rp, rd = np.r_[phash[nq:], dense[20:]], np.r_[dhash[nq:], dense[20:]]
    qi, ri = cross_matches(qp, qd, rp, rd, 10, 10, closest=True)
    close = (hamming(qp[:, None], rp[None]) <= 10) & (hamming(qd[:, None], rd[None]) <= 10)
    distance = np.where(close, hamming(qp[:, None], rp[None]), 99)
    expected_q = np.flatnonzero(close.any(axis=1))
    assert np.array_equal(qi, expected_q) and len(qi) > 20
    assert np.array_equal(ri, distance[expected_q].argmin(axis=1))  # argmin: the first of equal distances


def test_cross_matches_with_an_empty_side_find_nothing() -> None:
    hashes = np.arange(5, dtype=np.uint64)
    empty = np.empty(0, dtype=np.uint64)
    for args in ((hashes, hashes, empty, empty), (empty, empty, hashes, hashes)):
        qi, ri = cross_matches(*args, 10, 10)
        assert len(qi) == len(ri) == 0


def test_unique_hash_pairs_equal_numpy_unique_rows() -> None:
    rng = np.random.default_rng(4)
    phash = rng.integers(0, 4, 300).astype(np.uint64) << np.uint64(62)
    dhash = rng.integers(0, 3, 300).astype(np.uint64)
    unique_p, unique_d, inverse = unique_hash_pairs(phash, dhash)
    rows, expected_inverse = np.unique(np.stack([phash, dhash], axis=1), axis=0, return_inverse=True)
    assert np.array_equal(unique_p, rows[:, 0]) and np.array_equal(unique_d, rows[:, 1])
    assert np.array_equal(inverse, expected_inverse.ravel()) and len(unique_p) == 12


def test_groups_equal_the_components_of_the_brute_force_pairs() -> None:
    rng = np.random.default_rng(9)
    phash = random_hashes_with_copies(rng, 400, 200, max_flips=12)
    dhash = random_hashes_with_copies(rng, 400, 200, max_flips=12)
    phash[390:], dhash[390:] = phash[0], dhash[0]  # exact copies collapse before the search
    labels = near_duplicate_groups(phash, dhash, 8, 8)
    pairs = np.array(sorted(brute_force_pairs(phash, dhash, 8, 8)))
    expected = group_labels(400, pairs[:, 0], pairs[:, 1])
    same = labels[:, None] == labels[None]
    assert np.array_equal(same, expected[:, None] == expected[None])
    assert len(np.unique(labels)) < 300


def test_groups_are_transitive_through_a_chain() -> None:
    a = np.uint64(0)
    b = np.uint64(0b111)  # 3 bits from a
    c = np.uint64(0b111111)  # 3 bits from b, 6 from a
    far = np.uint64(0xFFFF_FFFF_0000_0000)
    phash = np.array([a, b, c, far], dtype=np.uint64)
    labels = near_duplicate_groups(phash, phash.copy(), 4, 4)
    assert labels[0] == labels[1] == labels[2]
    assert labels[3] != labels[0]


def test_group_labels_and_representatives_pick_the_highest_priority_member() -> None:
    labels = group_labels(5, np.array([0, 3]), np.array([2, 4]))
    assert labels[0] == labels[2] and labels[3] == labels[4] and len(set(labels.tolist())) == 3
    reps = representatives(labels, np.array([1.0, 9.0, 5.0, 2.0, 2.0]))
    assert reps.tolist() == [2, 1, 2, 3, 3]  # ties go to the first item


def test_cosine_pairs_equal_brute_force_across_blocks() -> None:
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(90, 16)).astype(np.float32)
    emb[60:] = emb[:30] + 0.05 * rng.normal(size=(30, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    i, j = cosine_pairs(emb, 0.94, block=32)
    sims = emb @ emb.T
    expected = set(zip(*[a.tolist() for a in np.nonzero(np.triu(sims >= 0.94, 1))], strict=True))
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == expected
    assert len(expected) >= 30
    blocks = list(cosine_blocks(emb, 0.94, max_block_bytes=4 * 90 * 7))  # 7 rows of similarities at a time
    assert len(blocks) == 13
    assert {(a, b) for i, j in blocks for a, b in zip(i.tolist(), j.tolist(), strict=True)} == expected


# -- the pool stage ---------------------------------------------------------------------------------------------


@pytest.fixture
def pool_with_copies(tmp_path: Path) -> tuple[Pool, dict[str, str]]:
    """Six distinct scenes plus four edited copies of scene 0, one byte-identical re-find, one 404 and one bad file."""
    pool = Pool.create(tmp_path / "pool")
    pictures = {f"scene{seed}": scene(seed) for seed in range(6)}
    pictures.update({f"scene0-{edit}": copy for edit, copy in edited_copies(scene(0)).items()})
    ids = add_pictures(pool, pictures)
    image_id, path = pool.store_image(encode(scene(5)), "jpg")
    broken_id, broken_path = pool.store_image(b"\xff\xd8\xff\xe0 this is not really a jpeg", "jpg")
    pool.append_rows(
        [
            {"id": image_id, "url": "http://b/again.jpg", "status": "ok", "path": path, "width": 192, "height": 144},
            {"id": None, "url": "http://b/missing.jpg", "status": "http_404", "error": "404 Not Found"},
            {"id": broken_id, "url": "http://b/broken.jpg", "status": "ok", "path": broken_path},
        ]
    )
    ids["broken"] = broken_id
    return pool, ids


def by_url(pool: Pool) -> pd.DataFrame:
    return pool.read_index().set_index("url")


def test_edited_copies_join_the_largest_picture_and_distinct_scenes_stay_apart(pool_with_copies) -> None:
    pool, ids = pool_with_copies
    summary = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    df = by_url(pool)
    copies = [f"file:///scene0-{edit}.jpg" for edit in ("resized", "recompressed", "cropped", "brightened")]
    group = df.loc[["file:///scene0.jpg", *copies]]
    area_bytes = list(zip(group["width"] * group["height"], group["bytes"], strict=True))
    largest = group.index[area_bytes.index(max(area_bytes))]
    assert group.loc[largest, "kept"] and pd.isna(group.loc[largest, "dup_of"])
    for url in group.index.drop(largest):
        assert group.loc[url, "dup_of"] == group.loc[largest, "id"], url
        assert not group.loc[url, "kept"]
    for seed in range(1, 6):
        row = df.loc[f"file:///scene{seed}.jpg"]
        assert row["kept"] and pd.isna(row["dup_of"]), seed
    assert summary.near_duplicate_groups == 1 and summary.near_duplicate_images == 4
    assert summary.unique_images == 10


def test_byte_identical_refind_points_at_its_own_id_and_only_the_first_row_stays(pool_with_copies) -> None:
    pool, _ = pool_with_copies
    summary = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    df = by_url(pool)
    first, again = df.loc["file:///scene5.jpg"], df.loc["http://b/again.jpg"]
    assert first["kept"] and not again["kept"]
    assert again["dup_of"] == again["id"] == first["id"]
    assert summary.exact_duplicate_rows == 1


def test_undecodable_file_becomes_a_failed_row_and_failed_fetches_are_left_alone(pool_with_copies) -> None:
    pool, ids = pool_with_copies
    summary = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    df = by_url(pool)
    broken = df.loc["http://b/broken.jpg"]
    assert broken["status"] == "decode_error" and broken["error"] and not broken["kept"]
    assert summary.decode_failures == 1 and ids["broken"] in summary.failures
    missing = df.loc["http://b/missing.jpg"]
    assert missing["status"] == "http_404" and not missing["kept"] and pd.isna(missing["phash"])


def test_rerun_is_idempotent_and_reuses_stored_hashes(pool_with_copies) -> None:
    pool, _ = pool_with_copies
    dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    columns = ["id", "status", "phash", "dhash", "dup_of", "leak_of", "kept"]
    before = by_url(pool)[columns].sort_index()
    again = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    after = by_url(pool)[columns].sort_index()
    pd.testing.assert_frame_equal(before, after)
    assert again.hashed == 0 and again.hashes_reused == 10


def test_a_stricter_threshold_regroups_from_stored_hashes_without_decoding(pool_with_copies, monkeypatch) -> None:
    pool, _ = pool_with_copies
    dedup_pool(DedupConfig(pool.root, progress=False, workers=1))

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded although its hashes are stored")

    monkeypatch.setattr(Image, "open", no_decoding)
    strict = dedup_pool(DedupConfig(pool.root, threshold=1, progress=False, workers=1))
    assert strict.hashed == 0
    assert 0 < strict.near_duplicate_images < 4  # resized stays (<= 1 bit apart is not guaranteed for all edits)


def test_exclude_like_folder_marks_the_copy_of_an_evaluation_image_as_a_leak(pool_with_copies, tmp_path) -> None:
    pool, ids = pool_with_copies
    evaluation = write_folder(tmp_path / "eval", {"IMG_7": scene(3).resize((150, 112)), "IMG_8": scene(40)})
    summary = dedup_pool(DedupConfig(pool.root, exclude_like=(str(evaluation),), progress=False, workers=1))
    df = by_url(pool)
    leaked = df.loc["file:///scene3.jpg"]
    assert leaked["leak_of"] == "eval/IMG_7" and not leaked["kept"]
    assert df["leak_of"].notna().sum() == 1
    assert summary.leaked_images == 1 and summary.exclusion_images == 2


def test_leak_of_names_the_evaluation_set_so_parts_with_the_same_image_names_stay_apart(
    pool_with_copies, tmp_path
) -> None:
    """ShanghaiTech A and B both number their images IMG_1...: a bare IMG_7 would not say which set was copied."""
    pool, _ = pool_with_copies
    part_a = write_folder(tmp_path / "part_A" / "test_data" / "images", {"IMG_7": scene(3).resize((150, 112))})
    part_b = write_folder(tmp_path / "part_B", {"IMG_7": scene(4).resize((150, 112)), "IMG_8": scene(40)})
    summary = dedup_pool(
        DedupConfig(pool.root, exclude_like=(str(tmp_path / "part_A"), str(part_b)), progress=False, workers=1)
    )
    df = by_url(pool)
    assert df.loc["file:///scene3.jpg", "leak_of"] == "part_A/test_data/images/IMG_7"  # the path inside the set
    assert df.loc["file:///scene4.jpg", "leak_of"] == "part_B/IMG_7"
    assert str(tmp_path) not in df.loc["file:///scene3.jpg", "leak_of"]  # never a whole local path
    assert part_a.exists() and summary.leaked_images == 2 and summary.exclusion_images == 3


def test_a_later_dedup_without_exclude_like_keeps_earlier_leak_marks(pool_with_copies, tmp_path) -> None:
    pool, _ = pool_with_copies
    evaluation = write_folder(tmp_path / "eval", {"IMG_7": scene(3).resize((150, 112))})
    dedup_pool(DedupConfig(pool.root, exclude_like=(str(evaluation),), progress=False, workers=1))
    summary = dedup_pool(DedupConfig(pool.root, threshold=8, progress=False, workers=1))
    leaked = by_url(pool).loc["file:///scene3.jpg"]
    assert leaked["leak_of"] == "eval/IMG_7" and not leaked["kept"]
    assert summary.leaked_images == 1


def test_clear_leaks_undoes_a_wrong_exclude_like_and_keeps_duplicates_and_clip_refusals_out(
    pool_with_copies, tmp_path
) -> None:
    pool, ids = pool_with_copies
    wrong = write_folder(tmp_path / "wrong", {"a": scene(0).resize((150, 112)), "b": scene(3).resize((150, 112))})
    dedup_pool(DedupConfig(pool.root, exclude_like=(str(wrong),), progress=False, workers=1))
    df = pool.read_index()  # what `harvest filter` leaves: scene3 scored under the threshold
    df["clip_kept"] = df["url"].eq("file:///scene3.jpg").map({True: False, False: None})
    pool.rewrite(df)
    assert by_url(pool).loc[["file:///scene0.jpg", "file:///scene3.jpg"], "leak_of"].notna().all()

    right = write_folder(tmp_path / "right", {"IMG_9": scene(4).resize((150, 112))})
    summary = dedup_pool(
        DedupConfig(pool.root, exclude_like=(str(right),), clear_leaks=True, progress=False, workers=1)
    )
    df = by_url(pool)
    group = df.loc[["file:///scene0.jpg"] + [f"file:///scene0-{e}.jpg" for e in ("resized", "cropped", "brightened")]]
    assert group["leak_of"].isna().all() and group["kept"].sum() == 1  # its largest picture is back, not its copies
    assert group.loc[~group["kept"], "dup_of"].notna().all()
    assert pd.isna(df.loc["file:///scene3.jpg", "leak_of"]) and not df.loc["file:///scene3.jpg", "kept"]  # CLIP said no
    assert df.loc["file:///scene4.jpg", "leak_of"] == "right/IMG_9" and not df.loc["file:///scene4.jpg", "kept"]
    assert (summary.leaks_cleared, summary.leaked_images) == (6, 1)
    assert pool.meta["commands"][-1]["clear_leaks"] is True

    plain = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))  # without the flag, marks stay again
    assert (plain.leaks_cleared, plain.leaked_images) == (0, 1)


def test_cli_dedup_clear_leaks_is_wired(pool_with_copies, tmp_path) -> None:
    from typer.testing import CliRunner

    from harvest.cli import app

    pool, _ = pool_with_copies
    wrong = write_folder(tmp_path / "wrong", {"b": scene(3).resize((150, 112))})
    dedup_pool(DedupConfig(pool.root, exclude_like=(str(wrong),), progress=False, workers=1))
    result = CliRunner().invoke(app, ["dedup", str(pool.root), "--clear-leaks"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "leak_of marks cleared, less those made again (--clear-leaks)" in result.output
    assert by_url(pool).loc["file:///scene3.jpg", "kept"]


def test_exclude_like_dataset_uses_the_test_split_image_ids(pool_with_copies, tmp_path) -> None:
    import datasets

    from rankset.schema import labeled_features

    pool, _ = pool_with_copies

    def rows(split: str, seeds: list[int]):
        for seed in seeds:
            yield {
                "image_id": f"IMG_{seed}",
                "image": {"bytes": encode(scene(seed)), "path": None},
                "points": [[1.0, 2.0]],
                "count": 1,
                "dataset": "test-set",
                "split": split,
            }

    features = labeled_features()
    dsd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(list(rows("train", [1])), features=features),
            "test": datasets.Dataset.from_list(list(rows("test", [2, 41])), features=features),
        }
    )
    dsd.save_to_disk(str(tmp_path / "labeled"))
    dedup_pool(DedupConfig(pool.root, exclude_like=(str(tmp_path / "labeled"),), progress=False, workers=1))
    df = by_url(pool)
    assert df.loc["file:///scene2.jpg", "leak_of"] == "labeled/IMG_2"
    assert pd.isna(df.loc["file:///scene1.jpg", "leak_of"])  # train-split images are not evaluation images


def test_clip_stage_merges_pictures_whose_cached_embeddings_nearly_match(pool_with_copies) -> None:
    pool, ids = pool_with_copies
    rng = np.random.default_rng(0)
    names = [f"scene{seed}" for seed in range(1, 6)]
    emb = rng.normal(size=(5, 8)).astype(np.float32)
    emb[1] = emb[0] + 0.01  # scene2 looks (to CLIP) like scene1
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    EmbeddingCache(pool.root, "tiny__x").append([ids[n] for n in names], emb)
    without = dedup_pool(DedupConfig(pool.root, progress=False, workers=1))
    merged = dedup_pool(DedupConfig(pool.root, clip_threshold=0.94, progress=False, workers=1))
    assert without.near_duplicate_groups == 1 and merged.near_duplicate_groups == 2
    assert merged.clip_merged_pairs == 1
    df = by_url(pool)
    pair = df.loc[["file:///scene1.jpg", "file:///scene2.jpg"]]
    assert pair["dup_of"].notna().sum() == 1


def test_clip_stage_without_cached_embeddings_says_to_run_filter_first(pool_with_copies) -> None:
    pool, _ = pool_with_copies
    with pytest.raises(ConfigError, match="harvest filter"):
        dedup_pool(DedupConfig(pool.root, clip_threshold=0.94, progress=False, workers=1))


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"threshold": 40}, "--threshold"),
        ({"dhash_threshold": -1}, "--dhash-threshold"),
        ({"clip_threshold": 1.5}, "--clip-threshold"),
    ],
)
def test_bad_options_fail_naming_the_flag(tmp_path: Path, kwargs: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        DedupConfig(tmp_path, **kwargs)


@pytest.mark.parametrize("empty", ["test", "train"])
def test_exclude_like_dataset_with_an_empty_split_says_so_or_reads_its_test_split(
    pool_with_copies, tmp_path, empty: str
) -> None:
    import datasets

    from rankset.schema import labeled_features

    pool, _ = pool_with_copies
    features = labeled_features()
    row = {"image_id": "IMG_2", "image": {"bytes": encode(scene(2)), "path": None}, "points": [[1.0, 2.0]], "count": 1,
           "dataset": "test-set", "split": "test"}  # fmt: skip
    splits = {
        split: datasets.Dataset.from_dict({k: [] for k in features}, features=features)
        if split == empty
        else datasets.Dataset.from_list([row | {"split": split}], features=features)
        for split in ("train", "test")
    }
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "labeled"))
    config = DedupConfig(pool.root, exclude_like=(str(tmp_path / "labeled"),), progress=False, workers=1)
    if empty == "test":
        with pytest.raises(ConfigError, match="its test split is empty"):
            dedup_pool(config)
    else:
        dedup_pool(config)
        assert by_url(pool).loc["file:///scene2.jpg", "leak_of"] == "labeled/IMG_2"


def test_exclude_like_pointing_nowhere_fails_before_touching_the_pool(pool_with_copies, tmp_path) -> None:
    pool, _ = pool_with_copies
    parts_before = sorted(p.name for p in pool.part_files())
    with pytest.raises(ConfigError, match="--exclude-like"):
        dedup_pool(DedupConfig(pool.root, exclude_like=(str(tmp_path / "nope"),), progress=False))
    assert sorted(p.name for p in pool.part_files()) == parts_before


def test_cli_dedup_prints_a_summary(pool_with_copies) -> None:
    from typer.testing import CliRunner

    from harvest.cli import app

    pool, _ = pool_with_copies
    result = CliRunner().invoke(app, ["dedup", str(pool.root), "--threshold", "10", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "near-duplicate" in result.output
    bad = CliRunner().invoke(app, ["dedup", str(pool.root), "--threshold", "99"])
    assert bad.exit_code != 0 and "--threshold" in bad.output


def test_a_pool_without_stored_pictures_dedups_to_nothing(tmp_path: Path) -> None:
    pool = Pool.create(tmp_path / "pool")
    pool.append_rows([{"url": "http://x/a.jpg", "status": "timeout", "error": "read timeout"}])
    summary = dedup_pool(DedupConfig(pool.root, progress=False))
    row = pool.read_index().iloc[0]
    assert summary.unique_images == 0 and summary.kept == 0
    assert row["status"] == "timeout" and not row["kept"] and pd.isna(row["dup_of"])


def dense_clusters(rng: np.random.Generator, bases: np.ndarray, size: int, flips: int) -> np.ndarray:
    """``size`` hashes around each base, each with ``flips`` random bits flipped: most pairs of a cluster are near,
    so every band holds buckets of hundreds of items (video frames of one scene)."""
    bits = rng.integers(0, 64, size=(len(bases), size, flips)).astype(np.uint64)
    return (bases[:, None] ^ np.bitwise_or.reduce(np.uint64(1) << bits, axis=2)).ravel()


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a[:, None] == a[None], b[:, None] == b[None]))


@pytest.mark.parametrize("workers", [1, 2])
def test_groups_of_dense_clusters_equal_the_components_of_all_pairs(workers: int) -> None:
    """Dense clusters take the component-by-component search (buckets past BIG_BUCKET); the groups must be those of
    every pair, including two clusters joined only through a chain of three pictures, and pictures that share a
    band value with a cluster while being far from it."""
    rng = np.random.default_rng(11)
    base_p, base_d = rng.integers(0, 2**63, 3, dtype=np.uint64), rng.integers(0, 2**63, 3, dtype=np.uint64)
    far = np.uint64(0xFFFFF)  # 20 bits: the 4th cluster is far from the 1st in pHash...
    phash = dense_clusters(rng, np.r_[base_p, base_p[:1] ^ far], 150, flips=3)
    dhash = dense_clusters(rng, np.r_[base_d, base_d[:1]], 150, flips=3)
    chain = base_p[0] ^ np.array([0x1F, 0x3FF, 0x7FFF], dtype=np.uint64)  # ...but 5-bit steps lead from one to it
    strangers = rng.integers(0, 2**63, 100, dtype=np.uint64)
    strangers = (strangers & np.uint64(0xFFFF_FFFF_FFFF_0000)) | (base_p[0] & np.uint64(0xFFFF))  # a shared band
    phash = np.concatenate([phash, chain, strangers])
    dhash = np.concatenate([dhash, np.full(3, base_d[0]), rng.integers(0, 2**63, 100, dtype=np.uint64)])
    pairs = np.array(sorted(brute_force_pairs(phash, dhash, 10, 10)))
    expected = group_labels(len(phash), pairs[:, 0], pairs[:, 1])
    labels = near_duplicate_groups(phash, dhash, 10, 10, workers=workers)
    assert same_partition(labels, expected)
    assert len(np.unique(labels[:603])) == 3 and labels[0] == labels[450]  # clusters 1 and 4 joined by the chain
    assert len(np.unique(labels[603:])) == 100 and not np.isin(labels[603:], labels[:603]).any()


def test_components_fold_edges_in_bounded_batches() -> None:
    components = Components(10, buffer=2)
    components.add(np.array([0, 2]), np.array([1, 3]))  # reaches the buffer: folded
    assert components.joined(np.array([0, 2]), np.array([1, 3])).all()
    components.add(np.array([1]), np.array([2]))
    components.add(np.array([0, 5]), np.array([3, 6]))  # 0-3 already joined (through 1-2): dropped on arrival
    labels = components.labels()
    assert labels[0] == labels[1] == labels[2] == labels[3] and labels[5] == labels[6] != labels[0]
    assert len(np.unique(labels)) == 10 - 4


@pytest.mark.parametrize("threshold", [4, 8, 10])
def test_groups_equal_brute_force_when_every_bucket_is_searched_by_component(
    monkeypatch: pytest.MonkeyPatch, threshold: int
) -> None:
    """With BIG_BUCKET = 2 every shared bucket takes the component-by-component path; copies 0..12 bits off make
    many pairs that only one band can find, so a pair that path skips wrongly changes the groups."""
    monkeypatch.setattr(hash_index, "BIG_BUCKET", 2)
    rng = np.random.default_rng(threshold)
    phash = random_hashes_with_copies(rng, 700, 400, max_flips=12)
    dhash = random_hashes_with_copies(rng, 700, 400, max_flips=12)
    low = np.uint64(0xFFF)
    phash[600:650] = (phash[600:650] & ~low) | (phash[0] & low)  # far pictures sharing a band value with a copy pair
    dense = dense_clusters(rng, rng.integers(0, 2**63, 2, dtype=np.uint64), 60, flips=2)
    phash, dhash = np.concatenate([phash, dense]), np.concatenate([dhash, dense[::-1]])
    pairs = np.array(sorted(brute_force_pairs(phash, dhash, threshold, threshold)))
    expected = group_labels(len(phash), pairs[:, 0], pairs[:, 1])
    assert same_partition(near_duplicate_groups(phash, dhash, threshold, threshold), expected)


@pytest.mark.parametrize("threshold", [3, 8, 10])
def test_pairs_that_only_one_band_can_find_are_grouped(monkeypatch: pytest.MonkeyPatch, threshold: int) -> None:
    """Each copy differs from its original in exactly ``threshold`` bits, placed so that one band only is within
    its search radius; two far pictures share that band value, so the bucket takes the component-by-component
    path (BIG_BUCKET = 2). Every copy must still join its original, and nothing else may join."""
    monkeypatch.setattr(hash_index, "BIG_BUCKET", 2)
    rng = np.random.default_rng(threshold)
    originals = 120
    n = originals * 4
    plan = plan_bands(threshold, n, n, self_join=True)
    searched = [k for k, r in enumerate(plan.radii) if r >= 0]
    phash = rng.integers(0, 2**63, n, dtype=np.uint64)
    dhash = rng.integers(0, 2**63, n, dtype=np.uint64)
    for k in range(originals):
        band = searched[k % len(searched)]  # the one band that can find this copy
        flips: list[int] = []
        for b, ((shift, width), radius) in enumerate(zip(plan.bands, plan.radii, strict=True)):
            count = radius if b == band else radius + 1  # within radius in `band`, one bit past it elsewhere
            flips += (shift + rng.choice(width, size=max(count, 0), replace=False)).tolist()
        assert len(flips) == threshold
        copy, far1, far2 = originals + 3 * k, originals + 3 * k + 1, originals + 3 * k + 2
        phash[copy] = phash[k] ^ np.uint64(sum(1 << b for b in flips))
        dhash[copy] = dhash[k]
        shift, width = plan.bands[band]
        mask = np.uint64(((1 << width) - 1) << shift)
        for stranger in (far1, far2):  # the same value in the finding band, random elsewhere: a shared bucket
            phash[stranger] = (phash[stranger] & ~mask) | (phash[copy if stranger == far1 else k] & mask)
    labels = near_duplicate_groups(phash, dhash, threshold, threshold)
    pairs = np.array(sorted(brute_force_pairs(phash, dhash, threshold, threshold)))
    assert len(pairs) == originals  # the construction: each copy near its original only
    assert same_partition(labels, group_labels(n, pairs[:, 0], pairs[:, 1]))


@pytest.mark.parametrize("big_bucket", [2, 32])
def test_component_search_equals_the_exhaustive_search_band_by_band(
    monkeypatch: pytest.MonkeyPatch, big_bucket: int
) -> None:
    """One band at a time (no other band can make up for a pair it misses), the groups of the pruned search equal
    the components of every pair the exhaustive search of that band finds: dense clusters, copies, pictures
    sharing band values, at both bucket thresholds."""
    monkeypatch.setattr(hash_index, "BIG_BUCKET", big_bucket)
    rng = np.random.default_rng(big_bucket)
    phash = random_hashes_with_copies(rng, 500, 250, max_flips=10)
    dhash = random_hashes_with_copies(rng, 500, 250, max_flips=10)
    low = np.uint64(0xFFFFF)
    phash[400:450] = (phash[400:450] & ~low) | (phash[0] & low)  # far pictures sharing low bands with a copy pair
    dense = dense_clusters(rng, rng.integers(0, 2**63, 3, dtype=np.uint64), 80, flips=3)
    phash, dhash = np.concatenate([phash, dense]), np.concatenate([dhash, dense[::-1]])
    phash, dhash, _ = unique_hash_pairs(phash, dhash)
    n, limits = len(phash), (8, 8)
    all_units = hash_index._band_units(phash, dhash, limits)
    tables = list(dict.fromkeys(id(unit[0]) for unit in all_units))
    for table in tables:
        monkeypatch.setattr(hash_index, "_band_units", lambda *_, t=table: [u for u in all_units if id(u[0]) == t])
        found: list[tuple[np.ndarray, np.ndarray]] = []
        hash_index.self_join(phash, dhash, limits, lambda i, j, found=found: found.append((i, j)))
        i = np.concatenate([np.empty(0, dtype=np.int64), *(a for a, _ in found)])
        j = np.concatenate([np.empty(0, dtype=np.int64), *(b for _, b in found)])
        components = Components(n)
        hash_index.group_join(phash, dhash, limits, components)
        assert same_partition(components.labels(), group_labels(n, i, j))


def test_a_cosine_equal_to_the_clip_threshold_pairs() -> None:
    emb = np.array([[1, 0, 0], [1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]], dtype=np.float32)  # exact in float32
    i, j = cosine_pairs(emb, 1.0)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1)]
    i, j = cosine_pairs(emb, 0.6)
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 2)]

"""Perceptual hashing: stable hex, robust to the edits re-posted photos go through, failures as results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harvest.hash_bands import hamming
from harvest.hashing import hash_bytes, hash_file, hash_files, hex_to_uint64, image_hashes, uint64_to_hex
from tests.harvest.imagegen import edited_copies, encode, scene


def test_hashes_are_16_digit_hex_and_round_trip_through_uint64() -> None:
    phash, dhash = image_hashes(scene(0))
    assert len(phash) == 16 and len(dhash) == 16
    values = hex_to_uint64([phash, dhash, "ffffffffffffffff", "0000000000000001"])
    assert values.dtype == np.uint64
    assert uint64_to_hex(values) == [phash, dhash, "ffffffffffffffff", "0000000000000001"]
    assert int(values[2]) == 2**64 - 1


def test_edited_copies_stay_within_ten_bits_on_both_hashes() -> None:
    original = hex_to_uint64(image_hashes(scene(4)))
    for name, copy in edited_copies(scene(4)).items():
        edited = hex_to_uint64(image_hashes(copy.convert("RGB")))
        assert hamming(original, edited).max() <= 10, name


def test_distinct_scenes_differ_in_more_than_sixteen_bits() -> None:
    hashes = np.array([hex_to_uint64(image_hashes(scene(seed))) for seed in range(8)])  # (8, 2)
    for a in range(8):
        for b in range(a + 1, 8):
            assert hamming(hashes[a], hashes[b]).max() > 16, (a, b)


def test_file_and_bytes_hashing_agree(tmp_path: Path) -> None:
    data = encode(scene(2))
    (tmp_path / "a.jpg").write_bytes(data)
    from_file = hash_file("a", tmp_path / "a.jpg")
    from_bytes = hash_bytes("a", data)
    assert from_file.error is None
    assert (from_file.phash, from_file.dhash) == (from_bytes.phash, from_bytes.dhash)


def test_broken_and_truncated_files_become_results_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "text.jpg").write_bytes(b"not a picture at all")
    (tmp_path / "cut.jpg").write_bytes(encode(scene(1))[:300])
    (tmp_path / "fine.jpg").write_bytes(encode(scene(1)))
    items = [(name, tmp_path / f"{name}.jpg") for name in ("text", "cut", "fine")]
    results = {r.key: r for r in hash_files(items, workers=1)}
    assert results["text"].phash is None and "UnidentifiedImageError" in results["text"].error
    assert results["cut"].phash is None and results["cut"].error
    assert results["fine"].error is None and results["fine"].phash is not None


def test_a_copy_stored_sideways_with_an_exif_orientation_hashes_as_the_upright_picture() -> None:
    import io

    from PIL import Image

    upright = hash_bytes("upright", encode(scene(0)))
    for orientation, stored in ((6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)):
        exif = Image.Exif()
        exif[0x0112] = orientation  # a phone's upload: pixels sideways, the tag says how to turn them
        buffer = io.BytesIO()
        scene(0).transpose(stored).save(buffer, "JPEG", quality=92, exif=exif)
        sideways = hash_bytes("sideways", buffer.getvalue())
        assert (sideways.phash, sideways.dhash) == (upright.phash, upright.dhash), orientation


def test_a_picture_over_pillows_pixel_limit_is_a_result_with_a_reason_not_a_crash(monkeypatch) -> None:
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # scene(1) has 192 x 144: over twice the limit
    result = hash_bytes("big", encode(scene(1)))
    assert result.phash is None and result.error.startswith("DecompressionBombError")

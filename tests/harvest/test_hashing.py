"""Perceptual hashing: stable hex, robust to the edits re-posted photos go through, failures as results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

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
    assert result.phash is None and "too many pixels to decode safely" in result.error


def _children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_the_hashing_workers_of_a_dedup_killed_with_sigkill_end_with_it(tmp_path: Path) -> None:
    """Every stored picture is a FIFO no one writes, so both workers block reading one; after kill -9 of the dedup
    they used to wait for ever."""
    from harvest.pool import Pool
    from tests.harvest.imagegen import add_pictures

    pool = Pool.create(tmp_path / "pool")
    add_pictures(pool, {f"scene{seed}": scene(seed, 32, 24) for seed in range(130)})  # three chunks of 64 or fewer
    for path in pool.read_index()["path"]:
        pool.path_of(path).unlink()
        os.mkfifo(pool.path_of(path))
    df = pool.read_index()
    df["bytes"] = None  # sizes unknown: else dedup's stat finds each 0-byte FIFO lost and reads none of them
    pool.rewrite(df)
    script = (
        "import sys; from harvest.dedup_pool import DedupConfig, dedup_pool; "
        "dedup_pool(DedupConfig(sys.argv[1], workers=2, progress=False))"
    )
    run = subprocess.Popen([sys.executable, "-c", script, str(pool.root)], cwd=Path(__file__).resolve().parents[2])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            workers = _children_of(run.pid)
        assert len(workers) == 2 and run.poll() is None, "dedup did not start its two hashing workers"
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    try:
        deadline = time.monotonic() + 30  # a generous bound for "gone", not a speed requirement
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _running(pid)], "hashing workers outlived the killed dedup"
    finally:
        for pid in workers:  # our own orphans, should the assertion fail
            if _running(pid):
                os.kill(pid, signal.SIGKILL)

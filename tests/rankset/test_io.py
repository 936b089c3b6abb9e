"""rankset.io and rankset.schema: atomic replacement, what counts as a dataset folder, and the Features contract."""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
from PIL import Image
from typer.testing import CliRunner

from rankset.cli import app
from rankset.errors import EmptySplitError, InputError, PublishError
from rankset.io import is_dataset_folder, load_dataset_dict, looks_like_hub_id, write_dataset_dict
from rankset.schema import decode_build_info, encode_build_info, labeled_features, ranked_features

FEATURES = datasets.Features({"n": datasets.Value("int32")})


def rows(*values: int) -> list[dict[str, int]]:
    return [{"n": value} for value in values]


def hidden_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_rewriting_a_dataset_replaces_it_and_leaves_no_old_copy_beside_it(tmp_path: Path) -> None:
    write_dataset_dict(tmp_path / "ds", {"train": rows(1, 2)}, FEATURES)
    write_dataset_dict(tmp_path / "ds", {"train": rows(7)}, FEATURES)
    assert load_dataset_dict(tmp_path / "ds")["train"]["n"] == [7]
    assert hidden_entries(tmp_path) == []  # neither the replaced dataset nor a staging folder stays on disk


def test_a_card_that_fails_leaves_the_old_dataset_and_no_staging_folder(tmp_path: Path) -> None:
    write_dataset_dict(tmp_path / "ds", {"train": rows(1, 2)}, FEATURES)

    def broken_card() -> str:
        raise RuntimeError("card failed")

    with pytest.raises(RuntimeError, match="card failed"):
        write_dataset_dict(tmp_path / "ds", {"train": rows(9)}, FEATURES, card=broken_card)
    assert load_dataset_dict(tmp_path / "ds")["train"]["n"] == [1, 2]
    assert hidden_entries(tmp_path) == []


def test_a_single_saved_dataset_is_a_dataset_folder_read_as_split_train(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"n": [3, 4]}).save_to_disk(str(tmp_path / "single"))
    assert is_dataset_folder(tmp_path / "single")
    loaded = load_dataset_dict(tmp_path / "single")
    assert list(loaded) == ["train"] and loaded["train"]["n"] == [3, 4]


def test_a_saved_folder_with_an_empty_split_is_refused_naming_the_split(tmp_path: Path) -> None:
    empty = datasets.Dataset.from_dict({"n": []}, features=FEATURES)
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"n": [1]}), "validation": empty}).save_to_disk(
        str(tmp_path / "ds")
    )
    with pytest.raises(EmptySplitError, match=r"validation: 0 rows") as err:
        load_dataset_dict(tmp_path / "ds")
    assert err.value.splits == ["validation"]


@pytest.mark.parametrize("damage", ["bad json index", "arrow deleted", "arrow truncated", "info not utf-8"])
def test_a_damaged_dataset_folder_is_an_input_error_naming_it_and_the_fix(tmp_path: Path, damage: str) -> None:
    """datasets' JSONDecodeError, FileNotFoundError, ArrowInvalid or UnicodeDecodeError reached the user as a
    traceback from every command that reads a dataset (info, preview, build, push)."""
    from typer.testing import CliRunner

    from rankset.cli import app

    folder = tmp_path / "ds"
    write_dataset_dict(folder, {"train": rows(1, 2)}, FEATURES)
    [arrow] = list((folder / "train").glob("*.arrow"))
    if damage == "bad json index":
        (folder / "dataset_dict.json").write_text("{bad")
    elif damage == "arrow deleted":
        arrow.unlink()
    elif damage == "arrow truncated":
        arrow.write_bytes(arrow.read_bytes()[:100])
    else:
        (folder / "train" / "dataset_info.json").write_bytes(b"\xff")
    with pytest.raises(InputError, match=f"cannot read the dataset folder {folder}: it is damaged or incomplete"):
        load_dataset_dict(folder)
    result = CliRunner().invoke(app, ["info", str(folder), "--out", str(tmp_path / "info.png")])
    assert result.exit_code == 1 and "Write it again with the rankset command that made it" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_missing_path_names_its_existing_folder_once_with_one_slash(tmp_path: Path) -> None:
    """A path at the root read "its folder // does"."""
    from rankset.io import missing_path_message

    assert "(its folder / does," in missing_path_message(Path("/no-such-dataset-here"))
    assert f"(its folder {tmp_path.as_posix()}/ does," in missing_path_message(tmp_path / "nope")


def test_user_slash_name_is_a_local_path_once_the_user_folder_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert looks_like_hub_id("someone/crowds")
    (tmp_path / "data").mkdir()
    assert not looks_like_hub_id("data/shb")
    with pytest.raises(InputError, match=r"data/shb does not exist \(its folder data/ does"):
        load_dataset_dict("data/shb")


@dataclass
class HubDown:
    cache: Path  # the datasets cache, an empty temp folder
    lookups: list[str]  # every host name looked up


@pytest.fixture
def hub_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubDown:
    """No HF_HUB_OFFLINE, no proxy, and huggingface.co does not resolve (the suite's name guard): a machine that is
    offline without saying so."""
    import socket

    import datasets
    import huggingface_hub.constants

    lookups: list[str] = []
    guard = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: lookups.append(host) or guard(host, *a, **k))

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    monkeypatch.chdir(tmp_path)
    return HubDown(tmp_path / "hf-datasets", lookups)


def cache_as_hub_dataset(cache: Path, repo_id: str, counts: list[int]) -> None:
    """What ``load_dataset(repo_id)`` leaves in the datasets cache: the Arrow file and dataset_info.json under
    ``<user>___<name>/default/0.0.0/<hash>/``, made here from a local Parquet file instead of the Hub."""
    import datasets

    datasets.Dataset.from_dict({"count": counts}).to_parquet(cache.parent / "train.parquet")
    datasets.load_dataset("parquet", data_files={"train": str(cache.parent / "train.parquet")}, cache_dir=str(cache))
    built = next(p for p in (cache / "parquet").glob("*/*/*") if (p / "dataset_info.json").is_file())
    user, name = repo_id.split("/")
    target = cache / f"{user}___{name}" / "default" / "0.0.0" / built.name
    target.mkdir(parents=True)
    (target / "dataset_info.json").write_bytes((built / "dataset_info.json").read_bytes())
    (target / f"{name}-train.arrow").write_bytes((built / "parquet-train.arrow").read_bytes())


def test_a_hub_id_offline_reads_the_cached_copy_at_once(hub_down: HubDown) -> None:
    import datasets
    import huggingface_hub.constants

    cache_as_hub_dataset(hub_down.cache, "someone/crowds", [4, 5, 6])
    hub_down.lookups.clear()
    loaded = load_dataset_dict("someone/crowds")
    assert loaded["train"]["count"] == [4, 5, 6]
    assert hub_down.lookups == ["huggingface.co"]  # one check; before, the client's six tries took 24 s
    assert not huggingface_hub.constants.HF_HUB_OFFLINE and not datasets.config.HF_HUB_OFFLINE  # switched back


def test_an_uncached_hub_id_offline_fails_at_once_naming_the_reason_and_the_fix(hub_down: HubDown) -> None:
    with pytest.raises(PublishError, match=r"'someone/crowds'.*cannot resolve huggingface.co.*not in the local cache"):
        load_dataset_dict("someone/crowds")
    assert hub_down.lookups == ["huggingface.co"]


def test_a_reachable_hub_is_asked_directly(hub_down: HubDown, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub.constants

    asked: list[tuple[str, bool]] = []
    monkeypatch.setattr("rankset.hub.hub_unreachable", lambda: None)
    monkeypatch.setattr(
        datasets, "load_dataset", lambda name: asked.append((name, huggingface_hub.constants.HF_HUB_OFFLINE)) or {}
    )
    assert load_dataset_dict("someone/crowds") == {} and asked == [("someone/crowds", False)]


def test_ranked_features_fix_k_patches_four_box_coordinates_and_two_anchor_values() -> None:
    features = ranked_features(5)
    assert features["images"].length == 5 and features["boxes"].length == 5
    assert features["boxes"].feature.length == 4
    assert features["anchor"].length == 2 and features["source_size"].length == 2
    assert ranked_features()["images"].length == -1  # without k, any number of patches


def test_labeled_features_refuse_an_unknown_optional_field() -> None:
    assert "depth" in labeled_features(("depth",)) and "depth" not in labeled_features()
    with pytest.raises(ValueError, match=r"unknown optional labeled fields \['density'\]"):
        labeled_features(("density",))


def test_build_info_that_is_not_a_json_object_decodes_to_nothing() -> None:
    assert decode_build_info(encode_build_info({"k": 5, "s": 0.75})) == {"k": 5, "s": 0.75}
    assert decode_build_info("[1, 2]") == {} and decode_build_info("not json") == {} and decode_build_info(None) == {}


def write_snapshot(folder: Path, values: list[int]) -> Path:
    """A Hub-layout folder, as `rankset push --dry-run` writes it: data/ shards and a card naming them in `configs`."""
    (folder / "data").mkdir(parents=True)
    shard = folder / "data" / "train-00000-of-00001.parquet"
    datasets.Dataset.from_list(rows(*values), features=FEATURES).to_parquet(shard)
    card = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n---\n"
    (folder / "README.md").write_text(card)
    return folder


def test_two_snapshot_folders_of_one_name_each_load_their_own_rows(tmp_path: Path) -> None:
    # load_dataset(folder) caches a card's configs by folder name and relative pattern: b/upload read a/upload's rows
    first = write_snapshot(tmp_path / "a" / "upload", [1, 2])
    second = write_snapshot(tmp_path / "b" / "upload", [3, 4, 5])
    assert load_dataset_dict(first)["train"]["n"] == [1, 2]
    assert load_dataset_dict(second)["train"]["n"] == [3, 4, 5]


def out_commands(tmp_path: Path, out: str) -> dict[str, list[str]]:
    """Every rankset command that writes a folder, with that folder at ``out`` and inputs it can read."""
    points = tmp_path / "points"
    points.mkdir(exist_ok=True)
    Image.new("RGB", (64, 48)).save(points / "a.jpg")
    (points / "a.txt").write_text("1 2\n")
    row = {"image_id": "a", "image": {"bytes": (points / "a.jpg").read_bytes(), "path": None}, "points": [[1.0, 2.0]]}
    write_dataset_dict(
        tmp_path / "labeled", {"train": [{**row, "count": 1, "dataset": "x", "split": "train"}]}, labeled_features()
    )
    return {
        "build": ["build", str(points), "--size", "16", "--out", out],
        "import": ["import", "points", str(points), "--out", out],
        "synth": ["synth", "--n", "1", "--size", "64x64", "--out", out],
        "synth --unlabeled": ["synth", "--n", "1", "--size", "64x64", "--unlabeled", "--out", out],
        "push --dry-run": [
            "push",
            str(tmp_path / "labeled"),
            "--repo-id",
            "me/x",
            "--dataset-license",
            "mit",
            "--dry-run",
            out,
        ],
    }


def plain(output: str) -> str:
    """CLI output as one line of words, without the frame rich draws around a usage error."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


COMMANDS = ("build", "import", "synth", "synth --unlabeled", "push --dry-run")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_under_a_file_is_refused_naming_the_file(tmp_path: Path, command: str) -> None:
    (tmp_path / "notes").write_text("keep")
    result = CliRunner().invoke(app, out_commands(tmp_path, str(tmp_path / "notes" / "ds"))[command])
    assert isinstance(result.exception, SystemExit) and result.exit_code != 0  # a message, not a traceback
    assert "notes is a file, so no folder can be made there" in plain(result.output)
    assert (tmp_path / "notes").read_text() == "keep"


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_that_cannot_be_written_is_refused_before_any_work(
    tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    mkdtemp = tempfile.mkdtemp

    def read_only(suffix: str | None = None, prefix: str | None = None, dir: str | Path | None = None) -> str:
        if dir is not None and Path(dir) == tmp_path / "locked":  # what a read-only folder answers
            raise PermissionError(13, "Permission denied")
        return mkdtemp(suffix, prefix, dir)

    (tmp_path / "locked").mkdir()
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    result = CliRunner().invoke(app, out_commands(tmp_path, str(tmp_path / "locked" / "ds"))[command])
    assert isinstance(result.exception, SystemExit) and result.exit_code != 0
    assert "Permission denied); choose a folder you can write to" in plain(result.output)
    assert list((tmp_path / "locked").iterdir()) == []


def test_a_dataset_of_the_other_kind_at_out_is_refused_not_replaced(tmp_path: Path) -> None:
    image = {"bytes": b"not decoded here", "path": None}
    labeled_row = {"image_id": "a", "image": image, "points": [], "count": 0, "dataset": "x", "split": "train"}
    write_dataset_dict(tmp_path / "data", {"train": [labeled_row]}, labeled_features())
    ranked_row = {
        "set_id": "a-0",
        "source_id": "a",
        "images": [image, image],
        "boxes": [[0, 0, 2, 2], [0, 0, 1, 1]],
        "anchor": [1, 1],
        "source_size": [2, 2],
        "license": None,
        "author": None,
        "source_url": None,
    }
    with pytest.raises(InputError, match="holds a labeled dataset .* writing a ranked-set dataset .* would delete it"):
        write_dataset_dict(tmp_path / "data", {"train": [ranked_row]}, ranked_features(2))
    assert load_dataset_dict(tmp_path / "data")["train"]["image_id"] == ["a"]
    write_dataset_dict(tmp_path / "sets", {"train": [ranked_row]}, ranked_features(2))
    with pytest.raises(InputError, match="holds a ranked-set dataset .* writing a labeled dataset"):
        write_dataset_dict(tmp_path / "sets", {"train": [labeled_row]}, labeled_features())
    write_dataset_dict(tmp_path / "sets", {"train": [ranked_row, ranked_row]}, ranked_features(2))  # same kind: rebuilt
    assert len(load_dataset_dict(tmp_path / "sets")["train"]) == 2


def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_staging_folders_of_killed_writers_are_removed_by_the_next_write_and_live_ones_kept(tmp_path: Path) -> None:
    from rankset.io import HOST

    dead = tmp_path / f".ds.tmp-{HOST}-{dead_pid()}-0123abcd"
    (dead / "dataset").mkdir(parents=True)
    (dead / "dataset" / "data-00000-of-00001.arrow").write_bytes(b"x" * 2_000_000)
    live = tmp_path / f".ds.tmp-{HOST}-{os.getpid()}-0123abcd"  # this process: running
    elsewhere = tmp_path / f".ds.tmp-other-host-{dead_pid()}-0123abcd"  # another machine's: cannot be told
    other_target = tmp_path / f".other.tmp-{HOST}-{dead_pid()}-0123abcd"  # not a staging folder of ds
    for folder in (live, elsewhere, other_target):
        folder.mkdir()
    notes: list[str] = []
    write_dataset_dict(tmp_path / "ds", {"train": rows(5)}, FEATURES, notes=notes)
    assert load_dataset_dict(tmp_path / "ds")["train"]["n"] == [5]
    assert hidden_entries(tmp_path) == sorted([live.name, elsewhere.name, other_target.name])
    assert len(notes) == 1 and str(dead) in notes[0] and "2.0 MB" in notes[0]


def test_a_dataset_moved_aside_by_a_run_killed_before_its_rename_is_put_back(tmp_path: Path) -> None:
    from rankset.io import HOST, remove_stale_staging

    write_dataset_dict(tmp_path / "ds", {"train": rows(1, 2)}, FEATURES)
    os.replace(tmp_path / "ds", tmp_path / f".ds.old-{HOST}-{dead_pid()}-0123abcd")
    notes = remove_stale_staging(tmp_path, "ds")
    assert load_dataset_dict(tmp_path / "ds")["train"]["n"] == [1, 2]
    assert hidden_entries(tmp_path) == [] and "put back" in notes[0]


KILLED_WRITE = """
import os, signal, sys
import datasets
from rankset.io import write_dataset_dict

def rows():
    for n in range(50):
        yield {"n": n}
    os.kill(os.getpid(), signal.SIGKILL)  # killed while the split is being written

write_dataset_dict(sys.argv[1], {"train": (rows, {})}, datasets.Features({"n": datasets.Value("int32")}))
"""


def test_a_write_killed_mid_split_leaves_the_old_dataset_and_the_next_write_cleans_everything_up(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    write_dataset_dict(tmp_path / "ds", {"train": rows(1, 2)}, FEATURES)
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(tmp_path / "ds")], env={**os.environ})
    assert killed.returncode == -9
    assert load_dataset_dict(tmp_path / "ds")["train"]["n"] == [1, 2]
    assert hidden_entries(tmp_path) != []  # the killed run's staging (and Arrow cache) is still there
    notes: list[str] = []
    write_dataset_dict(tmp_path / "ds", {"train": rows(3)}, FEATURES, notes=notes)
    assert load_dataset_dict(tmp_path / "ds")["train"]["n"] == [3]
    assert hidden_entries(tmp_path) == [] and len(notes) == 1


def age(path: Path, hours: float) -> Path:
    """Set the modification time of ``path`` and everything under it ``hours`` back."""
    when = time.time() - hours * 3600
    for p in [*path.rglob("*"), path] if path.is_dir() else [path]:
        os.utime(p, (when, when))
    return path


def test_staging_of_the_scheme_before_host_pid_is_removed_only_once_untouched_for_a_day(tmp_path: Path) -> None:
    from rankset.io import HOST, LEGACY_STALE_SECONDS

    assert LEGACY_STALE_SECONDS == 24 * 3600
    old_dataset = tmp_path / ".ds.tmp-0123abcd"  # a dataset staging folder of the earlier scheme: no host, no pid
    (old_dataset / "train").mkdir(parents=True)
    (old_dataset / "train" / "data-00000-of-00001.arrow").write_bytes(b"x" * 3_000_000)
    old_cache = tmp_path / ".cache-k2_9xq0a"  # tempfile's Arrow cache beside --out
    (old_cache / "generator" / "default-1" / "0.0.0").mkdir(parents=True)
    (old_cache / "generator" / "default-1" / "0.0.0" / "generator-train.arrow").write_bytes(b"y")
    (old_cache / "_generator.lock").write_bytes(b"")
    old_file = tmp_path / ".ds.tmp-48213"  # a file staged by an earlier synth --unlabeled: pid, no host
    old_file.write_bytes(b"z")
    for path in (old_dataset, old_cache, old_file):
        age(path, 25)
    recent = tmp_path / ".ds.tmp-89abcdef"  # may be an older crowdrank writing right now
    (recent / "train").mkdir(parents=True)
    age(recent, 30)
    (recent / "train" / "cache.arrow").write_bytes(b"still growing")  # a live writer appends deep inside
    other_target = tmp_path / ".other.tmp-0123abcd"  # staging of another --out: not this write's
    other_target.mkdir()
    age(other_target, 48)
    users_folder = tmp_path / ".cache-abcdefgh"  # named like a cache, but holds the user's own files
    users_folder.mkdir()
    (users_folder / "photo.jpg").write_bytes(b"p")
    age(users_folder, 48)
    live_current = tmp_path / f".ds.tmp-{HOST}-{os.getpid()}-0123abcd"  # a running writer of today's scheme
    live_current.mkdir()
    age(live_current, 100)

    notes: list[str] = []
    write_dataset_dict(tmp_path / "ds", {"train": rows(5)}, FEATURES, notes=notes)
    assert load_dataset_dict(tmp_path / "ds")["train"]["n"] == [5]
    assert hidden_entries(tmp_path) == sorted([recent.name, other_target.name, users_folder.name, live_current.name])
    removed = [note for note in notes if note.startswith("removed")]
    assert len(removed) == 3 and all("earlier crowdrank version" in note for note in removed)
    assert any(str(old_dataset) in note and "3.0 MB" in note for note in removed)
    [kept] = [note for note in notes if note.startswith("kept")]
    assert str(recent) in kept and "24 h" in kept


def test_legacy_staging_is_told_from_the_current_scheme_by_name_and_content(tmp_path: Path) -> None:
    from rankset.io import HOST, is_legacy_staging

    cache = tmp_path / ".cache-0a1b2c3d"
    cache.mkdir()
    (cache / "x.arrow").write_bytes(b"")
    for name in (".ds.tmp-0123abcd", f".ds.tmp-{HOST}-12-0123abcd", ".ds.tmp-notatoken"):
        (tmp_path / name).mkdir()
    assert is_legacy_staging(tmp_path / ".ds.tmp-0123abcd", "ds")
    assert not is_legacy_staging(tmp_path / ".ds.tmp-0123abcd", "other")
    assert is_legacy_staging(cache, "any-target")
    assert not is_legacy_staging(tmp_path / f".ds.tmp-{HOST}-12-0123abcd", "ds")  # current: judged by its pid
    assert not is_legacy_staging(tmp_path / ".ds.tmp-notatoken", "ds")


def torn_savefig(self: object, fname: object, *args: object, **kwargs: object) -> None:
    """A render that dies halfway (a full disk, a kill): some PNG bytes reach ``fname``, then it fails."""
    if hasattr(fname, "write"):
        fname.write(b"\x89PNG torn")  # type: ignore[attr-defined]
    else:
        Path(str(fname)).write_bytes(b"\x89PNG torn")
    raise OSError(28, "No space left on device")


def test_preview_info_and_contact_sheet_keep_the_previous_png_when_a_render_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.figure
    import numpy as np

    from rankset.build import BuildConfig, build_ranked_sets
    from rankset.errors import RanksetError
    from rankset.info import InfoConfig, dataset_report
    from rankset.preview import render_preview
    from rankset.synth import save_contact_sheet, synthesize_scene

    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGB", (96, 80), (90, 120, 200)).save(pics / "a.jpg")
    build_ranked_sets(BuildConfig(str(pics), str(tmp_path / "sets"), k=2, s=0.5, size=16), progress=False)
    scenes = [synthesize_scene(np.random.default_rng([0, 0]), 64, 48)]
    figures = tmp_path / "figures"
    figures.mkdir()
    writers = {
        "preview.png": lambda path: render_preview(str(tmp_path / "sets"), path, n=1),
        "info.png": lambda path: dataset_report(InfoConfig(str(tmp_path / "sets"), out=path)),
        "sheet.png": lambda path: save_contact_sheet(scenes, path),
    }
    for name in writers:
        (figures / name).write_bytes(b"the previous PNG")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", torn_savefig)
    for name, write in writers.items():
        with pytest.raises((OSError, RanksetError), match="No space left"):  # preview and info name the --out too
            write(figures / name)
    assert {p.name: p.read_bytes() for p in figures.iterdir()} == dict.fromkeys(writers, b"the previous PNG")

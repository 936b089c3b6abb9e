"""Suite-wide fixtures: offline Hugging Face caches in a temp folder, headless matplotlib, real fixtures path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

SHARED_REAL_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"


@pytest.fixture(autouse=True)
def offline_hf_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point every Hugging Face cache at a temp folder and forbid network use, as HF datasets' conftest does."""
    cache = tmp_path_factory.getbasetemp() / "hf-cache"
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache / "xdg"))


@pytest.fixture
def real_fixtures() -> Path:
    """../shared/fixtures/real when present (real ShanghaiTech-format and UCF_CC_50 files); skip otherwise."""
    if not SHARED_REAL_FIXTURES.is_dir():
        pytest.skip(f"{SHARED_REAL_FIXTURES} not present")
    return SHARED_REAL_FIXTURES

"""Suite-wide fixtures: offline Hugging Face caches in a temp folder, headless matplotlib, real fixtures path."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

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


LOOPBACK_NAMES = {"localhost", ""}
_getaddrinfo = socket.getaddrinfo


def _is_loopback_address(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a name, not an address
        return False


def _loopback_only_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else str(host or "")
    if name.lower() not in LOOPBACK_NAMES and not _is_loopback_address(
        name
    ):  # what an offline machine answers: no test reaches a name off this host
        raise socket.gaierror(socket.EAI_NONAME, f"test suite: no name lookups outside 127.0.0.1 ({name})")
    return _getaddrinfo(host, *args, **kwargs)


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_outside_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to 127.0.0.1 only: any other host name fails to resolve, as it would offline, so a test that
    would reach the internet on a connected machine fails the same way everywhere. Proxy variables are cleared, so a
    machine's proxy neither carries a request nor skips a reachability check; a test sets them where it needs them."""
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_only_getaddrinfo)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def real_fixtures() -> Path:
    """../shared/fixtures/real when present (real ShanghaiTech-format and UCF_CC_50 files); skip otherwise."""
    if not SHARED_REAL_FIXTURES.is_dir():
        pytest.skip(f"{SHARED_REAL_FIXTURES} not present")
    return SHARED_REAL_FIXTURES

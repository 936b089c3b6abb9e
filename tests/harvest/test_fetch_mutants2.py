"""fetch_one behaviour that hand-made mutants of harvest.fetch survived: exponential backoff after timeouts and
dropped connections, every retryable status retried, a guarded host refused when robots.txt is not read, a
Retry-After only heeded where it asks for a retry, --ignore-robots covering X-Robots-Tag, the DNS name length."""

from __future__ import annotations

import time
import types

import pytest
import requests

import harvest.fetch as fetch_module
from harvest.errors import ConfigError
from harvest.fetch import _Failure, _parse_url, fetch_one
from harvest.net import HostRateLimiter, RobotsCache, make_session
from tests.harvest.conftest import Reply
from tests.harvest.test_fetch import JPEG, encode, test_config
from tests.harvest.test_net import FakeClock


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The downloader's back-off sleeps, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(fetch_module, "time", types.SimpleNamespace(sleep=recorded.append, monotonic=time.monotonic))
    return recorded


class _FailingSession(requests.Session):
    """A session whose every GET fails below HTTP with ``error``, counting the tries."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.tries = 0

    def get(self, url: str | bytes, **kwargs: object) -> requests.Response:  # type: ignore[override]
        self.tries += 1
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (requests.exceptions.ReadTimeout("read timed out"), "timeout"),
        (requests.exceptions.ConnectionError("connection reset by peer"), "connection_error"),
    ],
)
def test_failures_below_http_are_retried_with_exponential_backoff(
    sleeps: list[float], error: Exception, status: str
) -> None:
    session = _FailingSession(error)
    config = test_config(ignore_robots=True, retries=3, backoff=0.5)
    limiter = HostRateLimiter(0)
    result = fetch_one(session, "http://a.example/x.jpg", config, RobotsCache(limiter), limiter)
    assert result.status == status and "4 tries" in (result.error or "")
    assert session.tries == 4 and sleeps == [0.5, 1.0, 2.0]  # doubled after each try, none after the last


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_every_retryable_status_is_asked_again(web, sleeps: list[float], code: int) -> None:
    url = web.route(f"/flaky{code}.jpg", responses=[Reply(code), Reply(200, encode(), JPEG)])
    limiter = HostRateLimiter(0)
    with make_session(allow_private_hosts=True) as session:
        result = fetch_one(session, url, test_config(retries=1), RobotsCache(limiter), limiter)
    assert result.status == "ok" and web.hits(f"/flaky{code}.jpg") == 2


def test_a_private_host_is_refused_when_robots_txt_is_ignored_too(web) -> None:
    # With --ignore-robots no robots.txt request meets the guard first: the picture's own request must.
    url = web.route("/inside.jpg", body=encode(), headers=JPEG)
    config = test_config(allow_private_hosts=False, ignore_robots=True)
    limiter = HostRateLimiter(0)
    with make_session(allow_private_hosts=False) as session:
        result = fetch_one(session, url, config, RobotsCache(limiter), limiter)
    assert result.status == "blocked_host" and "--allow-private-hosts" in (result.error or "")
    assert web.hits("/inside.jpg") == 0


@pytest.mark.parametrize("status", [200, 404])
def test_a_retry_after_on_an_answer_that_is_not_retried_does_not_pause_the_host(web, status: int) -> None:
    body = encode() if status == 200 else b"gone"
    url = web.route("/a.jpg", status=status, body=body, headers={**JPEG, "Retry-After": "50"})
    clock = FakeClock()
    limiter = HostRateLimiter(0, clock=clock, sleep=clock.sleep)
    with make_session(allow_private_hosts=True) as session:
        fetch_one(session, url, test_config(ignore_robots=True), RobotsCache(limiter), limiter)
    assert limiter.delay(url) == 0.0 and clock.sleeps == []


def test_ignore_robots_also_ignores_x_robots_tag(web) -> None:
    url = web.route("/tagged.jpg", body=encode(), headers={**JPEG, "X-Robots-Tag": "noai"})
    limiter = HostRateLimiter(0)
    with make_session(allow_private_hosts=True) as session:
        honoured = fetch_one(session, url, test_config(), RobotsCache(limiter), limiter)
        ignored = fetch_one(session, url, test_config(ignore_robots=True), RobotsCache(limiter), limiter)
    assert (honoured.status, ignored.status) == ("noai", "ok")  # as README and --help say of --ignore-robots


def test_a_host_name_longer_than_dns_allows_is_bad_url_and_one_at_the_limit_is_not() -> None:
    label = "a" * 63
    at_limit = ".".join([label, label, label, "a" * 61])  # 253 characters
    assert len(at_limit) == fetch_module.MAX_HOSTNAME_CHARS
    assert _parse_url(f"http://{at_limit}/x.jpg").hostname == at_limit
    assert _parse_url(f"http://{at_limit}./x.jpg").hostname == at_limit + "."  # the root's dot is not counted
    with pytest.raises(_Failure) as failure:
        _parse_url(f"http://{at_limit}a/x.jpg")
    assert failure.value.status == "bad_url"


def test_retries_are_bounded_at_ten_per_url() -> None:
    assert test_config(retries=10).retries == 10
    with pytest.raises(ConfigError, match="--retries must be between 0 and 10, got 11"):
        test_config(retries=11)

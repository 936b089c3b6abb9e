"""fetch_one against the loopback server: every fault the web throws becomes the right status, never a crash."""

from __future__ import annotations

import io
import socket
import time
import types
from collections.abc import Callable

import pytest
from PIL import Image

import harvest.fetch as fetch_module
from harvest.errors import ConfigError
from harvest.fetch import FetchConfig, FetchResult, fetch_one
from harvest.net import HostRateLimiter, RobotsCache, make_session
from harvest.writer import TRANSIENT_STATUSES
from tests.harvest.conftest import Reply
from tests.harvest.test_net import FakeClock

JPEG = {"Content-Type": "image/jpeg"}


def encode(size: tuple[int, int] = (40, 30), fmt: str = "JPEG", color: tuple[int, int, int] = (200, 40, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def bomb_png(side: int = 3000) -> bytes:
    """A few KB of PNG that decodes to side x side pixels."""
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def test_config(**overrides: object) -> FetchConfig:
    settings: dict[str, object] = dict(
        workers=2, host_rate=0, timeout=2.0, retries=2, backoff=0.01, max_retry_wait=5.0, min_side=8,
        allow_private_hosts=True, show_progress=False,
    )  # fmt: skip
    settings.update(overrides)
    return FetchConfig(**settings)  # type: ignore[arg-type]


test_config.__test__ = False  # a helper, not a test


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the downloader's back-off sleeps instead of sleeping (time.sleep of every other module is untouched)."""
    recorded: list[float] = []
    fake_time = types.SimpleNamespace(sleep=recorded.append, monotonic=time.monotonic)
    monkeypatch.setattr(fetch_module, "time", fake_time)
    return recorded


@pytest.fixture
def fetch() -> Callable[..., FetchResult]:
    """fetch_one with a fresh session, robots cache and limiter; keyword arguments override the test config."""

    def run(url: str, **overrides: object) -> FetchResult:
        config = test_config(**overrides)
        session = make_session(config.user_agent, config.allow_private_hosts, config.timeout)
        limiter = HostRateLimiter(config.host_rate)
        with session:
            return fetch_one(session, url, config, RobotsCache(limiter), limiter)

    return run


def test_a_jpeg_is_fetched_with_its_size_format_and_bytes(web, fetch) -> None:
    body = encode((40, 30))
    url = web.route("/img/a.jpg", body=body, headers=JPEG)
    result = fetch(url)
    assert (result.status, result.check.format, result.check.width, result.check.height) == ("ok", "JPEG", 40, 30)
    assert result.data == body and result.size == len(body) and result.final_url == url


def test_the_type_comes_from_magic_bytes_not_the_content_type_header(web, fetch) -> None:
    png_as_text = web.route("/png-as-text", body=encode(fmt="PNG"), headers={"Content-Type": "text/plain"})
    html_as_jpeg = web.route("/html-as-jpeg", body=b"<!doctype html><p>not found</p>", headers=JPEG)
    assert (fetch(png_as_text).status, fetch(png_as_text).check.format) == ("ok", "PNG")
    html = fetch(html_as_jpeg)
    assert html.status == "not_image" and "<!doctype" in html.error


def test_404_is_http_404_and_not_retried(web, fetch) -> None:
    url = web.route("/missing.jpg", status=404, body=b"gone")
    assert fetch(url).status == "http_404"
    assert web.hits("/missing.jpg") == 1


def test_500_is_retried_then_recorded_as_http_500(web, fetch, sleeps) -> None:
    url = web.route("/broken.jpg", status=500, body=b"oops")
    result = fetch(url, retries=2, backoff=0.5)
    assert result.status == "http_500" and "3 tries" in result.error
    assert web.hits("/broken.jpg") == 3
    assert sleeps == [0.5, 1.0]  # exponential backoff


def test_503_then_ok_succeeds_on_the_retry(web, fetch, sleeps) -> None:
    url = web.route("/busy.jpg", responses=[Reply(503, b"busy"), Reply(200, encode(), JPEG)])
    assert fetch(url).status == "ok"
    assert web.hits("/busy.jpg") == 2


def test_429_waits_as_long_as_retry_after_says(web, sleeps) -> None:
    url = web.route("/limited.jpg", responses=[Reply(429, b"", {"Retry-After": "1"}), Reply(200, encode(), JPEG)])
    clock = FakeClock()
    limiter = HostRateLimiter(0, clock=clock, sleep=clock.sleep)
    with make_session(allow_private_hosts=True) as session:
        assert fetch_one(session, url, test_config(backoff=0.01), RobotsCache(), limiter).status == "ok"
    assert clock.sleeps == [1.0] and sleeps == []  # waited in the host's limiter, where every worker waits
    assert web.hits("/limited.jpg") == 2


def test_a_retry_after_holds_the_host_for_the_other_urls_even_when_this_one_gives_up(web, sleeps) -> None:
    first = web.route("/first.jpg", status=503, headers={"Retry-After": "30"})
    second = web.route("/second.jpg", body=encode(), headers=JPEG)
    clock = FakeClock()
    limiter = HostRateLimiter(0, clock=clock, sleep=clock.sleep)
    config = test_config(retries=0, max_retry_wait=60.0)
    with make_session(allow_private_hosts=True) as session:
        assert fetch_one(session, first, config, RobotsCache(), limiter).status == "http_503"
        assert clock.sleeps == []
        assert fetch_one(session, second, config, RobotsCache(), limiter).ok
    assert clock.sleeps == [30.0]


def test_a_retry_after_over_the_cap_holds_the_host_for_the_cap_only(web, sleeps) -> None:
    first = web.route("/first.jpg", status=429, headers={"Retry-After": "3600"})
    clock = FakeClock()
    limiter = HostRateLimiter(0, clock=clock, sleep=clock.sleep)
    with make_session(allow_private_hosts=True) as session:
        fetch_one(session, first, test_config(max_retry_wait=5.0), RobotsCache(), limiter)
    assert limiter.wait(first) == 5.0


def test_retry_after_over_the_cap_gives_up_instead_of_waiting(web, fetch, sleeps) -> None:
    url = web.route("/later.jpg", responses=[Reply(503, b"", {"Retry-After": "3600"}), Reply(200, encode(), JPEG)])
    result = fetch(url, max_retry_wait=5.0)
    assert result.status == "http_503" and "3600" in result.error
    assert sleeps == [] and web.hits("/later.jpg") == 1


def test_a_truncated_jpeg_is_truncated(web, fetch) -> None:
    body = encode((64, 64))
    url = web.route("/cut.jpg", body=body[: len(body) // 2], headers=JPEG)
    assert fetch(url).status == "truncated"


def test_a_connection_closed_before_content_length_is_truncated(web, fetch) -> None:
    body = encode((64, 64))
    headers = {"Content-Type": "image/jpeg", "Content-Length": str(len(body) + 500), "Connection": "close"}
    url = web.route("/short.jpg", body=body, headers=headers)
    assert fetch(url, retries=0).status == "truncated"


def test_a_body_over_max_bytes_is_too_large(web, fetch) -> None:
    url = web.route("/huge.jpg", body=encode((400, 400), color=(1, 2, 3)) + b"\0" * 5000, headers=JPEG)
    result = fetch(url, max_bytes=4096)
    assert result.status == "too_large" and "4096" in result.error


def test_a_decompression_bomb_is_refused(web, fetch) -> None:
    url = web.route("/bomb.png", body=bomb_png(3000), headers={"Content-Type": "image/png"})
    result = fetch(url, max_pixels=1_000_000)
    assert result.status == "decompression_bomb" and result.data is None


def test_a_picture_under_min_side_is_too_small(web, fetch) -> None:
    url = web.route("/thumb.jpg", body=encode((20, 12)), headers=JPEG)
    result = fetch(url, min_side=16)
    assert (result.status, result.check.width, result.check.height) == ("too_small", 20, 12)


def test_a_response_slower_than_the_timeout_is_timeout(web, fetch) -> None:
    def slow(_request: object) -> Reply:
        time.sleep(1.0)
        return Reply(200, encode(), JPEG)

    url = web.route("/slow.jpg", handler=slow)
    result = fetch(url, timeout=0.2, retries=0)
    assert result.status == "timeout" and "0.2" in result.error


def test_a_redirect_loop_stops_after_five_redirects(web, fetch) -> None:
    web.route("/loop-a", status=302, headers={"Location": "/loop-b"})
    url = web.route("/loop-b", status=302, headers={"Location": "/loop-a"})
    result = fetch(url)
    assert result.status == "too_many_redirects"
    assert web.hits("/loop-a") + web.hits("/loop-b") == 6  # the first request and five redirects


def test_a_redirect_chain_records_the_final_url(web, fetch) -> None:
    final = web.route("/real.jpg", body=encode(), headers=JPEG)
    web.route("/hop2", status=301, headers={"Location": final})
    url = web.route("/hop1", status=307, headers={"Location": "/hop2"})
    result = fetch(url)
    assert (result.status, result.final_url) == ("ok", final)


def test_robots_txt_disallow_is_honoured_unless_ignored(web, fetch) -> None:
    web.route("/robots.txt", body="User-agent: *\nDisallow: /private/\n", headers={"Content-Type": "text/plain"})
    url = web.route("/private/a.jpg", body=encode(), headers=JPEG)
    assert fetch(url).status == "robots"
    assert web.hits("/private/a.jpg") == 0
    assert fetch(url, ignore_robots=True).status == "ok"


def test_every_redirect_hop_is_checked_against_robots(web, fetch) -> None:
    web.route("/robots.txt", body="User-agent: crowdrank\nDisallow: /private/\n")
    web.route("/private/b.jpg", body=encode(), headers=JPEG)
    url = web.route("/public/b.jpg", status=302, headers={"Location": "/private/b.jpg"})
    result = fetch(url)
    assert result.status == "robots" and result.final_url.endswith("/private/b.jpg")
    assert web.hits("/private/b.jpg") == 0


@pytest.mark.parametrize(
    ("tag", "status"), [("noai", "noai"), ("noimageai, noarchive", "noai"), ("otherbot: noai", "ok")]
)
def test_x_robots_tag_noai_is_honoured(web, fetch, tag: str, status: str) -> None:
    url = web.route("/tagged.jpg", body=encode(), headers={"Content-Type": "image/jpeg", "X-Robots-Tag": tag})
    assert fetch(url).status == status


def test_a_refused_connection_is_connection_error(fetch) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = fetch(f"http://127.0.0.1:{port}/a.jpg", retries=1, backoff=0.01, ignore_robots=True)
    assert result.status == "connection_error" and "2 tries" in result.error


def free_port() -> int:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_host_whose_robots_txt_cannot_be_reached_is_a_retryable_connection_error_not_a_refusal(fetch) -> None:
    port = free_port()
    result = fetch(f"http://127.0.0.1:{port}/a.jpg", retries=0)
    assert result.status == "connection_error" and result.status in TRANSIENT_STATUSES
    assert f"robots.txt of http://127.0.0.1:{port} could not be fetched" in result.error
    assert "127.0.0.1 refused the connection" in result.error and "Max retries" not in result.error
    assert "disallows" not in result.error


def test_a_robots_txt_answering_5xx_still_refuses_and_says_why(web, fetch) -> None:
    web.route("/robots.txt", status=503)
    url = web.route("/a.jpg", body=encode(), headers=JPEG)
    result = fetch(url)
    assert result.status == "robots" and "answered HTTP 503" in result.error
    assert web.hits("/a.jpg") == 0


def test_private_hosts_are_refused_by_default_without_a_request(web, fetch) -> None:
    url = web.route("/inside.jpg", body=encode(), headers=JPEG)
    result = fetch(url, allow_private_hosts=False)
    assert result.status == "blocked_host" and "--allow-private-hosts" in result.error
    assert web.hits("/inside.jpg") == 0 and web.hits("/robots.txt") == 0


def test_a_url_that_is_not_http_is_bad_url(fetch) -> None:
    assert fetch("ftp://example.org/a.jpg").status == "bad_url"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::1/a.jpg", "Invalid IPv6 URL"),
        ("http://127.0.0.1:99999/a.jpg", "Port out of range"),
        ("http://127.0.0.1:abc/a.jpg", "Port could not be cast"),
        (f"http://{'a' * 64}.example/a.jpg", "label empty or too long"),
        (f"http://{'.'.join(['a' * 60] * 5)}/a.jpg", "over DNS's 253"),
        ("http://exa mple.example/a.jpg", "invalid character"),
        ("http:///a.jpg", "with a host"),
    ],
)
def test_a_malformed_url_is_bad_url_with_the_reason(fetch, url: str, why: str) -> None:
    result = fetch(url)
    assert result.status == "bad_url" and why in result.error


def test_the_user_agent_names_crowdrank_and_can_be_replaced(web, fetch) -> None:
    url = web.route("/ua.jpg", body=encode(), headers=JPEG)
    fetch(url)
    fetch(url, user_agent="my-lab-bot/2.0 (+mailto:lab@example.org)")
    agents = [r.headers.get("User-Agent", "") for r in web.requests if r.path == "/ua.jpg"]
    assert agents[0].startswith("crowdrank/") and "crowd-counting" in agents[0]
    assert agents[1] == "my-lab-bot/2.0 (+mailto:lab@example.org)"


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("workers", 0, "--workers"),
        ("timeout", 0, "--timeout"),
        ("max_bytes", 10, "--max-bytes"),
        ("host_rate", -1, "--host-rate"),
        ("host_rate", float("nan"), "--host-rate"),
        ("host_rate", float("inf"), "--host-rate"),
        ("host_rate", 1e-300, "--host-rate"),  # one request per 1e300 s: time.sleep overflowed
        ("max_retry_wait", float("inf"), "--max-retry-wait"),  # a Retry-After of 1e20 s was slept: OverflowError
        ("max_retry_wait", 1e300, "--max-retry-wait"),
        ("max_retry_wait", float("nan"), "--max-retry-wait"),
    ],
)
def test_bad_config_values_name_the_flag(field: str, value: object, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        FetchConfig(**{field: value})  # type: ignore[arg-type]

"""fetch_one against servers that misbehave below HTTP's level: trickled bodies, repeated headers, odd redirects."""

from __future__ import annotations

import gzip
import time
import tracemalloc

import pytest

from harvest.fetch import fetch_one
from harvest.net import HostRateLimiter, RobotsCache, make_session
from harvest.writer import TRANSIENT_STATUSES
from tests.harvest.test_fetch import encode, test_config


def _fetch(url: str, **overrides: object):
    config = test_config(**overrides)
    limiter = HostRateLimiter(config.host_rate)
    with make_session(config.user_agent, config.allow_private_hosts, config.timeout) as session:
        return fetch_one(session, url, config, RobotsCache(limiter, timeout=config.timeout), limiter)


def _head(length: int, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


def test_a_body_trickled_byte_by_byte_is_cut_off_at_the_body_deadline(raw_web) -> None:
    # Each byte comes well within --timeout, so no single read times out; the whole body would take 50 s.
    url = raw_web.route("/trickle.jpg", [(0.0, _head(1000))] + [(0.05, b"x")] * 1000)
    started = time.monotonic()
    result = _fetch(url, timeout=0.3, retries=0)
    elapsed = time.monotonic() - started
    assert result.status == "timeout" and "5 x --timeout" in (result.error or "")
    assert elapsed < 3.0  # the deadline is 5 x 0.3 s, plus at most one read's timeout


def test_a_robots_txt_trickled_byte_by_byte_is_a_timeout_not_a_hang(raw_web) -> None:
    rules = b"User-agent: *\nDisallow: /private/\n" * 40
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(rules)}\r\n\r\n".encode()
    raw_web.route("/robots.txt", [(0.0, head)] + [(0.05, bytes([b])) for b in rules])
    started = time.monotonic()
    result = _fetch(raw_web.base_url + "/a.jpg", timeout=0.3, retries=0)
    assert result.status == "timeout" and "robots.txt" in (result.error or "")
    assert time.monotonic() - started < 3.0
    assert raw_web.hits("/a.jpg") == 0  # nothing is fetched from a host whose robots.txt could not be read


@pytest.mark.parametrize("layers", [1, 2])
def test_a_gzip_bomb_is_too_large_without_inflating_it_in_memory(web, layers: int) -> None:
    body = b"\0" * (64 * 1024 * 1024)  # 64 MiB of zeros: gzipped once 64 KiB, twice about 300 bytes
    for _ in range(layers):
        body = gzip.compress(body)
    encoding = ", ".join(["gzip"] * layers)
    url = web.route("/bomb.jpg", body=body, headers={"Content-Type": "image/jpeg", "Content-Encoding": encoding})
    tracemalloc.start()
    try:
        result = _fetch(url, max_bytes=1024 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status == "too_large"
    assert peak < 16 * 1024 * 1024  # a bounded inflater holds a few pieces, never the 64 MiB


def test_pictures_and_robots_txt_are_asked_for_uncompressed(web) -> None:
    web.route("/robots.txt", body=b"User-agent: *\nAllow: /\n")
    url = web.route("/a.jpg", body=encode(), headers={"Content-Type": "image/jpeg"})
    assert _fetch(url).ok
    asked = {r.path: r.headers.get("Accept-Encoding") for r in web.requests}
    assert asked == {"/robots.txt": "identity", "/a.jpg": "identity"}


def test_an_unscoped_x_robots_tag_line_after_a_scoped_one_still_applies(raw_web) -> None:
    # Two header lines; requests joins them into "googlebot: noindex, noai", where noai would look googlebot's.
    picture = encode()
    head = _head(len(picture), "X-Robots-Tag: googlebot: noindex\r\nX-Robots-Tag: noai\r\n")
    result = _fetch(raw_web.route("/a.jpg", [(0.0, head + picture)]))
    assert result.status == "noai"


def test_a_scope_on_one_x_robots_tag_line_does_not_reach_the_next_line(raw_web) -> None:
    picture = encode()
    head = _head(len(picture), "X-Robots-Tag: crowdrank: noarchive\r\nX-Robots-Tag: googlebot: noimageai\r\n")
    assert _fetch(raw_web.route("/a.jpg", [(0.0, head + picture)])).ok


def test_a_robots_txt_answering_429_is_no_licence_to_crawl_and_is_retried_later(web) -> None:
    web.route("/robots.txt", status=429, headers={"Retry-After": "0"})
    url = web.route("/a.jpg", body=encode(), headers={"Content-Type": "image/jpeg"})
    result = _fetch(url)
    assert result.status == "http_429" and "robots.txt" in (result.error or "")
    assert result.status in TRANSIENT_STATUSES  # --retry-failed asks again
    assert web.hits("/a.jpg") == 0


@pytest.mark.parametrize("location", ["http://[::1/a.jpg", "http://a.example:99999/a.jpg", "ftp://a.example/a.jpg"])
def test_a_redirect_to_a_url_no_request_can_be_made_for_is_bad_url(web, location: str) -> None:
    result = _fetch(web.route("/moved.jpg", status=302, headers={"Location": location}))
    assert result.status == "bad_url", result.error


def test_a_rule_cut_by_the_512_kib_robots_txt_cap_is_dropped_not_read_short(web) -> None:
    padding = b"User-agent: *\nDisallow: /\n" + b"#" * (512 * 1024 - 35) + b"\n"  # 8 bytes short of the cap
    web.route("/robots.txt", body=padding + b"Allow: /public/photos/\n")  # the cap cuts it to "Allow: /"
    assert _fetch(web.url("/a.jpg")).status == "robots"


def test_robots_txt_is_read_up_to_512_kib_and_not_waited_for_beyond(raw_web) -> None:
    rules = b"User-agent: *\nDisallow: /private/\n" + b"# padding padding padding padding padding\n" * 16000
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000000\r\n\r\n"
    raw_web.route("/robots.txt", [(0.0, head + rules), (30.0, b"# the rest never comes in time\n")])
    started = time.monotonic()
    result = _fetch(raw_web.base_url + "/private/a.jpg", timeout=1.0)
    assert result.status == "robots"  # the rules in the first 512 KiB were read and applied
    assert time.monotonic() - started < 4.0  # not the 5 s body deadline: reading stopped at the cap


def test_a_declared_length_over_max_bytes_is_refused_before_the_body_is_read(web) -> None:
    url = web.route("/huge.jpg", body=b"\xff\xd8\xff" + b"\0" * 100, headers={"Content-Length": "50000000"})
    result = _fetch(url, max_bytes=1024 * 1024)
    assert result.status == "too_large" and "Content-Length 50000000" in (result.error or "")


def test_a_body_that_stalls_longer_than_the_timeout_is_timeout(raw_web) -> None:
    url = raw_web.route("/stall.jpg", [(0.0, _head(1000) + b"\xff\xd8\xff"), (3.0, b"\0" * 997)])
    result = _fetch(url, timeout=0.3, retries=0)
    assert result.status == "timeout" and "stalled" in (result.error or "")


@pytest.mark.parametrize("status", [300, 302, 307])
def test_a_redirect_without_location_is_its_http_status(web, status: int) -> None:
    result = _fetch(web.route("/nowhere.jpg", status=status, body=b"moved somewhere"))
    assert result.status == f"http_{status}"


def test_a_certificate_that_does_not_verify_is_a_tls_error_tried_once(tls_web) -> None:
    result = _fetch(tls_web.base_url + "/a.jpg", ignore_robots=True, retries=2)
    assert result.status == "tls_error"
    assert "self-signed certificate" in (result.error or "") and tls_web.base_url in (result.error or "")
    # The host's origin and OpenSSL's own words, not the URL and the whole '[SSL: ...] ... (_ssl.c:...)' text.
    assert f"the TLS certificate of {tls_web.base_url} does not verify (self-signed certificate);" in result.error
    assert tls_web.connections == 1  # the same certificate would come back on every retry
    assert "tls_error" in TRANSIENT_STATUSES  # but sites renew certificates: --retry-failed asks again


def test_a_robots_txt_behind_a_certificate_that_does_not_verify_is_a_tls_error(tls_web) -> None:
    result = _fetch(tls_web.base_url + "/a.jpg", retries=2)
    assert result.status == "tls_error" and "does not verify" in (result.error or "")
    assert tls_web.connections == 1  # robots.txt was asked once; the picture never


def test_a_tls_connection_dropped_before_the_handshake_is_retried_as_a_connection_error(tls_web) -> None:
    tls_web.hang_up = True
    result = _fetch(tls_web.base_url + "/a.jpg", ignore_robots=True, retries=2)
    assert result.status == "connection_error"
    assert tls_web.connections == 3
    # No short reason is known for it: the innermost cause, not urllib3's 'HTTPSConnectionPool(...): Max retries'.
    assert (result.error or "").startswith("SSLEOFError: ") and "Max retries" not in (result.error or "")


def test_a_picture_on_a_port_nothing_listens_on_is_a_connection_error_that_says_so() -> None:
    from tests.harvest.test_fetch import free_port

    result = _fetch(f"http://127.0.0.1:{free_port()}/a.jpg", ignore_robots=True, retries=1)
    assert result.status == "connection_error"
    assert result.error == "127.0.0.1 refused the connection (nothing listening on that port) (2 tries)"

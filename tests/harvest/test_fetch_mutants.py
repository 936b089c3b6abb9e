"""fetch_one's byte cap at its exact boundary, for declared and undeclared lengths (hand-made mutants survived)."""

from __future__ import annotations

from harvest.fetch import fetch_one
from harvest.net import HostRateLimiter, RobotsCache, make_session
from tests.harvest.conftest import Reply
from tests.harvest.test_fetch import JPEG, encode, test_config
from tests.harvest.test_fetch_edges import _fetch
from tests.harvest.test_net import FakeClock

CAP = 4096


def _jpeg_of(size: int) -> bytes:
    body = encode((32, 32))
    assert len(body) < size
    return body + b"\0" * (size - len(body))


def test_a_declared_length_one_byte_over_max_bytes_is_refused_from_the_header(web) -> None:
    url = web.route("/over.jpg", body=_jpeg_of(CAP + 1), headers={"Content-Type": "image/jpeg"})
    result = _fetch(url, max_bytes=CAP)
    assert result.status == "too_large" and f"Content-Length {CAP + 1}" in (result.error or "")


def test_a_body_of_exactly_max_bytes_is_not_too_large(web) -> None:
    url = web.route("/exact.jpg", body=_jpeg_of(CAP), headers={"Content-Type": "image/jpeg"})
    assert _fetch(url, max_bytes=CAP).status == "ok"


def test_a_body_without_content_length_is_cut_one_byte_over_max_bytes(raw_web) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n"
    over = raw_web.route("/over.jpg", [(0.0, head + _jpeg_of(CAP + 1))])
    result = _fetch(over, max_bytes=CAP, retries=0)
    assert result.status == "too_large" and "body is over" in (result.error or "")
    exact = raw_web.route("/exact.jpg", [(0.0, head + _jpeg_of(CAP))])
    assert _fetch(exact, max_bytes=CAP, retries=0).status == "ok"


def _fetch_with_fake_clock(url: str, **overrides: object):
    clock = FakeClock()
    limiter = HostRateLimiter(0, clock=clock, sleep=clock.sleep)
    with make_session(allow_private_hosts=True) as session:
        return fetch_one(session, url, test_config(**overrides), RobotsCache(), limiter), clock


def test_a_retry_after_one_second_over_the_cap_gives_up_and_one_at_the_cap_is_waited_out(web) -> None:
    over = web.route("/over.jpg", responses=[Reply(503, b"", {"Retry-After": "6"}), Reply(200, encode(), JPEG)])
    result, clock = _fetch_with_fake_clock(over, max_retry_wait=5.0)
    assert result.status == "http_503" and web.hits("/over.jpg") == 1
    at_cap = web.route("/cap.jpg", responses=[Reply(503, b"", {"Retry-After": "5"}), Reply(200, encode(), JPEG)])
    result, clock = _fetch_with_fake_clock(at_cap, max_retry_wait=5.0)
    assert result.status == "ok" and clock.sleeps == [5.0] and web.hits("/cap.jpg") == 2

"""The polite, guarded session: private-host guard, User-Agent, default timeout, rate limits, robots, headers."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harvest.host_guard import BlockedHostError, is_blocked_address
from harvest.net import (
    HostRateLimiter,
    RobotsCache,
    RobotsUnreachableError,
    host_key,
    make_session,
    network_failure,
    parse_retry_after,
    unreachable,
)
from harvest.robots import parse_robots, x_robots_refusal
from tests.harvest.conftest import Reply


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("192.168.0.10", True),
        ("172.16.5.5", True),
        ("169.254.169.254", True),  # cloud metadata, link-local
        ("::1", True),
        ("fe80::1%eth0", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped loopback
        ("0.0.0.0", True),
        ("100.64.0.1", True),  # carrier-grade NAT, shared address space: not private, not global either
        ("100.100.100.200", True),  # Alibaba Cloud's metadata service sits in that block
        ("198.18.0.1", True),  # benchmarking networks
        ("93.184.216.34", False),
        ("::ffff:93.184.216.34", False),  # IPv4-mapped public address: judged as the IPv4 address it carries
        ("2606:4700:4700::1111", False),
    ],
)
def test_is_blocked_address_refuses_private_loopback_and_link_local(address: str, blocked: bool) -> None:
    assert is_blocked_address(address) is blocked


def test_the_default_session_refuses_loopback_before_sending_a_request(web) -> None:
    url = web.route("/secret", body=b"internal")
    with make_session() as session, pytest.raises(BlockedHostError, match="--allow-private-hosts"):
        session.get(url)
    assert web.hits("/secret") == 0


def test_allow_private_hosts_lets_the_session_reach_loopback(web) -> None:
    url = web.route("/open", body=b"hello")
    with make_session(allow_private_hosts=True) as session:
        assert session.get(url).content == b"hello"


def test_the_session_sends_a_descriptive_user_agent_or_the_given_one(web) -> None:
    url = web.route("/ua", body=b"")
    with make_session(allow_private_hosts=True) as session:
        session.get(url)
    with make_session("lab-crawler/1.0", allow_private_hosts=True) as session:
        session.get(url)
    first, second = (r.headers["User-Agent"] for r in web.requests if r.path == "/ua")
    assert first.startswith("crowdrank/0.1.0 (+http") and "robots.txt" in first
    assert second == "lab-crawler/1.0"


def test_the_session_follows_at_most_five_redirects(web) -> None:
    url = web.route("/loop", status=302, headers={"Location": "/loop"})
    with make_session(allow_private_hosts=True) as session, pytest.raises(requests.TooManyRedirects):
        session.get(url)
    assert web.hits("/loop") == 6


def test_the_session_ignores_proxies_from_the_environment(web, monkeypatch: pytest.MonkeyPatch) -> None:
    # Behind a proxy the guard would check the proxy's address, not the host's: proxies are never used.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    url = web.route("/direct", body=b"direct")
    with make_session(allow_private_hosts=True) as session:
        assert session.get(url).content == b"direct"


def test_the_session_applies_its_default_timeout(web) -> None:
    url = web.route("/slow", handler=lambda _r: time.sleep(1.0) or Reply(200, b"late"))
    with make_session(allow_private_hosts=True, timeout=0.2) as session, pytest.raises(requests.Timeout):
        session.get(url)


class FakeClock:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_rate_limiter_spaces_requests_to_one_host_only() -> None:
    clock = FakeClock()
    limiter = HostRateLimiter(4.0, clock=clock, sleep=clock.sleep)
    waits = [limiter.wait("http://a.example/1.jpg") for _ in range(3)]
    other = limiter.wait("http://b.example/1.jpg")
    assert waits == [0.0, 0.25, 0.25]
    assert other == 0.0
    assert limiter.wait("HTTP://A.EXAMPLE/2.jpg") == 0.25  # same host, other spelling


def test_a_hold_makes_every_later_request_to_the_host_wait_it_out() -> None:
    clock = FakeClock()
    limiter = HostRateLimiter(4.0, clock=clock, sleep=clock.sleep)
    limiter.wait("http://a.example/1.jpg")
    limiter.hold("http://a.example/1.jpg", 5.0)
    assert limiter.wait("http://a.example/2.jpg") == 5.0  # another URL of the host, as another worker asks it
    assert limiter.wait("http://a.example/3.jpg") == 0.25
    assert limiter.wait("http://b.example/1.jpg") == 0.0
    limiter.hold("http://b.example/1.jpg", 1.0)
    limiter.hold("http://b.example/1.jpg", 0.5)  # a shorter hold never shortens one in force
    assert limiter.wait("http://b.example/2.jpg") == 1.0


def test_a_host_may_ask_for_a_longer_interval_but_not_a_shorter_one() -> None:
    clock = FakeClock()
    limiter = HostRateLimiter(4.0, clock=clock, sleep=clock.sleep)
    limiter.slow_down("http://a.example/", 2.0)
    limiter.slow_down("http://b.example/", 0.01)
    assert [limiter.wait("http://a.example/x.jpg") for _ in range(3)] == [0.0, 2.0, 2.0]
    assert [limiter.wait("http://b.example/x.jpg") for _ in range(3)] == [0.0, 0.25, 0.25]


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://a.example/x.jpg", "http://a.example"),
        ("HTTP://A.Example:80/x.jpg", "http://a.example"),  # the default port is no other host
        ("http://user:pw@a.example/x.jpg", "http://a.example"),
        ("https://a.example:443/x.jpg", "https://a.example"),
        ("https://a.example:8443/x.jpg", "https://a.example:8443"),
        ("http://a.example:443/x.jpg", "http://a.example:443"),
        ("http://[2001:DB8::1]:8080/x.jpg", "http://[2001:db8::1]:8080"),
    ],
)
def test_host_key_spells_each_origin_one_way(url: str, key: str) -> None:
    assert host_key(url) == key


def test_a_rate_of_zero_never_waits() -> None:
    clock = FakeClock()
    limiter = HostRateLimiter(0, clock=clock, sleep=clock.sleep)
    assert [limiter.wait("http://a.example/") for _ in range(5)] == [0.0] * 5 and clock.sleeps == []


def test_delay_says_how_long_until_the_hosts_next_slot_and_reserves_nothing() -> None:
    clock = FakeClock()
    limiter = HostRateLimiter(4.0, clock=clock, sleep=clock.sleep)
    assert limiter.delay("http://a.example/1.jpg") == 0.0  # never asked: now
    limiter.wait("http://a.example/1.jpg")
    assert limiter.delay("http://a.example/2.jpg") == 0.25 and limiter.delay("http://a.example/2.jpg") == 0.25
    clock.now += 10.0  # the slot passed long ago: now, not a negative wait
    assert limiter.delay("http://a.example/2.jpg") == 0.0


def test_has_read_says_whether_the_hosts_robots_txt_was_read_or_found_unreadable(web) -> None:
    from tests.harvest.test_fetch import free_port

    robots = RobotsCache()
    unreachable = f"http://127.0.0.1:{free_port()}/a.jpg"
    assert not robots.has_read(web.url("/a.jpg")) and not robots.has_read(unreachable)
    with make_session(allow_private_hosts=True) as session:
        assert robots.allowed(web.url("/a.jpg"), session) is True  # no robots.txt: 404
        with pytest.raises(RobotsUnreachableError):
            robots.allowed(unreachable, session)
    assert robots.has_read(web.url("/b.jpg")) and robots.has_read(unreachable)
    assert not robots.has_read("http://other.example/a.jpg")


def _raised(error: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise error from inner
    except BaseException as outer:
        return outer


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            _raised(requests.exceptions.ConnectTimeout("pool: Max retries exceeded"), TimeoutError("timed out")),
            "no connection to a.example within the timeout",
        ),
        (
            _raised(
                requests.exceptions.ConnectionError("pool: Max retries exceeded"), ConnectionResetError(104, "reset")
            ),
            "ConnectionResetError: [Errno 104] reset",  # no short reason known: the innermost cause, not the wrapper
        ),
    ],
)
def test_network_failure_names_the_cause_not_the_wrapper(error: BaseException, reason: str) -> None:
    assert network_failure(error, "https://a.example/x.jpg") == reason


def test_robots_rules_are_applied_per_path_and_fetched_once_per_host(web) -> None:
    web.route("/robots.txt", body="User-agent: *\nDisallow: /private/\n\nUser-agent: crowdrank\nDisallow: /noai/\n")
    robots = RobotsCache()
    with make_session(allow_private_hosts=True) as session:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda p: robots.allowed(web.url(p), session), ["/a.jpg"] * 8))
        assert answers == [True] * 8
        assert robots.allowed(web.url("/noai/x.jpg"), session) is False
        assert robots.allowed(web.url("/private/x.jpg"), session) is True  # crowdrank has its own group
    assert web.hits("/robots.txt") == 1


@pytest.mark.parametrize(("status", "allowed"), [(404, True), (410, True), (500, False), (503, False)])
def test_robots_4xx_allows_all_and_5xx_disallows_all(web, status: int, allowed: bool) -> None:
    web.route("/robots.txt", status=status, body=b"")
    with make_session(allow_private_hosts=True) as session:
        assert RobotsCache().allowed(web.url("/a.jpg"), session) is allowed


@pytest.mark.parametrize(
    ("header", "refusal"),
    [
        ("noai", "noai"),
        ("NoImageAI", "noimageai"),
        ("noarchive, noindex", "noindex"),
        ("none", "none"),
        ("noarchive", None),
        ("googlebot: noindex", None),
        ("googlebot: noindex, crowdrank: noai", "noai"),
        ("crowdrank: noimageai", "noimageai"),
        ("unavailable_after: 25 Jun 2030 15:00:00 PST", None),
        ("unavailable_after: 25 Jun 2030 15:00:00 PST, noai", "noai"),  # a valued directive is no crawler scope
        (None, None),
    ],
)
def test_x_robots_tag_refusals(header: str | None, refusal: str | None) -> None:
    assert x_robots_refusal(header) == refusal


def test_x_robots_tag_scopes_end_with_their_header_line() -> None:
    assert x_robots_refusal(["googlebot: noindex", "noai"]) == "noai"
    assert x_robots_refusal(["crowdrank: noarchive", "googlebot: noimageai"]) is None
    assert x_robots_refusal(["noarchive", "crowdrank: none"]) == "none"
    assert x_robots_refusal([]) is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0  # in the past: go now
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 -0000", now) == 30.0  # a date without zone is UTC
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "-5", "1.5", "0x10"])
def test_retry_after_that_is_not_ascii_delta_seconds_nor_a_date_is_ignored(value: str) -> None:
    """A latin-1 header byte like b'\\xb2' decodes to '²', which str.isdigit takes and float() refused: the fetch
    of that URL ended as an internal_error row instead of an ordinary retry."""
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(
    ("robots_txt", "path", "allowed"),
    [
        ("User-agent: *\nDisallow: /*.jpg$\n", "/photos/a.jpg", False),  # wildcard and end anchor
        ("User-agent: *\nDisallow: /*.jpg$\n", "/photos/a.jpg?w=640", True),  # $ anchors the whole path and query
        ("User-agent: *\nDisallow: /photos/*/full\n", "/photos/12/full/a.png", False),
        ("User-agent: *\nDisallow: /*?\n", "/a.jpg?w=1", False),
        ("User-agent: *\nDisallow: /*?\n", "/a.jpg", True),
        ("User-agent: *\nAllow: /\nDisallow: /private/\n", "/private/a.jpg", False),  # longest match, not first
        ("User-agent: *\nDisallow: /\nAllow: /images/\n", "/images/a.jpg", True),
        ("User-agent: *\nDisallow: /\nAllow: /images/\n", "/other/a.jpg", False),
        ("User-agent: *\nDisallow: /a\nAllow: /a\n", "/a.jpg", True),  # a tie goes to allow
        ("User-agent: crowdrank\nDisallow: /a/\n\nUser-agent: crowdrank\nDisallow: /b/\n", "/b/x.jpg", False),
        ("User-agent: googlebot\nUser-agent: crowdrank\nDisallow: /both/\n", "/both/x.jpg", False),
        ("User-agent: crowd\nDisallow: /\n\nUser-agent: *\nAllow: /\n", "/x.jpg", True),  # not a substring match
        ("User-agent: CrowdRank/1.0\nDisallow: /\n", "/x.jpg", False),  # the product token, case-insensitive
        ("User-agent: crowdrank\nAllow: /\n\nUser-agent: *\nDisallow: /\n", "/x.jpg", True),  # ours beats *
        ("User-agent: *\nDisallow: /%7Ejoe/\n", "/~joe/a.jpg", False),  # an unreserved escape is decoded
        ("User-agent: *\nDisallow: /~joe/\n", "/%7ejoe/a.jpg", False),
        ("User-agent: *\nDisallow: /fotos/ñ/\n", "/fotos/%C3%B1/a.jpg", False),  # UTF-8 in a rule is escaped
        ("User-agent: *\nDisallow: /a%2fb\n", "/a%2Fb/c.jpg", False),  # a reserved escape stays, in one case
        ("Disallow: /\nUser-agent: *\nAllow: /x\n", "/a.jpg", True),  # a rule before any group is ignored
        ("User-agent: *\nDisallow:\n", "/a.jpg", True),  # an empty disallow matches nothing
        ("\ufeffUser-agent: *  # everyone\nDisallow: /p  # private\n", "/p/a.jpg", False),
        ("User-agent: *\nDisallow: /\n", "/robots.txt", True),
        ("User-agent: *\nDisallow: /private*$\n", "/private", False),  # a star may match nothing, before $
    ],
)
def test_robots_rules_follow_rfc_9309(robots_txt: str, path: str, allowed: bool) -> None:
    assert parse_robots(robots_txt, "crowdrank").allowed(f"http://a.example{path}") is allowed


def test_robots_crawl_delay_is_read_from_the_chosen_groups() -> None:
    text = "User-agent: crowdrank\nCrawl-delay: 4\nDisallow: /a/\n\nUser-agent: *\nCrawl-delay: 30\n"
    assert parse_robots(text, "crowdrank").crawl_delay == 4.0
    assert parse_robots(text, "otherbot").crawl_delay == 30.0
    for junk in ("soon", "-5", "nan", "inf"):
        assert parse_robots(f"User-agent: *\nCrawl-delay: {junk}\n", "crowdrank").crawl_delay is None


@pytest.mark.parametrize(("delay", "spacing"), [("2", 2.0), ("3600", 30.0)])
def test_a_crawl_delay_spaces_the_hosts_requests_up_to_a_cap(web, delay: str, spacing: float) -> None:
    web.route("/robots.txt", body=f"User-agent: *\nCrawl-delay: {delay}\n")
    clock = FakeClock()
    limiter = HostRateLimiter(4.0, clock=clock, sleep=clock.sleep)
    with make_session(allow_private_hosts=True) as session:
        assert RobotsCache(limiter).allowed(web.url("/a.jpg"), session) is True
    assert [limiter.wait(web.url(f"/{k}.jpg")) for k in range(3)] == [0.25, spacing, spacing]


def test_a_wildcard_rule_refuses_the_download(web) -> None:
    web.route("/robots.txt", body="User-agent: *\nAllow: /\nDisallow: /*.png$\n")
    robots = RobotsCache()
    with make_session(allow_private_hosts=True) as session:
        assert robots.allowed(web.url("/a.jpg"), session) is True
        assert robots.allowed(web.url("/gallery/a.png"), session) is False


def test_a_hostile_wildcard_pattern_is_matched_in_linear_steps() -> None:
    # As a regular expression this backtracks through every way of placing 40 stars in 5,000 characters.
    rules = parse_robots("User-agent: *\nDisallow: /" + "*a" * 40 + "b\n", "crowdrank")
    started = time.monotonic()
    assert rules.allowed("http://a.example/" + "a" * 5000) is True
    assert rules.allowed("http://a.example/" + "a" * 5000 + "b") is False
    assert time.monotonic() - started < 2.0


def test_unreachable_is_none_for_a_listening_port_and_names_why_otherwise(web) -> None:
    import socket

    assert unreachable(web.url("/")) is None
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    assert (
        unreachable(f"http://127.0.0.1:{port}/") == "127.0.0.1 refused the connection (nothing listening on that port)"
    )
    assert unreachable("https://huggingface.co").startswith("cannot resolve huggingface.co (")  # the suite is offline


def test_unreachable_bounds_a_lookup_that_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import threading

    release = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: release.wait(5) and [])
    try:
        assert unreachable("https://slow.test/x", timeout=0.05) == "no connection to slow.test within 0.05 s"
    finally:
        release.set()

    def connect_timeout(*args: object, **kwargs: object) -> None:
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", connect_timeout)
    assert unreachable("https://slow.test/x", timeout=2) == "no connection to slow.test within 2 s"


def test_unreachable_leaves_a_proxied_scheme_to_the_client_unless_the_host_bypasses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert unreachable("https://huggingface.co") is None  # only the proxy knows
    assert unreachable("http://huggingface.co") is not None  # no proxy for http
    monkeypatch.setenv("NO_PROXY", "huggingface.co")
    assert unreachable("https://huggingface.co").startswith("cannot resolve huggingface.co")

"""harvest.net behaviour that hand-made mutants showed unprotected: the robots.txt size cap and per-host intervals."""

from __future__ import annotations

from harvest.net import ROBOTS_MAX_BYTES, HostRateLimiter, RobotsCache, make_session


def test_robots_txt_cut_at_the_size_cap_drops_the_partial_line_that_would_widen_an_allow(web) -> None:
    # "Allow: /public/" straddles the cap; read as its first bytes "Allow: /" it would tie with "Disallow: /" and
    # open every path (allow wins a tie), so the whole cut line must go.
    head = "User-agent: *\nDisallow: /\n"
    line = "Allow: /public/\n"
    padding = ROBOTS_MAX_BYTES - len(head) - len("Allow: /")
    body = head + ("#" * (padding - 1)) + "\n" + line + "Disallow: /never-read/\n"
    assert body.encode()[:ROBOTS_MAX_BYTES].endswith(b"\nAllow: /")
    web.route("/robots.txt", body=body.encode())
    with make_session(allow_private_hosts=True) as session:
        robots = RobotsCache()
        assert robots.allowed(web.url("/private/a.jpg"), session) is False
        assert robots.allowed(web.url("/public/a.jpg"), session) is False  # its line was past the cap


def test_a_host_slowed_down_twice_keeps_the_longer_interval() -> None:
    now = [0.0]
    slept: list[float] = []
    limiter = HostRateLimiter(0, clock=lambda: now[0], sleep=slept.append)
    url = "https://a.example/x.jpg"
    limiter.slow_down(url, 10.0)
    limiter.slow_down(url, 2.0)  # a shorter interval asked later never shortens the host's spacing
    limiter.wait(url)
    limiter.wait(url)
    assert slept == [10.0]
    limiter.wait("https://b.example/y.jpg")  # another host is not slowed down
    assert slept == [10.0]

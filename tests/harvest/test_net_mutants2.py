"""harvest.net behaviour that hand-made mutants survived: a host idle for a while gets no burst of requests."""

from __future__ import annotations

from harvest.net import HostRateLimiter
from tests.harvest.test_net import FakeClock


def test_a_host_idle_for_a_while_gets_its_spacing_back_not_a_burst_of_missed_slots() -> None:
    clock = FakeClock()
    limiter = HostRateLimiter(1.0, clock=clock, sleep=clock.sleep)  # one request a second
    url = "https://a.example/x.jpg"
    limiter.wait(url)
    clock.now += 10.0  # ten slots went unused: they are not owed to the host
    assert limiter.wait(url) == 0.0
    assert limiter.wait(url) == 1.0  # the next request waits a full interval, not a past slot
    assert limiter.wait(url) == 1.0
    assert clock.sleeps == [1.0, 1.0]

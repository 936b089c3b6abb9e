"""run_by_host: URLs handed to workers host by host, so that no worker sleeps on a slow host while others wait."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

from harvest.net import HostRateLimiter
from harvest.schedule import _HostQueues, run_by_host, run_unordered


def _slow_and_fast(limiter: HostRateLimiter) -> list[str]:
    limiter.slow_down("http://slow.test", 0.3)  # as a robots.txt Crawl-delay would
    return [f"http://slow.test/{k}.jpg" for k in range(3)] + [f"http://fast.test/{k}.jpg" for k in range(6)]


def _fetch_with(limiter: HostRateLimiter, done: list[str]):
    """A stand-in for fetch_one: waits for the host's slot as it does, then notes the URL as done (results come
    back from a thread pool in sets, so the order they are yielded in is not the order they finished in)."""
    lock = threading.Lock()

    def fetch(url: str) -> str:
        limiter.wait(url)
        with lock:
            done.append(url)
        return url

    return fetch


def test_workers_fetch_other_hosts_while_one_host_is_slowed_down() -> None:
    limiter = HostRateLimiter(0)
    urls = _slow_and_fast(limiter)
    finished: list[str] = []
    assert sorted(
        run_by_host(_fetch_with(limiter, finished), urls, workers=2, limiter=limiter, short_wait=0.05)
    ) == sorted(urls)
    # The first slow URL goes at once; the second waits 0.3 s for its slot, in one worker, while the other worker
    # fetches every fast URL. Handed out in order, both workers slept on the slow host before any fast URL.
    second_slow = finished.index("http://slow.test/1.jpg")
    assert all(finished.index(url) < second_slow for url in urls if "fast" in url), finished


def test_handed_out_in_order_the_fast_urls_wait_behind_the_slow_host() -> None:
    # The situation run_by_host exists for, shown with the plain thread pool it replaced for downloads.
    limiter = HostRateLimiter(0)
    urls = _slow_and_fast(limiter)
    finished: list[str] = []
    assert sorted(run_unordered(_fetch_with(limiter, finished), urls, workers=2)) == sorted(urls)
    # In order, the two workers take slow 1 and slow 2 (asleep 0.3 and 0.6 s) before any fast URL.
    assert finished.index("http://slow.test/1.jpg") < finished.index("http://fast.test/0.jpg")


def test_a_host_asking_for_a_pause_holds_only_one_worker_until_its_slot_is_near() -> None:
    asked: list[tuple[str, float]] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            asked.append((threading.current_thread().name, seconds))
        time.sleep(seconds)

    limiter = HostRateLimiter(0, sleep=sleep)
    limiter.hold("http://paused.test/", 0.4)  # it answered Retry-After
    urls = [f"http://paused.test/{k}.jpg" for k in range(3)] + [f"http://h{k}.test/a.jpg" for k in range(8)]
    finished: list[str] = []
    assert sorted(
        run_by_host(_fetch_with(limiter, finished), urls, workers=4, limiter=limiter, short_wait=0.05)
    ) == sorted(urls)
    waits = sorted(seconds for _, seconds in asked)
    # One worker sleeps out the pause; the other two paused URLs are handed out only once the slot is at most
    # short_wait away. Handed out in order, three workers would each have slept about 0.4 s.
    assert len(waits) == 3 and waits[-1] > 0.3 and waits[1] <= 0.05, waits
    assert set(finished[-3:]) == {f"http://paused.test/{k}.jpg" for k in range(3)}


def test_every_url_is_handed_out_exactly_once_and_at_most_lookahead_are_read_ahead() -> None:
    rng = random.Random(0)
    urls = [f"http://h{rng.randrange(7)}.test/{k}.jpg" for k in range(400)]
    limiter = HostRateLimiter(0)
    limiter.slow_down("http://h3.test", 0.002)
    read = {"n": 0}
    started: list[int] = []

    def lazy() -> Iterator[str]:
        for url in urls:
            read["n"] += 1
            yield url

    def fetch(url: str) -> str:
        started.append(read["n"])
        limiter.wait(url)
        return url

    finished = list(run_by_host(fetch, lazy(), workers=3, limiter=limiter, lookahead=10, short_wait=0.0))
    assert sorted(finished) == sorted(urls)
    assert max(n - k for k, n in enumerate(started)) <= 10 + 2 * 3  # lookahead + the tasks in flight, no more


def test_an_error_in_a_worker_reaches_the_caller() -> None:
    def fetch(url: str) -> str:
        raise RuntimeError(f"broke on {url}")

    limiter = HostRateLimiter(0)
    try:
        list(run_by_host(fetch, ["http://a.test/1.jpg"], workers=2, limiter=limiter))
    except RuntimeError as e:
        assert "a.test/1.jpg" in str(e)
    else:
        raise AssertionError("the worker's error was swallowed")


def test_a_host_whose_next_slot_is_now_takes_a_second_worker_even_with_no_short_wait() -> None:
    # With no rate limit the host's slot is always now (a delay of 0, not more than short_wait 0): two workers
    # fetch it at once. Each fetch waits for the other to start; with one worker at a time the barrier breaks.
    both_running = threading.Barrier(2, timeout=10)

    def fetch(url: str) -> str:
        both_running.wait()
        return url

    urls = ["http://one.test/1.jpg", "http://one.test/2.jpg"]
    limiter = HostRateLimiter(0)
    assert sorted(run_by_host(fetch, urls, workers=2, limiter=limiter, short_wait=0.0)) == urls


def test_held_hosts_are_taken_in_turn_not_one_host_first() -> None:
    known = {"yes": False}
    urls = [f"http://a.test/{k}.jpg" for k in range(3)] + [f"http://b.test/{k}.jpg" for k in range(3)]
    queues = _HostQueues(iter(urls), HostRateLimiter(0), 64, 1.0, settled=lambda host: known["yes"])
    # Until robots.txt is read, each host gets one worker: a0 and b0 go, the others are held per host.
    hosts = []
    for expected in ["http://a.test/0.jpg", "http://b.test/0.jpg"]:
        assert queues.next_url() == expected
        hosts.append(queues.started(expected))
    assert queues.next_url() is None
    known["yes"] = True  # both robots.txt read, no Crawl-delay: both hosts may take every worker now
    handed = []
    while (url := queues.next_url()) is not None:
        handed.append(url)
        queues.started(url)
    assert handed == ["http://a.test/1.jpg", "http://b.test/1.jpg", "http://a.test/2.jpg", "http://b.test/2.jpg"]
    for host in hosts:
        queues.finished(host)


def test_stopping_early_cancels_the_urls_no_worker_has_started() -> None:
    release = threading.Event()
    started: list[str] = []

    def fetch(url: str) -> str:
        started.append(url)
        if not url.endswith("/0.jpg"):
            release.wait(10)  # both workers busy: the fourth URL waits in the executor's queue
        return url

    urls = [f"http://h{k}.test/{k}.jpg" for k in range(4)]
    results = run_by_host(fetch, urls, workers=2, limiter=HostRateLimiter(0))
    assert next(results) == "http://h0.test/0.jpg"
    threading.Timer(0.5, release.set).start()  # lets the two running fetches end once the generator is closed
    results.close()  # as Ctrl-C or an error in the caller's loop would
    assert "http://h3.test/3.jpg" not in started, started

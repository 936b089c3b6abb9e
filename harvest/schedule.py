"""Spreading downloads over hosts: a worker never sleeps on a slow host while another host's URL waits.

The per-host rate limit (``--host-rate``, a robots.txt ``Crawl-delay``, a ``Retry-After`` pause) is kept by the
worker that fetches: it sleeps in :meth:`HostRateLimiter.wait` until its host's next free slot. Handed URLs in the
order the searches produce them, every worker could end up asleep on one host with a 30 s Crawl-delay, each a slot
further out, while the URLs of every other host queue behind them. :func:`run_by_host` hands a worker a URL only
when its host is idle or its next free slot is at most ``short_wait`` seconds away; the other URLs of a busy host
wait in a per-host queue (at most ``lookahead`` URLs read ahead of the workers) and are taken in turn, host by host.
A host whose robots.txt has not been read yet gets one worker: its Crawl-delay is not known before.
:func:`run_unordered` is the plain thread pool, for work with no host (``harvest local``'s files).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from harvest.net import HostRateLimiter, host_key

T = TypeVar("T")
R = TypeVar("R")

SHORT_WAIT = 1.0  # seconds: a host whose next slot is this close may take one more worker


def run_by_host(
    fn: Callable[[str], R],
    urls: Iterable[str],
    workers: int,
    limiter: HostRateLimiter,
    lookahead: int | None = None,
    short_wait: float = SHORT_WAIT,
    settled: Callable[[str], bool] = lambda host: True,
) -> Iterator[R]:
    """``fn`` over ``urls`` in ``workers`` threads, yielding results as they finish, each URL exactly once.

    ``lookahead`` (default 64 per worker) bounds how many URLs are read from the lazy ``urls`` and held back
    while their hosts are busy. ``settled(host)`` says whether the host's pace is known yet: until its robots.txt
    is read (and with it any Crawl-delay), a host gets one worker. Stopping early (Ctrl-C, an error) cancels what
    has not started yet.
    """
    scheduler = _HostQueues(iter(urls), limiter, lookahead or workers * 64, short_wait, settled)
    executor = ThreadPoolExecutor(workers, thread_name_prefix="harvest")
    running: dict[Future[R], str] = {}
    in_flight = 2 * workers  # a queued task per worker, so that no worker idles while results are written
    try:
        while True:
            while len(running) < in_flight and (url := scheduler.next_url()) is not None:
                running[executor.submit(fn, url)] = scheduler.started(url)
            if not running:
                return  # nothing runs and nothing could start: every URL was handed out
            timeout = None if len(running) == in_flight else scheduler.seconds_until_ready()
            done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                scheduler.finished(running.pop(future))
                yield future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def run_unordered(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int | None = None) -> Iterator[R]:
    """``fn`` over ``items`` in ``workers`` threads, yielding results as they finish.

    At most ``window`` items are queued at once, so a long lazy iterator is never read ahead into memory.
    Stopping early (Ctrl-C, an error) cancels what has not started yet.
    """
    window = window or workers * 4
    executor = ThreadPoolExecutor(workers, thread_name_prefix="harvest")
    pending: set[Future[R]] = set()
    try:
        for item in items:
            pending.add(executor.submit(fn, item))
            while len(pending) >= window:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


class _HostQueues:
    """The URLs read ahead, queued per host, and how many workers each host holds."""

    def __init__(
        self,
        urls: Iterator[str],
        limiter: HostRateLimiter,
        lookahead: int,
        short_wait: float,
        settled: Callable[[str], bool],
    ) -> None:
        self._urls = urls
        self._settled = settled
        self._limiter = limiter
        self._lookahead = lookahead
        self._short_wait = short_wait
        self._queues: dict[str, deque[str]] = {}  # host -> its URLs held back, hosts in turn
        self._held = 0
        self._busy: Counter[str] = Counter()
        self._exhausted = False

    def next_url(self) -> str | None:
        """A URL whose host can be asked now (or in a moment), or None when every held host is busy."""
        for host in list(self._queues):
            if self._ready(host):
                return self._take(host)
        while not self._exhausted and self._held < self._lookahead:
            url = next(self._urls, None)
            if url is None:
                self._exhausted = True
                break
            host = host_key(url)
            if host not in self._queues and self._ready(host):
                return url
            self._queues.setdefault(host, deque()).append(url)
            self._held += 1
        return None

    def started(self, url: str) -> str:
        host = host_key(url)
        self._busy[host] += 1
        return host

    def finished(self, host: str) -> None:
        self._busy[host] -= 1

    def seconds_until_ready(self) -> float | None:
        """How long until a held host's next slot is close enough (None: wait for a worker to finish). A host whose
        robots.txt is being read is not polled: the worker reading it finishes soon after."""
        settled = [host for host in self._queues if self._settled(host)]
        if not settled:
            return None
        soonest = min(self._limiter.delay(host) for host in settled)
        return max(0.01, soonest - self._short_wait)

    def _ready(self, host: str) -> bool:
        if not self._busy[host]:
            return True
        return self._settled(host) and self._limiter.delay(host) <= self._short_wait

    def _take(self, host: str) -> str:
        queue = self._queues.pop(host)  # re-inserted at the end: the next pick starts with another host
        url = queue.popleft()
        self._held -= 1
        if queue:
            self._queues[host] = queue
        return url

"""Polite, guarded HTTP: the session factory, robots.txt, per-host rate limits, network failure messages.

Every request harvest makes (search APIs and image downloads alike) goes through a session from
:func:`make_session`. Its connections check the address they actually connected to (:mod:`harvest.host_guard`), so
a host that resolves (or re-resolves, or redirects) to an address that is not public (private, loopback, link-local,
shared) is refused before a byte is sent, unless ``allow_private_hosts`` is set (tests talk to 127.0.0.1).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError

from harvest import __version__
from harvest.errors import HarvestError
from harvest.host_guard import BlockedHostError, GuardedAdapter
from harvest.robots import ROBOTS_TOKEN, RobotsRules, parse_robots

PROJECT_URL = "https://github.com/crowdrank/crowdrank"
DEFAULT_USER_AGENT = (
    f"crowdrank/{__version__} (+{PROJECT_URL}; collects crowd photos for crowd-counting research; "
    "honours robots.txt and X-Robots-Tag noai)"
)
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309 asks crawlers to parse at least 500 KiB
BODY_DEADLINE_FACTOR = 5  # a whole body must arrive within this many timeouts (stops trickling servers)
CHUNK_BYTES = 64 * 1024
# A longer robots.txt Crawl-delay is read as this (one worker at a time waits on such a host: harvest.schedule).
MAX_CRAWL_DELAY = 30.0
# Pictures are compressed already, and an uncompressed body cannot be a decompression bomb: ask for it as it is.
RAW_BODY_HEADERS = {"Accept-Encoding": "identity"}
# What requests raises for a URL no request can be made for: a bad_url, never retried.
BAD_URL_ERRORS = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)


class RobotsUnreachableError(HarvestError):
    """robots.txt of a host could not be fetched at all: nothing listening, an unknown name, a timeout.

    RFC 9309 says to crawl nothing on such a host, so its URLs are not fetched; but the host did not refuse
    anything, and the failure may pass, so they are recorded as ``status`` (``connection_error``, ``timeout``,
    ``http_429`` or ``tls_error``, all retried by ``--retry-failed``), not as a ``robots`` refusal; a host no request
    can be made to at all (requests finds the URL invalid) is ``bad_url``.
    """

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and everything down its chain (``__cause__``, ``__context__``, urllib3's ``reason``, exception args),
    each once, outermost first."""
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError keeps the cause here
        links = (current.__cause__, current.__context__, reason, *current.args)
        stack.extend(link for link in links if isinstance(link, BaseException))


def certificate_refusal(error: BaseException) -> str | None:
    """Why the host's TLS certificate was refused (expired, self-signed, for another name), when that is what
    ``error`` comes from anywhere down its chain; None for any other failure, a TLS one included (a handshake
    cut short may pass on the next try, a certificate that does not verify will not)."""
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or str(cause)
    return None


def network_failure(error: BaseException, url: str) -> str:
    """A short reason for a request that failed below HTTP, instead of urllib3's nested repr (``HTTPSConnectionPool(
    host=...): Max retries exceeded ... (Caused by NameResolutionError(...))``)."""
    host = urlsplit(url).hostname or url
    causes = list(_causes(error))
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve {host} ({cause.strerror or cause}): offline, or no such host"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the TLS certificate of {host} does not verify ({cause.verify_message or cause})"
        if isinstance(cause, ConnectionRefusedError):
            return f"{host} refused the connection (nothing listening on that port)"
        if isinstance(cause, requests.exceptions.ConnectTimeout):
            return f"no connection to {host} within the timeout"
    root = causes[-1]
    return f"{type(root).__name__}: {root}"


def unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why ``url``'s host cannot be reached from here (one line), or None when a TCP connection to it opens within
    ``timeout``, DNS included (which socket timeouts do not bound). A quick check before handing work to a client that
    retries for half a minute when offline (the Hugging Face Hub client, open_clip's downloads).

    None as well when a proxy is set for the scheme (and the host is not bypassed): only the proxy can reach it, so
    the client is left to try.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(host):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[BaseException | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as e:
            result.append(e)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    if not result or isinstance(result[0], TimeoutError):  # a lookup or a connect that did not end in time
        return f"no connection to {host} within {timeout:g} s"
    return None if result[0] is None else network_failure(result[0], url)


def tls_message(origin: str, refusal: str) -> str:
    """The row message for a host whose certificate does not verify."""
    return (
        f"the TLS certificate of {origin} does not verify ({refusal}); not retried in this run "
        "(--retry-failed tries again, once the site has renewed or fixed it)"
    )


class HarvestSession(requests.Session):
    """A ``requests.Session`` with a default timeout (requests has none), at most 5 redirects and, given a
    ``limiter``, every request spaced by it (the search sessions; downloads wait on the limiter themselves)."""

    def __init__(self, timeout: float, limiter: HostRateLimiter | None = None) -> None:
        super().__init__()
        self.default_timeout = timeout
        self.max_redirects = 5
        self.limiter = limiter

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        if self.limiter is not None:
            self.limiter.wait(url if isinstance(url, str) else url.decode())
        return super().request(method, url, *args, **kwargs)


def make_session(
    user_agent: str | None = None,
    allow_private_hosts: bool = False,
    timeout: float = 30.0,
    limiter: HostRateLimiter | None = None,
) -> requests.Session:
    """A session for one worker: descriptive User-Agent, default timeout, private-host guard, and the requests
    spaced by ``limiter`` when one is given.

    Proxies and .netrc from the environment are ignored (``trust_env = False``): the guard checks the address
    actually connected to, which behind a proxy would be the proxy's.
    """
    session = HarvestSession(timeout, limiter)
    session.trust_env = False
    session.headers["User-Agent"] = user_agent or DEFAULT_USER_AGENT
    if not allow_private_hosts:
        adapter = GuardedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_key(url: str) -> str:
    """``scheme://host[:port]`` of a URL: the unit robots.txt and rate limits apply to. One spelling per origin:
    lower case, no user name, no default port (``HTTP://user@A.example:80`` is ``http://a.example``), so that no
    other spelling of a host escapes its rate limit or reads its robots.txt anew."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # not a port number: no request can be made, keep the spelling as given
        return f"{scheme}://{parts.netloc}".lower()
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != _DEFAULT_PORTS.get(scheme) else "")


class BodyTooSlowError(requests.exceptions.ReadTimeout):
    """A response body still arriving when its deadline passed: a server trickling bytes to hold a worker."""


def body_pieces(response: requests.Response, within: float | None = None, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The decoded body of a streamed response, each piece (at most ``size`` bytes) handed over as soon as it arrives;
    with ``within``, a body still arriving ``within`` seconds after the first piece was asked for raises
    :class:`BodyTooSlowError` (a ``ReadTimeout``), however steadily its bytes come.

    ``iter_content`` waits until ``size`` bytes have come, so a server trickling a byte per second keeps it inside one
    read for hours and a deadline checked between pieces never fires; one ``read1`` returns whatever one receive
    brought (each receive bounded by the read timeout). Errors are raised as ``iter_content`` raises them.
    urllib3 2.6 and later inflate at most ``size`` bytes per piece (earlier ones a whole received block at once);
    urllib3 1.x and 2.0 have no ``read1``, and there this is ``iter_content``.
    """
    deadline = None if within is None else time.monotonic() + within
    for piece in _raw_pieces(response, size):
        if deadline is not None and time.monotonic() > deadline:
            raise BodyTooSlowError(f"the body took longer than {within:g} s to arrive")
        yield piece


def _raw_pieces(response: requests.Response, size: int) -> Iterator[bytes]:
    raw = response.raw
    if not hasattr(raw, "read1"):
        yield from response.iter_content(size)
        return
    try:
        while piece := raw.read1(size, decode_content=True):
            yield piece
    except ProtocolError as e:
        raise requests.exceptions.ChunkedEncodingError(e) from e
    except DecodeError as e:
        raise requests.exceptions.ContentDecodingError(e) from e
    except ReadTimeoutError as e:
        raise requests.exceptions.ConnectionError(e) from e
    except Urllib3SSLError as e:
        raise requests.exceptions.SSLError(e) from e


class HostRateLimiter:
    """At most ``rate`` requests per second per host, shared by every worker thread (``rate <= 0``: no limit).

    Each call reserves the next free slot of its host under a lock and sleeps outside it, so workers
    fetching other hosts never wait. A host can ask for more: a longer interval (robots.txt ``Crawl-delay``,
    :meth:`slow_down`) or a pause (``Retry-After``, :meth:`hold`), both kept by every worker. ``clock`` and
    ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_slot: dict[str, float] = {}
        self._intervals: dict[str, float] = {}  # hosts that asked for a longer interval than ``interval``
        self._lock = threading.Lock()

    def wait(self, url: str) -> float:
        """Block until the URL's host may be asked again; return the seconds waited."""
        key = host_key(url)
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot.get(key, now))
            self._next_slot[key] = slot + self._intervals.get(key, self.interval)
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return delay

    def delay(self, url: str) -> float:
        """Seconds until the URL's host may be asked again (0: now), without reserving the slot."""
        key = host_key(url)
        with self._lock:
            return max(0.0, self._next_slot.get(key, 0.0) - self._clock())

    def hold(self, url: str, seconds: float) -> None:
        """Ask the URL's host nothing for ``seconds`` from now, whichever worker asks (it answered Retry-After)."""
        key = host_key(url)
        with self._lock:
            until = self._clock() + seconds
            self._next_slot[key] = max(self._next_slot.get(key, until), until)

    def slow_down(self, url: str, interval: float) -> None:
        """Space the requests to the URL's host at least ``interval`` seconds apart from now on."""
        key = host_key(url)
        with self._lock:
            self._intervals[key] = max(self.interval, self._intervals.get(key, 0.0), interval)


class RobotsCache:
    """robots.txt per host, fetched once per run (one fetch even when many workers ask at once), read by
    :func:`harvest.robots.parse_robots`.

    Per RFC 9309: a 4xx answer means no rules (allow all); a 5xx answer or a network failure means complete
    disallow for this run. A network failure raises :class:`RobotsUnreachableError` from :meth:`allowed` (for every
    URL of the host, without asking again) so that it is not mistaken for a refusal; so do a 429 (a 4xx, but one that
    asks to come back later, as Google reads it: status ``http_429``) and a robots.txt that takes longer than
    ``BODY_DEADLINE_FACTOR`` x ``timeout`` to arrive (a trickling host). A ``Crawl-delay`` (not in the RFC, but how a
    site states its rate limit) spaces the host's requests in ``limiter``, at most :data:`MAX_CRAWL_DELAY` s apart.
    """

    def __init__(
        self, limiter: HostRateLimiter | None = None, token: str = ROBOTS_TOKEN, timeout: float = 30.0
    ) -> None:
        self.limiter = limiter
        self.token = token
        self.body_deadline = BODY_DEADLINE_FACTOR * timeout  # seconds for the whole robots.txt, once it answered
        self._rules: dict[str, RobotsRules] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._unreachable: dict[str, tuple[str, str]] = {}  # host -> (message, status)
        self._server_errors: dict[str, int] = {}
        self.fetches = 0

    def allowed(self, url: str, session: requests.Session) -> bool:
        """Whether robots.txt of the URL's host lets crowdrank fetch it (fetching robots.txt with ``session``).

        Raises :class:`RobotsUnreachableError` when robots.txt could not be fetched at all.
        """
        key = host_key(url)
        with self._lock:
            host_lock = self._host_locks.setdefault(key, threading.Lock())
        with host_lock:
            rules = self._rules.get(key)
            if rules is None:
                rules = self._fetch(key, session)
                self._rules[key] = rules
        if key in self._unreachable:
            raise RobotsUnreachableError(*self._unreachable[key])
        return rules.allowed(url)

    def has_read(self, url: str) -> bool:
        """Whether robots.txt of the URL's host was read (or found unreadable) in this run."""
        return host_key(url) in self._rules

    def refusal_reason(self, url: str) -> str | None:
        """Why every URL of the host is refused, when that is robots.txt's status rather than its rules."""
        status = self._server_errors.get(host_key(url))
        if status is None:
            return None
        return f"robots.txt of {urlsplit(url).netloc} answered HTTP {status}, which RFC 9309 reads as disallow all"

    def _fetch(self, key: str, session: requests.Session) -> RobotsRules:
        self.fetches += 1
        if self.limiter is not None:
            self.limiter.wait(key)
        try:
            with session.get(f"{key}/robots.txt", stream=True, headers=RAW_BODY_HEADERS) as response:
                if response.status_code == 429:  # a 4xx, but no sign that the host has no rules: ask again later
                    self._unreachable[key] = (
                        f"robots.txt of {key} answered HTTP 429 (too many requests); nothing is fetched from that "
                        "host before it can be read; --retry-failed tries again",
                        "http_429",
                    )
                    return RobotsRules(disallow_all=True)
                if 400 <= response.status_code < 500:
                    return RobotsRules()  # no robots.txt: no rules
                if response.status_code >= 500:
                    self._server_errors[key] = response.status_code
                    return RobotsRules(disallow_all=True)
                body = self._read_capped(response)
        except BlockedHostError:
            raise
        except BAD_URL_ERRORS as e:  # no request can be made to this host at all: not worth retrying
            self._unreachable[key] = (f"cannot request {key}/robots.txt: {type(e).__name__}: {e}", "bad_url")
            return RobotsRules(disallow_all=True)
        except (requests.RequestException, OSError) as e:
            refusal = certificate_refusal(e)
            if refusal is not None:
                self._unreachable[key] = (tls_message(key, refusal), "tls_error")
                return RobotsRules(disallow_all=True)
            status = "timeout" if isinstance(e, requests.exceptions.Timeout) else "connection_error"
            self._unreachable[key] = (
                f"robots.txt of {key} could not be fetched ({network_failure(e, key)}); nothing is fetched from "
                "that host before it can be read (RFC 9309); --retry-failed tries again",
                status,
            )
            return RobotsRules(disallow_all=True)
        rules = parse_robots(body.decode("utf-8", errors="replace"), self.token)
        if rules.crawl_delay and self.limiter is not None:
            self.limiter.slow_down(key, min(rules.crawl_delay, MAX_CRAWL_DELAY))
        return rules

    def _read_capped(self, response: requests.Response) -> bytes:
        """The whole lines in the first :data:`ROBOTS_MAX_BYTES` of robots.txt (a rule cut short could widen, as
        ``Allow: /`` from ``Allow: /public/``); a body slower than the deadline is a read timeout."""
        body = bytearray()
        for piece in body_pieces(response, within=self.body_deadline):
            body += piece
            if len(body) >= ROBOTS_MAX_BYTES:
                return bytes(body[:ROBOTS_MAX_BYTES]).rpartition(b"\n")[0]
        return bytes(body)


def header_lines(response: requests.Response, name: str) -> list[str]:
    """Every value of header ``name``, one per header line as sent (``response.headers`` joins them with commas)."""
    raw_headers = getattr(response.raw, "headers", None)
    if hasattr(raw_headers, "getlist"):
        return list(raw_headers.getlist(name))
    value = response.headers.get(name)
    return [value] if value else []


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date); None when absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # str.isdigit alone takes '²' too, which float() refuses
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())

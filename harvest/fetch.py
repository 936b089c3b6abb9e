"""The downloader: one URL in, one :class:`FetchResult` out, never an exception.

``fetch_one`` follows redirects itself (at most 5) so that every hop passes robots.txt and the private-host
guard; retries 429/5xx answers, timeouts and dropped connections with exponential backoff, honouring
``Retry-After``; streams the body under a byte cap; and checks the bytes with :func:`harvest.images.check_image`.
Every failure is a status class (``http_404``, ``timeout``, ``robots``, …) plus a readable message.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urljoin, urlsplit

import requests

from harvest.errors import ConfigError
from harvest.host_guard import BlockedHostError
from harvest.images import DEFAULT_MAX_PIXELS, ImageCheck, check_image
from harvest.net import (
    BAD_URL_ERRORS,
    BODY_DEADLINE_FACTOR,
    RAW_BODY_HEADERS,
    BodyTooSlowError,
    HostRateLimiter,
    RobotsCache,
    RobotsUnreachableError,
    body_pieces,
    certificate_refusal,
    header_lines,
    host_key,
    network_failure,
    parse_retry_after,
    tls_message,
)
from harvest.pool import utc_now
from harvest.robots import x_robots_refusal

MAX_REDIRECTS = 5
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_HOSTNAME_CHARS = 253  # RFC 1035, in the dotted form
# The longest pause a flag may ask for (--max-retry-wait, the spacing 1/--host-rate): a day. time.sleep refuses
# ~1e10 s and more (OverflowError), which made every fetch from the host an internal_error row.
MAX_PAUSE_S = 86_400.0


@dataclass(frozen=True)
class FetchConfig:
    """How to download: concurrency, politeness, limits, and how often to flush rows to the pool."""

    workers: int = 16
    host_rate: float = 2.0  # requests per second per host; 0 means no limit
    timeout: float = 15.0  # connect and read timeout, seconds
    retries: int = 3
    backoff: float = 1.0  # first retry waits this long, then twice as long each time
    max_retry_wait: float = 60.0  # a Retry-After above this gives up instead of waiting
    max_bytes: int = 20 * 1024 * 1024
    min_side: int = 224
    max_pixels: int = DEFAULT_MAX_PIXELS
    ignore_robots: bool = False
    allow_private_hosts: bool = False
    user_agent: str | None = None
    retry_failed: bool = False  # fetch again the URLs whose rows all failed transiently (timeouts, 429, 5xx)
    flush_rows: int = 256  # write a pool part after this many rows …
    flush_seconds: float = 30.0  # … or after this many seconds, whichever comes first
    show_progress: bool = True

    def __post_init__(self) -> None:
        _require(1 <= self.workers <= 256, f"--workers must be between 1 and 256, got {self.workers}")
        _require(
            self.host_rate == 0 or 1 / MAX_PAUSE_S <= self.host_rate < float("inf"),
            f"--host-rate must be 0 (no limit) or from one request a day ({1 / MAX_PAUSE_S:.2g}/s) up, "
            f"got {self.host_rate}",
        )
        _require(0 < self.timeout <= 600, f"--timeout must be in (0, 600] seconds, got {self.timeout}")
        _require(0 <= self.retries <= 10, f"--retries must be between 0 and 10, got {self.retries}")
        _require(self.backoff >= 0, f"backoff must be >= 0 seconds, got {self.backoff}")
        _require(
            0 <= self.max_retry_wait <= MAX_PAUSE_S,
            f"--max-retry-wait must be in 0..{MAX_PAUSE_S:.0f} seconds (a day), got {self.max_retry_wait}",
        )
        _require(self.max_bytes >= 1024, f"--max-bytes must be at least 1024, got {self.max_bytes}")
        _require(self.min_side >= 0, f"--min-side must be >= 0 pixels, got {self.min_side}")
        _require(self.max_pixels >= 1, f"--max-pixels must be >= 1, got {self.max_pixels}")
        _require(self.flush_rows >= 1, f"flush_rows must be >= 1, got {self.flush_rows}")
        _require(self.flush_seconds > 0, f"flush_seconds must be > 0, got {self.flush_seconds}")
        if self.user_agent is not None:
            _require(
                bool(self.user_agent.strip()) and "\n" not in self.user_agent,
                f"--user-agent must be one non-empty line, got {self.user_agent!r}",
            )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class FetchResult:
    """What became of one URL: ``status`` ``ok`` with the bytes, or a failure class with a message."""

    url: str
    status: str
    error: str | None = None
    final_url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    check: ImageCheck | None = None
    size: int | None = None  # bytes of the body read, when one was read
    fetched_at: str = field(default_factory=utc_now)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Failure(Exception):
    """Internal: ends the fetch of one URL with a status class."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def fetch_one(
    session: requests.Session,
    url: str,
    config: FetchConfig,
    robots: RobotsCache,
    limiter: HostRateLimiter,
) -> FetchResult:
    """Download and check one image URL; every outcome, good or bad, is a :class:`FetchResult`."""
    current = url
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            _check_target(current, session, config, robots)
            response = _get_with_retries(session, current, config, limiter)
            if _is_redirect(response):
                response.close()
                current = urljoin(current, response.headers["Location"])
                continue
            with response:
                data, check = _read_image(response, config)
            kept = data if check.ok else None
            return FetchResult(url, check.status, check.error, current, kept, check, len(data))
        raise _Failure("too_many_redirects", f"more than {MAX_REDIRECTS} redirects; the last one pointed to {current}")
    except _Failure as failure:
        return FetchResult(url, failure.status, str(failure), current)


def _check_target(url: str, session: requests.Session, config: FetchConfig, robots: RobotsCache) -> None:
    parts = _parse_url(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Failure("bad_url", f"only http(s) URLs with a host are fetched, got {url!r}")
    if config.ignore_robots:
        return
    try:
        allowed = robots.allowed(url, session)
    except BlockedHostError as e:
        raise _Failure("blocked_host", str(e)) from e
    except RobotsUnreachableError as e:
        raise _Failure(e.status, str(e)) from e
    if not allowed:
        reason = robots.refusal_reason(url)
        raise _Failure(
            "robots", reason or f"robots.txt of {parts.hostname} disallows {parts.path or '/'} for crowdrank"
        )


def _parse_url(url: str) -> SplitResult:
    """The parts of ``url``; one no request could be made for (a broken IPv6 literal, a port that is no number
    or over 65535, a host name too long for DNS) is a ``bad_url`` failure, never retried."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what validates it
        if parts.hostname and not _is_ip_literal(parts.hostname):
            name = parts.hostname.encode("idna")  # a label over 63 characters fails here
            if len(name.rstrip(b".")) > MAX_HOSTNAME_CHARS:
                raise ValueError(f"the host name has {len(name)} characters, over DNS's {MAX_HOSTNAME_CHARS}")
    except (ValueError, UnicodeError) as e:
        raise _Failure("bad_url", f"cannot parse the URL {url!r}: {e}") from e
    return parts


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _get_with_retries(
    session: requests.Session, url: str, config: FetchConfig, limiter: HostRateLimiter
) -> requests.Response:
    """One GET without following redirects, retried on 429/5xx, timeouts and dropped connections."""
    for attempt in range(config.retries + 1):
        last_try = attempt == config.retries
        limiter.wait(url)
        try:
            response = session.get(
                url,
                stream=True,
                allow_redirects=False,
                timeout=(config.timeout, config.timeout),
                headers=RAW_BODY_HEADERS,
            )
        except BlockedHostError as e:
            raise _Failure("blocked_host", str(e)) from e
        except BAD_URL_ERRORS as e:
            raise _Failure("bad_url", f"cannot request {url!r}: {e}") from e
        except ValueError as e:  # requests parses a redirect's Location even when not following it
            raise _Failure("bad_url", f"{url!r} answered a redirect to no URL: {e}") from e
        except requests.exceptions.Timeout as e:
            if last_try:
                raise _Failure("timeout", f"no answer within --timeout {config.timeout} s ({_tries(attempt)})") from e
            time.sleep(config.backoff * 2**attempt)
            continue
        except requests.exceptions.RequestException as e:
            refusal = certificate_refusal(e)
            if refusal is not None:  # the same certificate comes back on every try
                raise _Failure("tls_error", tls_message(host_key(url), refusal)) from e
            if last_try:
                raise _Failure("connection_error", f"{network_failure(e, url)} ({_tries(attempt)})") from e
            time.sleep(config.backoff * 2**attempt)
            continue
        status = response.status_code
        wait = parse_retry_after(response.headers.get("Retry-After")) if status in RETRY_STATUSES else None
        if wait is not None:  # the host said when to come back: no worker asks it before then (at most the cap)
            limiter.hold(url, min(wait, config.max_retry_wait))
        if status in RETRY_STATUSES and not last_try:
            response.close()
            if wait is not None and wait > config.max_retry_wait:
                raise _Failure(
                    f"http_{status}",
                    f"HTTP {status} asks to retry after {wait:.0f} s, "
                    f"over --max-retry-wait {config.max_retry_wait:.0f} s",
                )
            if wait is None:
                time.sleep(config.backoff * 2**attempt)
            continue  # after a Retry-After, limiter.wait sleeps out the hold
        if status >= 400 or (300 <= status < 400 and not _is_redirect(response)):
            response.close()
            suffix = f" ({_tries(attempt)})" if status in RETRY_STATUSES else ""
            raise _Failure(f"http_{status}", f"HTTP {status} {response.reason}{suffix}")
        return response
    raise AssertionError("the retry loop returns or raises on its last try")


def _is_redirect(response: requests.Response) -> bool:
    return response.status_code in REDIRECT_STATUSES and bool(response.headers.get("Location"))


def _tries(attempt: int) -> str:
    return "1 try" if attempt == 0 else f"{attempt + 1} tries"


def _read_image(response: requests.Response, config: FetchConfig) -> tuple[bytes, ImageCheck]:
    """Stream the body under the byte cap and the body deadline, then check the bytes."""
    if not config.ignore_robots:
        directive = x_robots_refusal(header_lines(response, "X-Robots-Tag"))
        if directive:
            raise _Failure("noai", f"the server forbids this use with X-Robots-Tag: {directive}")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > config.max_bytes:
        raise _Failure("too_large", f"Content-Length {declared} is over --max-bytes {config.max_bytes}")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in body_pieces(response, within=BODY_DEADLINE_FACTOR * config.timeout):
            size += len(chunk)
            if size > config.max_bytes:
                raise _Failure("too_large", f"body is over --max-bytes {config.max_bytes}")
            chunks.append(chunk)
    except BodyTooSlowError as e:  # a ReadTimeout, not a ConnectionError: caught before the generic handlers
        raise _Failure("timeout", f"{e} ({BODY_DEADLINE_FACTOR} x --timeout)") from e
    except requests.exceptions.ChunkedEncodingError as e:
        raise _Failure("truncated", f"the connection closed before the body ended ({size} bytes read): {e}") from e
    except requests.exceptions.ConnectionError as e:
        if "timed out" in str(e).lower():
            raise _Failure("timeout", f"the body stalled for more than --timeout {config.timeout} s") from e
        raise _Failure("connection_error", f"the body broke off after {size} bytes: {e}") from e
    except requests.exceptions.RequestException as e:
        raise _Failure("connection_error", f"the body broke off after {size} bytes: {e}") from e
    data = b"".join(chunks)
    return data, check_image(data, config.max_pixels, config.min_side)

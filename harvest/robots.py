"""robots.txt rules as RFC 9309 reads them: groups chosen by product token, ``*`` and ``$`` in paths, longest match.

Python's ``urllib.robotparser`` reads them otherwise, in ways that let a crawler into what a site closed:

- it has no wildcards, so ``Disallow: /*.jpg$`` or ``Disallow: /photos/*/full`` never match anything;
- the first matching rule wins, so ``Allow: /`` written before ``Disallow: /private/`` opens ``/private/``
  (RFC 9309: the longest match wins, and an allow only on a tie);
- only the first group naming the crawler counts, where the RFC merges every group that names it;
- a group's name matches as a substring: ``User-agent: crowd`` is taken to mean crowdrank.

``X-Robots-Tag`` header lines are read here too (:func:`x_robots_refusal`). Pure functions on text;
:class:`harvest.net.RobotsCache` fetches the files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ROBOTS_TOKEN = "crowdrank"  # the product token robots.txt groups and X-Robots-Tag scopes are matched against
NOAI_DIRECTIVES = frozenset({"noai", "noimageai", "noindex", "none"})
_VALUED_DIRECTIVES = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_AGENT_KEYS = frozenset({"user-agent", "useragent", "user agent"})
_PRODUCT_TOKEN = re.compile(r"[A-Za-z_-]+")


def normalise_path(text: str) -> str:
    """One spelling of a path for comparing a URL with a rule (RFC 9309 section 2.2.2).

    Octets outside printable ASCII are percent-encoded (UTF-8), escapes of unreserved characters decoded
    (``%7E`` -> ``~``), other escapes upper-cased (``%2f`` -> ``%2F``), so both sides read the same.
    """
    data = text.encode("utf-8")
    out: list[str] = []
    i = 0
    while i < len(data):
        octet = data[i]
        if octet == 0x25 and i + 2 < len(data) and data[i + 1] in _HEX and data[i + 2] in _HEX:
            value = int(data[i + 1 : i + 3], 16)
            out.append(chr(value) if value in _UNRESERVED else f"%{value:02X}")
            i += 3
            continue
        out.append(chr(octet) if 0x20 < octet < 0x7F else f"%{octet:02X}")
        i += 1
    return "".join(out)


def pattern_matches(pattern: str, path: str) -> bool:
    """Whether a rule's pattern matches the start of ``path``: ``*`` is any run of characters, a final ``$`` the end.

    Tracks every position in ``path`` the pattern could have reached so far (Google's robots.txt matcher does the
    same), so it takes len(pattern) x len(path) steps at worst; a regular expression would backtrack exponentially
    on a hostile ``/*a*a*a*a*a*a*a*a*b`` against a long path.
    """
    positions = [0]  # ascending, distinct
    for i, char in enumerate(pattern):
        if char == "$" and i == len(pattern) - 1:
            return positions[-1] == len(path)
        if char == "*":
            positions = list(range(positions[0], len(path) + 1))
            continue
        positions = [p + 1 for p in positions if p < len(path) and path[p] == char]
        if not positions:
            return False
    return True


@dataclass(frozen=True)
class Rule:
    """One ``allow`` or ``disallow`` line, its path pattern normalised."""

    allow: bool
    pattern: str


@dataclass(frozen=True)
class RobotsRules:
    """The rules of robots.txt that apply to one crawler; no rule that matches a path means it is allowed."""

    rules: tuple[Rule, ...] = ()
    crawl_delay: float | None = None
    disallow_all: bool = False

    def allowed(self, url: str) -> bool:
        """Whether the URL's path (with its query) may be fetched: the longest matching rule decides, allow on a tie."""
        if self.disallow_all:
            return False
        parts = urlsplit(url)
        target = normalise_path((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        if target == "/robots.txt":
            return True
        matching = [(len(rule.pattern), rule.allow) for rule in self.rules if pattern_matches(rule.pattern, target)]
        return not matching or max(matching)[1]  # the longest pattern; of two as long, allow (True > False)


def product_token(value: str) -> str:
    """The crawler name a ``user-agent`` line gives, lower-cased: ``CrowdRank/1.0`` -> ``crowdrank``; ``*`` as is."""
    value = value.strip()
    if value.startswith("*"):
        return "*"
    match = _PRODUCT_TOKEN.match(value)
    return match.group(0).lower() if match else ""


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    crawl_delay: float | None = None
    closed: bool = False  # a rule came after its user-agent lines: the next user-agent line starts a new group


def parse_robots(text: str, token: str) -> RobotsRules:
    """The rules robots.txt ``text`` sets for the crawler named ``token``: every group naming it, merged; else every
    ``*`` group; else none. Lines are ``key: value`` with ``#`` comments; unknown keys (``sitemap``) are ignored."""
    groups: list[_Group] = []
    for raw_line in text.lstrip("\ufeff").splitlines():
        line = raw_line.split("#", 1)[0].strip()
        key, colon, value = line.partition(":")
        if not colon:
            continue
        key, value = key.strip().lower(), value.strip()
        if key in _AGENT_KEYS:
            if not groups or groups[-1].closed:
                groups.append(_Group())
            groups[-1].agents.append(product_token(value))
        elif key in ("allow", "disallow") and groups:
            groups[-1].closed = True
            if value:  # an empty rule (``Disallow:``) matches nothing
                groups[-1].rules.append(Rule(key == "allow", normalise_path(value)))
        elif key == "crawl-delay" and groups:
            groups[-1].closed = True
            groups[-1].crawl_delay = _seconds(value)
    name = token.lower()
    chosen = [g for g in groups if name in g.agents] or [g for g in groups if "*" in g.agents]
    delays = [g.crawl_delay for g in chosen if g.crawl_delay is not None]
    return RobotsRules(tuple(rule for g in chosen for rule in g.rules), max(delays) if delays else None)


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def x_robots_refusal(lines: str | Sequence[str] | None, token: str = ROBOTS_TOKEN) -> str | None:
    """The directive of ``X-Robots-Tag`` header lines that forbids our use (``noai``, ``noimageai``, ``noindex``, …).

    Directives may be scoped to a crawler (``googlebot: noindex``); a scope applies to the directives after it
    until the next scope or the end of its header line, and only scopes naming ``token`` (or none) concern us.
    Pass each header line on its own (:func:`harvest.net.header_lines`): joined with commas, as ``response.headers``
    joins them, an unscoped ``noai`` line after a ``googlebot: noindex`` line would read as googlebot's. None if
    allowed.
    """
    for line in [lines] if isinstance(lines, str) else lines or []:
        applies = True
        for raw in line.split(","):
            token_text = raw.strip().lower()
            if ":" in token_text:
                head, _, rest = token_text.partition(":")
                head = head.strip()
                if head not in _VALUED_DIRECTIVES:
                    applies = head == token
                    token_text = rest.strip()
            if applies and token_text in NOAI_DIRECTIVES:
                return token_text
    return None

"""Plain-text attribution for pool rows: HTML stripping and one normal form for licence names.

Every source hands its engine's attribution fields through these helpers, so the ``title`` / ``author`` columns
hold plain text and the ``license`` column holds one spelling per licence whichever engine found the image:

=============================  ==========================================================================
engine says                    ``license`` column
=============================  ==========================================================================
``CC BY-SA 4.0``, ``by-sa`` +  ``cc-by-sa-4.0`` (elements in the order by, nc, nd, sa; version kept;
``4.0``, ``.../by-sa/4.0/``    a ported licence keeps its jurisdiction: ``cc-by-sa-3.0-de``)
``CC0``, ``cc0`` + ``1.0``     ``cc0-1.0``
``Public domain``, ``PD-US``,  ``pdm`` (public domain: Public Domain Mark or a public-domain statement)
``pdm``, ``.../mark/1.0/``
``sampling+`` + ``1.0``        ``cc-sampling+-1.0`` (retired CC Sampling licences)
Flickr ids 7 / 8 / 0           ``nkcr`` (no known copyright restrictions), ``usgov`` (US Government work),
                               ``all-rights-reserved`` (see ``harvest.sources.flickr.FLICKR_LICENSES``)
anything else (``GFDL``)       the name lower-cased with runs of other characters turned into ``-`` (``gfdl``)
nothing                        ``None`` (unknown: the publishing stage refuses it unless told otherwise)
=============================  ==========================================================================
"""

from __future__ import annotations

import math
import re
import warnings

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

# Bing wraps the query terms in its titles with these private-use code points (U+E000 ... U+E001).
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")

_HIDDEN_STYLE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_CC_ELEMENT_ORDER = ("by", "nc", "nd", "sa")
_CC_NAME = re.compile(
    r"^(?:creative\s*commons|cc)?[\s_-]*"
    r"(?P<elements>by(?:[\s_-]+(?:nc|nd|sa))*)"
    r"(?:[\s_-]+(?P<version>\d(?:\.\d)?)(?:\s*,\s*[\d.,\s]+)?)?"
    r"(?:[\s_-]+(?:international|unported|generic))?"
    r"(?:[\s_-]+(?P<port>[a-z]{2}(?:-[a-z]{2})?))?$"
)
_CC0_NAME = re.compile(r"^(?:cc0|cc[\s_-]*zero|cc[\s_-]0)(?:[\s_-]*1\.0)?(?:[\s_-]*universal)?$")
_SAMPLING_NAME = re.compile(r"^(?:cc[\s_-]*)?(?P<kind>(?:nc[\s_-]*)?sampling\+)(?:[\s_-]*(?P<version>\d\.\d))?$")
_PD_NAME = re.compile(r"^(?:pdm(?:[\s_-]*1\.0)?|pd(?:[\s_-].*)?|public[\s_-]*domain(?:[\s_-].*)?)$")
_CC_URL = re.compile(
    r"creativecommons\.org/(?:"
    r"licenses/(?P<elements>by(?:-(?:nc|nd|sa))*)/(?P<version>\d\.\d)(?:/(?P<port>[a-z]{2}(?:-[a-z]{2})?))?"
    r"|publicdomain/(?P<pd>zero|mark)/\d\.\d)",
    re.IGNORECASE,
)


def strip_html(value: object) -> str | None:
    """Plain text of an HTML fragment (entities decoded, ``<br>`` as a space, whitespace collapsed); None if empty.

    Engines return attribution as HTML (Commons' ``Artist`` is usually a link to a user page); the pool keeps text.
    """
    if value is None:
        return None
    text = _PRIVATE_USE.sub("", str(value))
    if "<" in text or "&" in text:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
            soup = BeautifulSoup(text, "html.parser")
        for line_break in soup.find_all("br"):
            line_break.replace_with(" ")
        for hidden in soup.find_all(style=_HIDDEN_STYLE):  # Commons repeats names in invisible hCard spans
            hidden.decompose()
        text = soup.get_text()
    text = " ".join(text.split())
    return text or None


def _cc_name(elements: str, version: str | None, port: str | None) -> str:
    parts = set(re.split(r"[\s_-]+", elements))
    ordered = [element for element in _CC_ELEMENT_ORDER if element in parts]
    name = "cc-" + "-".join(ordered)
    if version:
        name += f"-{version if '.' in version else version + '.0'}"
    if port:
        name += f"-{port}"
    return name


def license_from_url(url: str | None) -> str | None:
    """Normal form of a creativecommons.org licence or public-domain URL; None for any other URL."""
    if not url:
        return None
    match = _CC_URL.search(url)
    if match is None:
        return None
    if match.group("pd") == "zero":
        return "cc0-1.0"
    if match.group("pd") == "mark":
        return "pdm"
    return _cc_name(match.group("elements").lower(), match.group("version"), (match.group("port") or "").lower())


def normalize_license(name: str | None, url: str | None = None) -> str | None:
    """One spelling per licence (see the module table), from an engine's licence name and, failing that, its URL.

    ``name`` may carry the version (``CC BY-SA 4.0``, ``by-sa 4.0``); several versions (``CC BY-SA 2.5,2.0,1.0``)
    keep the first. A name that is no Creative Commons or public-domain form is kept as a lower-case slug, so a
    filter on ``cc-by-4.0`` can never match it by accident.
    """
    text = strip_html(name)
    if text is None:
        return license_from_url(url)
    key = text.lower().strip()
    if _CC0_NAME.match(key):
        return "cc0-1.0"
    match = _CC_NAME.match(key)
    if match:
        return _cc_name(match.group("elements"), match.group("version"), match.group("port"))
    if _PD_NAME.match(key):
        return "pdm"
    match = _SAMPLING_NAME.match(key)
    if match:  # retired CC Sampling licences, still on some Openverse images
        kind = re.sub(r"[\s_-]+", "-", match.group("kind"))
        return f"cc-{kind}" + (f"-{match.group('version')}" if match.group("version") else "")
    from_url = license_from_url(url)
    if from_url is not None:
        return from_url
    slug = re.sub(r"[^a-z0-9.+]+", "-", key).strip("-")
    return slug or None


def as_float(value: object) -> float | None:
    """A finite number from an engine's JSON number or numeric string; None for anything else (``true``, ``"n/a"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def as_int(value: object) -> int | None:
    """A whole number (a size, a rank, a licence id) from a JSON number or numeric string; None when it is not one."""
    number = as_float(value)
    return int(number) if number is not None and number.is_integer() else None


def absolute_url(url: object) -> str | None:
    """An engine URL with a scheme: Commons writes protocol-relative ``//creativecommons.org/...`` links."""
    if not url:
        return None
    text = str(url).strip()
    return f"https:{text}" if text.startswith("//") else text

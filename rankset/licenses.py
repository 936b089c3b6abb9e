"""Which rows may be published: licence families and the policy ``rankset push --licenses`` applies.

A licence is matched by *family*, whatever its spelling or version: ``CC BY-SA 4.0``, ``cc-by-sa-4.0``,
``cc-by-sa-3.0-de``, ``by-sa`` and ``https://creativecommons.org/licenses/by-sa/2.0/`` are all ``by-sa``.
Families: ``cc0``, ``pdm`` (public domain), the Creative Commons ones (``by``, ``by-sa``, ``by-nc``, ``by-nd``,
``by-nc-sa``, ``by-nc-nd``), and for anything else the lower-case slug of its name (``gfdl``, ``mit``).
A missing licence (None, empty, ``unknown``) has no family: the policy refuses it unless told otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rankset.errors import ConfigError

UNKNOWN = "unknown"
CC_FAMILIES = ("by", "by-sa", "by-nc", "by-nd", "by-nc-sa", "by-nc-nd")
KNOWN_FAMILIES = ("cc0", "pdm", *CC_FAMILIES)

_UNKNOWN_SPELLINGS = {"", "unknown", "none", "null", "nan", "n/a", "na", "?", "unspecified", "not specified"}
_CC_ELEMENTS = ("by", "nc", "nd", "sa")
_CC_URL = re.compile(r"creativecommons\.org/(?:licenses/(?P<elements>[a-z-]+)/|publicdomain/(?P<pd>zero|mark)/)")
# After the optional "creative commons" / "cc" prefix: the elements, then version / port / "international" noise.
_CC_NAME = re.compile(r"^(?P<elements>by(?:-(?:nc|nd|sa))*)(?:-(?:\d+(?:\.\d+)*|[a-z]{2}|international|unported))*$")
# Long forms ("Attribution-ShareAlike") written as their element codes.
_CC_WORDS = (
    (r"attribution", "by"),
    (r"share-?alike", "sa"),
    (r"non-?commercial", "nc"),
    (r"no-?deriv(?:ative)?s?", "nd"),
)
_CC0_NAME = re.compile(r"^(?:cc0|cc-?zero|cc-0|zero)(?:-1\.0)?(?:-universal)?$")
_PD_NAME = re.compile(r"^(?:pdm(?:-1\.0)?|pd(?:-.*)?|public-?domain(?:-.*)?|publicdomain(?:-.*)?)$")


def license_family(value: str | None) -> str | None:
    """The family of a licence name, id or creativecommons.org URL; None when the licence is unknown."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in _UNKNOWN_SPELLINGS:
        return None
    url = _CC_URL.search(text)
    if url:
        if url.group("pd"):
            return "cc0" if url.group("pd") == "zero" else "pdm"
        return _cc_family(url.group("elements"))
    slug = re.sub(r"[\s_/]+", "-", text).strip("-")
    for words, element in _CC_WORDS:
        slug = re.sub(words, element, slug)
    slug = re.sub(r"^(?:creative-?commons|cc)-(?=by)", "", slug)
    if _CC0_NAME.match(slug):
        return "cc0"
    if _PD_NAME.match(slug):
        return "pdm"
    match = _CC_NAME.match(slug)
    if match:
        return _cc_family(match.group("elements"))
    return re.sub(r"[^a-z0-9.+]+", "-", slug).strip("-") or None


def license_id(value: str | None) -> str | None:
    """The licence in one spelling (``CC BY-SA 4.0`` -> ``cc-by-sa-4.0``, ``CC0`` -> ``cc0-1.0``); None if unknown.

    Creative Commons ids keep their version and port (``cc-by-sa-3.0-de``); other licences are their family slug.
    """
    family = license_family(value)
    if family is None or family not in CC_FAMILIES:
        return {"cc0": "cc0-1.0"}.get(family or "", family)
    text = str(value).strip().lower()
    version = re.search(r"(?<![\d.])(\d)(?:\.(\d))?(?![\d.])", text)
    port = re.search(r"\d(?:\.\d)?[\s/_-]+([a-z]{2})/?$", text)
    name = f"cc-{family}"
    if version:
        name += f"-{version.group(1)}.{version.group(2) or 0}"
        if port and port.group(1) not in {"by", "nc", "nd", "sa"}:
            name += f"-{port.group(1)}"
    return name


def _cc_family(elements: str) -> str:
    """Creative Commons elements in the canonical order (``sa-by`` is written ``by-sa``)."""
    present = set(elements.split("-"))
    return "-".join(e for e in _CC_ELEMENTS if e in present)


def parse_license_list(text: str) -> tuple[str, ...]:
    """``--licenses cc0,pdm,by,by-sa`` as families (any spelling of a licence names its family)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError(f"--licenses {text!r} names no licence; give families such as cc0,pdm,by,by-sa")
    families = []
    for name in names:
        family = license_family(name)
        if family is None:
            raise ConfigError(
                f"--licenses: {name!r} is not a licence; to publish rows without a known licence "
                "pass --allow-unknown-license instead"
            )
        families.append(family)
    return tuple(dict.fromkeys(families))


@dataclass(frozen=True)
class LicensePolicy:
    """Which licence families are published (None: every known licence) and whether unknown ones are let through."""

    families: tuple[str, ...] | None = None
    allow_unknown: bool = False

    def __post_init__(self) -> None:
        if self.families is not None and not self.families:
            raise ConfigError("--licenses names no licence family; leave it out to publish every known licence")
        for family in self.families or ():
            if license_family(family) != family:
                raise ConfigError(
                    f"--licenses: {family!r} is not a licence family; use e.g. {', '.join(KNOWN_FAMILIES)}"
                )

    def refusal(self, license: str | None) -> str | None:
        """Why a row with this licence is left out, or None when it is published."""
        family = license_family(license)
        if family is None:
            return None if self.allow_unknown else "unknown licence (pass --allow-unknown-license to publish)"
        if self.families is not None and family not in self.families:
            return f"licence family {family!r} not in --licenses"
        return None

    def describe(self) -> str:
        """One sentence for the dataset card."""
        families = "every known licence" if self.families is None else "licence families " + ", ".join(self.families)
        unknown = "rows with an unknown licence were published" if self.allow_unknown else "unknown licences refused"
        return f"{families}; {unknown}"

"""The dashboard in the member's language: gettext catalogs, and numbers and dates for their locale.

A page's language is the one the member chose with the switch (a cookie, `tally_lang`), else the first of
their browser's `Accept-Language` that has a catalog, else English. Its numbers and dates follow the
browser's locale for that language (de-AT, es-MX …: Babel's CLDR data); the API, the CLI, exports and SPEC
keep their exact formats, and so do a page's machine-read attributes (`data-value`, `value=`).

The catalogs are `locale/LANG/LC_MESSAGES/tally.po` beside this module, compiled to `tally.mo` (shipped in
the package; tests/web/test_catalogs.py fails when one misses a message or is stale). After changing a
message: `scripts/catalogs.sh` extracts, updates and compiles them.

Babel earns its place: CLDR's number, date and list formats for every locale, `Accept-Language`
negotiation, and the message extraction and compilation the catalogs need; the standard library's gettext
reads the compiled catalogs.
"""

from __future__ import annotations

import gettext
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Final

from aiohttp import web
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_skeleton
from babel.numbers import format_decimal, get_decimal_symbol

#: The catalogs there are, each complete; English is the source language (no catalog needed).
LANGUAGES: Final = {"en": "English", "de": "Deutsch", "es": "Español"}
DEFAULT: Final = "en"
COOKIE: Final = "tally_lang"
DOMAIN: Final = "tally"
MAX_ACCEPT: Final = 32  # Accept-Language entries read; the rest is ignored (a header is client input)


@dataclass(frozen=True, slots=True)
class Language:
    """What a page is written in: a catalog and the locale its numbers and dates follow."""

    code: str  # a key of LANGUAGES
    locale: Locale
    translations: gettext.NullTranslations


@cache
def _translations(code: str) -> gettext.NullTranslations:
    if code == DEFAULT:
        return gettext.NullTranslations()
    with resources.files(__package__).joinpath("locale", code, "LC_MESSAGES", f"{DOMAIN}.mo").open("rb") as f:
        return gettext.GNUTranslations(f)


def _accepted(header: str) -> list[str]:
    """Accept-Language's tags, most wanted first (q=0 dropped)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:MAX_ACCEPT]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if tag and tag != "*" and q > 0 and len(tag) <= 35:
            ranked.append((-q, i, tag.replace("_", "-")))
    return [tag for _, _, tag in sorted(ranked)]


def _locale(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag, sep="-")
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def choose(cookie: str | None, accept_language: str | None) -> Language:
    """The language of a page: the switch's choice, else the browser's first with a catalog, else English;
    its locale is the browser's for that language (so de-AT formats as in Austria)."""
    tags = _accepted(accept_language or "")
    code = cookie if cookie in LANGUAGES else None
    if code is None:
        code = next((t.split("-")[0].lower() for t in tags if t.split("-")[0].lower() in LANGUAGES), DEFAULT)
    locale = next((loc for t in tags if t.split("-")[0].lower() == code and (loc := _locale(t)) is not None),
                  None) or Locale.parse(code)
    return Language(code, locale, _translations(code))


_current: ContextVar[Language | None] = ContextVar("tally_language", default=None)


def current() -> Language:
    return _current.get() or Language(DEFAULT, Locale.parse(DEFAULT), _translations(DEFAULT))


def _(message: str) -> str:
    """`message` in the page's language."""
    return current().translations.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return current().translations.ngettext(singular, plural, n)


@web.middleware
async def language_middleware(request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Sets the language for everything one request renders (each request runs in its own task)."""
    token = _current.set(choose(request.cookies.get(COOKIE), request.headers.get("Accept-Language")))
    try:
        return await handler(request)
    finally:
        _current.reset(token)


# ---- numbers and dates, on the page only ----------------------------------------------------------


def number(value: Decimal | int | str) -> str:
    """A decimal as the locale writes it, with exactly the places it has ("4.50" → "4,50" in German)."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    exponent = d.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    pattern = "#,##0" + ("." + "0" * places if places else "")
    return format_decimal(d, format=pattern, locale=current().locale, decimal_quantization=True)


def day(value: date | int, zone: tzinfo = UTC) -> str:
    """A day (or the day, in `zone`, of an epoch-millisecond time) in the locale's medium form."""
    d = value if isinstance(value, date) else datetime.fromtimestamp(value / 1000, zone).date()
    return format_date(d, format="medium", locale=current().locale)


def short_day(value: date) -> str:
    """Month and day only, for a chart's axis."""
    return format_skeleton("MMMd", value, locale=current().locale)


def moment(ms: int, zone: tzinfo = UTC) -> str:
    """An epoch-millisecond time, to the minute, in the locale's form, in `zone` (a ledger's time zone, SPEC.md
    §14; UTC where no ledger decides) with the zone's abbreviation ("CET", "UTC", "-03")."""
    when = datetime.fromtimestamp(ms / 1000, zone)
    return f"{format_datetime(when, format='short', tzinfo=zone, locale=current().locale)} {when.tzname() or 'UTC'}"


def decimal_symbol() -> str:
    return get_decimal_symbol(current().locale)


def read_decimal(text: str) -> str:
    """A decimal as a member types it, as SPEC's decimal string: where the locale writes a decimal comma,
    "2,5" is 2.5 (a comma is never a thousands separator in input)."""
    text = text.strip()
    if decimal_symbol() == "," and "," in text and "." not in text and text.count(",") == 1:
        return text.replace(",", ".")
    return text

"""The dashboard's message catalogs: extract, update, compile.

    python scripts/catalogs.py          # after changing a message in node/web/*.py

It extracts every `_("…")` and `ngettext("…", "…", n)` of node/web/*.py into node/web/locale/tally.pot,
merges it into each language's tally.po (new messages come in empty, gone ones are dropped, translations
kept), and compiles each tally.po to the tally.mo the node reads. Then translate what is empty and run it
again: tests/web/test_catalogs.py fails while a catalog misses a message or its .mo is stale.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "node" / "web"
LOCALE = WEB / "locale"
LANGUAGES = ("de", "es")  # English is the source language
KEYWORDS = {"_": None, "ngettext": (1, 2)}


def template() -> Catalog:
    """Every message of node/web/*.py, with where it is used."""
    catalog = Catalog(project="tally", fuzzy=False)
    for path in sorted(WEB.glob("*.py")):
        for line, message, _comments, _context in extract_from_file("python", str(path), keywords=KEYWORDS):
            catalog.add(message, locations=[(path.relative_to(ROOT).as_posix(), line)])
    return catalog


def po_path(lang: str) -> Path:
    return LOCALE / lang / "LC_MESSAGES" / "tally.po"


def read(lang: str) -> Catalog:
    with po_path(lang).open("rb") as f:
        return read_po(f, locale=lang)


def missing(pot: Catalog, catalog: Catalog) -> list[str]:
    """The messages of `pot` that `catalog` lacks, leaves empty or marks fuzzy."""
    out = []
    for message in pot:
        if not message.id:
            continue
        found = catalog.get(message.id)
        strings = found.string if found is not None and isinstance(found.string, tuple) else (
            (found.string,) if found is not None else ())
        if found is None or found.fuzzy or not strings or not all(strings):
            out.append(message.id if isinstance(message.id, str) else message.id[0])
    return out


def compiled(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


def _po_bytes(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_po(out, catalog, width=100, omit_header=False, sort_output=False, no_location=False)
    return out.getvalue()


def main() -> int:
    pot = template()
    LOCALE.mkdir(parents=True, exist_ok=True)
    (LOCALE / "tally.pot").write_bytes(_po_bytes(pot))
    for lang in LANGUAGES:
        path = po_path(lang)
        path.parent.mkdir(parents=True, exist_ok=True)
        catalog = read(lang) if path.exists() else Catalog(locale=lang, project="tally")
        catalog.update(pot, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        path.write_bytes(_po_bytes(catalog))
        path.with_suffix(".mo").write_bytes(compiled(read(lang)))
        print(f"{lang}: {len(pot)} messages, {len(missing(pot, read(lang)))} to translate")
    return 0


if __name__ == "__main__":
    sys.exit(main())

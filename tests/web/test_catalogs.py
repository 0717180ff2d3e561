"""The dashboard's catalogs are complete and current: every message of node/web/*.py is translated in
every language, with the same placeholders, and each shipped .mo is its .po compiled.

Fails with the messages to translate (run `python scripts/catalogs.py`, translate, run it again).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

PLACEHOLDER = re.compile(r"\{[a-z_]*\}")


@pytest.fixture(scope="module")
def catalogs() -> ModuleType:
    """scripts/catalogs.py (scripts/ is not a package)."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "catalogs.py"
    spec = importlib.util.spec_from_file_location("catalogs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_messages_to_translate(catalogs: ModuleType) -> None:
    assert len(catalogs.template()) > 100


@pytest.mark.parametrize("lang", ["de", "es"])
def test_every_message_is_translated(catalogs: ModuleType, lang: str) -> None:
    missing = catalogs.missing(catalogs.template(), catalogs.read(lang))
    assert not missing, f"{lang}: translate these in {catalogs.po_path(lang)} (python scripts/catalogs.py): {missing}"


@pytest.mark.parametrize("lang", ["de", "es"])
def test_translations_keep_the_placeholders(catalogs: ModuleType, lang: str) -> None:
    wrong = []
    for message in catalogs.read(lang):
        if not message.id or not message.string:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set(PLACEHOLDER.findall(ids[-1]))
        wrong += [(message.id, s) for s in strings if set(PLACEHOLDER.findall(s)) != wanted]
    assert not wrong, wrong


@pytest.mark.parametrize("lang", ["de", "es"])
def test_the_shipped_catalog_is_compiled_from_its_po(catalogs: ModuleType, lang: str) -> None:
    shipped = catalogs.po_path(lang).with_suffix(".mo").read_bytes()
    assert shipped == catalogs.compiled(catalogs.read(lang)), "run python scripts/catalogs.py"


def test_a_missing_or_empty_message_is_caught(catalogs: ModuleType) -> None:
    """The check above can fail: a catalog without one of the messages, or with it empty, misses it."""
    pot = catalogs.template()
    first, second = [m.id for m in pot if m.id][:2]
    catalog = catalogs.read("de")
    catalog.delete(first)
    catalog.get(second).string = ""
    assert catalogs.missing(pot, catalog) == [first, second]

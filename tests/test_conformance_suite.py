"""The checked-in conformance suite stays what the reference code computes (runs on every landing).

A change to protocol behaviour that changes an expected output fails here until
`python scripts/gen_conformance.py` rewrites tests/conformance/ (review the diff: it is
what another implementation will see change). tests/conformance/test_conformance.py checks
each case one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent / "conformance"


def test_the_conformance_files_are_current(script: Callable[[str], ModuleType]) -> None:
    texts = script("gen_conformance").render()
    stale = sorted(name for name, text in texts.items()
                   if not (HERE / name).exists() or (HERE / name).read_text(encoding="utf-8") != text)
    assert not stale, f"run scripts/gen_conformance.py: {stale} differ from what it writes"

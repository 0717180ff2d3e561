"""SPEC.md §9's table is protocol.errors.ERRORS, row for row: code, HTTP status, whose fault, meaning."""

from __future__ import annotations

import re
from pathlib import Path

from protocol import CODES
from protocol.errors import ERRORS

SPEC = (Path(__file__).resolve().parents[1] / "SPEC.md").read_text()
SECTION_9 = SPEC[SPEC.index("## 9. Error codes") : SPEC.index("## 10.")]
ROWS = re.findall(r"^\| `([a-z_]+)` \| ([0-9]{3}) \| (local|remote|either) \| (.*) \|$", SECTION_9, flags=re.M)
DOCUMENTED = {row[0] for row in ROWS}


def test_every_code_is_in_the_spec_table() -> None:
    missing = set(CODES) - DOCUMENTED
    assert not missing, f"codes missing from SPEC.md §9: {sorted(missing)}"


def test_spec_lists_no_unknown_code() -> None:
    unknown = DOCUMENTED - set(CODES)
    assert not unknown, f"SPEC.md §9 documents codes the code does not have: {sorted(unknown)}"


def test_the_spec_table_is_the_code_table() -> None:
    """Same rows in the same order; after a change to protocol/errors.py, rewrite §9's table from it."""
    table = [(e.code, str(e.status), str(e.fault), e.meaning) for e in ERRORS]
    assert table == ROWS


def test_every_table_row_parses() -> None:
    lines = [line for line in SECTION_9.splitlines() if line.startswith("| `")]
    assert len(lines) == len(ROWS) == len(ERRORS)


def test_the_table_is_well_formed() -> None:
    codes = [e.code for e in ERRORS]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[a-z][a-z_]*[a-z]", c) for c in codes)
    assert all(400 <= e.status <= 599 and e.meaning and "|" not in e.meaning for e in ERRORS)

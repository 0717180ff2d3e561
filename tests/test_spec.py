"""SPEC.md §9 documents exactly the error codes the code can raise."""

from __future__ import annotations

import re
from pathlib import Path

from protocol import CODES

SPEC = (Path(__file__).resolve().parents[1] / "SPEC.md").read_text()
SECTION_9 = SPEC[SPEC.index("## 9. Error codes") : SPEC.index("## 10.")]
DOCUMENTED = set(re.findall(r"^\| `([a-z_]+)` \|", SECTION_9, flags=re.M))


def test_every_code_is_in_the_spec_table() -> None:
    missing = set(CODES) - DOCUMENTED
    assert not missing, f"codes missing from SPEC.md §9: {sorted(missing)}"


def test_spec_lists_no_unknown_code() -> None:
    unknown = DOCUMENTED - set(CODES)
    assert not unknown, f"SPEC.md §9 documents codes the code does not have: {sorted(unknown)}"

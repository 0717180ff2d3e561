"""SPEC.md documents every error code the code can raise."""

from __future__ import annotations

import re
from pathlib import Path

from protocol import CODES

SPEC = (Path(__file__).resolve().parents[1] / "SPEC.md").read_text()


def test_every_code_is_in_the_spec_table() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", SPEC, flags=re.M))
    missing = set(CODES) - documented
    assert not missing, f"codes missing from SPEC.md: {sorted(missing)}"


def test_spec_lists_no_unknown_code() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", SPEC, flags=re.M))
    # the table rows of §9 only; other tables use backticked names too (header keys)
    header_keys = {"v", "author", "ledger", "seq", "prev", "ts", "kind", "payload", "size", "sig"}
    unknown = documented - set(CODES) - header_keys
    assert not unknown, f"SPEC.md documents codes the code does not have: {sorted(unknown)}"

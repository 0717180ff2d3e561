"""The conformance suite (tests/conformance/*.json): the node passes every case, the committed files are what
scripts/gen_conformance.py writes byte for byte, and every SPEC.md section has a case (coverage.json)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "conformance"


FILES = sorted(p.stem for p in HERE.glob("*.json") if p.name != "coverage.json")
SUITE = {name: json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))["cases"] for name in FILES}
LEDGERS = {c["id"]: c for c in SUITE["ledgers"]}
CASES = [c for cases in SUITE.values() for c in cases]


@pytest.fixture(scope="module")
def gen(script: Callable[[str], ModuleType]) -> ModuleType:
    return script("gen_conformance")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_the_node_passes_the_case(case: dict[str, Any], gen: ModuleType) -> None:
    inputs = {k: v for k, v in case.items() if k != "expect"}
    assert gen.evaluate(inputs, LEDGERS) == case["expect"]


def test_the_committed_files_are_what_the_generator_writes(gen: ModuleType) -> None:
    assert sorted(gen.FILES) == FILES
    texts = gen.render()
    on_disk = {p.name for p in HERE.glob("*.json")}
    assert on_disk == set(texts)
    for name, text in texts.items():
        assert (HERE / name).read_text(encoding="utf-8") == text, f"{name}: run scripts/gen_conformance.py"


def test_every_spec_section_has_a_case() -> None:
    coverage = json.loads((HERE / "coverage.json").read_text(encoding="utf-8"))
    table, node_only = coverage["sections"], coverage["node_only"]
    headings = re.findall(r"^(#{2,3}) ([0-9]+(?:\.[0-9]+)?)\.? ", (ROOT / "SPEC.md").read_text(encoding="utf-8"),
                          flags=re.MULTILINE)
    assert [number for _, number in headings] == list(table)
    ids = {c["id"] for c in CASES}
    for level, number in headings:
        cases = table[number]
        assert set(cases) <= ids
        if level == "##":
            assert cases, f"SPEC.md §{number} has no conformance case"
        else:
            assert cases or node_only.get(number), f"SPEC.md §{number} has no case and no reason why not"
    assert len(ids) == len(CASES)  # case ids are unique


def test_each_case_type_has_cases_with_and_without_a_refusal() -> None:
    by_type: dict[str, set[bool]] = {}
    for c in CASES:
        by_type.setdefault(c["type"], set()).add("code" in c["expect"])
    refusing = {t for t, kinds in by_type.items() if True in kinds}
    assert {"dagcbor", "json_body", "did", "entry", "stored_entry", "chain", "fork", "identity_payload",
            "sync_message", "rules", "distribution", "pledge"} <= refusing


@pytest.mark.parametrize("case", [c for c in CASES if c["type"] == "entry_json"], ids=lambda c: c["id"])
def test_the_api_shows_an_entry_as_the_case_says(case: dict[str, Any]) -> None:
    from node.views import entry_row
    from protocol import decode_entry

    entry = decode_entry(bytes.fromhex(case["header"]), None if case["payload"] is None else
                         bytes.fromhex(case["payload"]))
    assert entry_row(entry) == case["expect"]["entry"]


def test_a_node_announces_itself_as_the_discovery_case_says() -> None:
    from node.sync.discovery import SERVICE_TYPE, txt_properties

    (case,) = [c for c in CASES if c["type"] == "discovery"]
    assert {"service_type": SERVICE_TYPE, "txt": txt_properties(case["did"])} == case["expect"]

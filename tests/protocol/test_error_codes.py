"""Error codes: every code protocol/ raises is registered, and codes are stable strings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from protocol.errors import CODES, InvalidData, LocalError, TallyError

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
ERROR_CLASSES = {"TallyError", "InvalidData", "LocalError"}


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def raised_codes(source: str) -> tuple[set[str], list[int]]:
    """The literal codes passed to the error classes, and the lines where the code is not a literal."""
    codes: set[str] = set()
    dynamic: list[int] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or _called_name(node) not in ERROR_CLASSES:
            continue
        code_arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "code"), None)
        if isinstance(code_arg, ast.Constant) and isinstance(code_arg.value, str):
            codes.add(code_arg.value)
        else:
            dynamic.append(node.lineno)
    return codes, dynamic


def all_raised() -> dict[str, set[str]]:
    by_file = {}
    for path in sorted(PROTOCOL.glob("*.py")):
        codes, dynamic = raised_codes(path.read_text())
        assert not dynamic, f"{path.name}: error code not a string literal at lines {dynamic}"
        by_file[path.name] = codes
    return by_file


def test_every_raised_code_is_registered() -> None:
    by_file = all_raised()
    unknown = {f"{name}: {code}" for name, codes in by_file.items() for code in codes - CODES.keys()}
    assert not unknown
    raised = set().union(*by_file.values())
    # the scan itself works: it sees codes from several modules
    assert {"bad_encoding", "bad_cid", "bad_did", "bad_signature", "seq_gap", "bad_fork_proof", "bad_body"} <= raised


def test_scanner_sees_literal_and_dynamic_codes() -> None:
    codes, dynamic = raised_codes(
        'raise InvalidData("bad_cid", "x")\n'
        'raise errors.LocalError(\n    "no_identity", "y")\n'
        'raise InvalidData(code, "z")\n'
        'raise TallyError(code="oversize", message="m")\n'
    )
    assert codes == {"bad_cid", "no_identity", "oversize"}
    assert dynamic == [4]


def test_codes_are_snake_case_with_a_meaning() -> None:
    for code, meaning in CODES.items():
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", code), code
        assert meaning.strip(), code


def test_unregistered_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        InvalidData("no_such_code", "message")
    with pytest.raises(ValueError):
        LocalError("", "message")


def test_error_shape() -> None:
    exc = InvalidData("bad_cid", "not a CID")
    assert isinstance(exc, TallyError)
    assert (exc.code, exc.message, str(exc)) == ("bad_cid", "not a CID", "bad_cid: not a CID")
    assert isinstance(LocalError("no_identity", "run tally init"), TallyError)
    assert not issubclass(LocalError, InvalidData) and not issubclass(InvalidData, LocalError)

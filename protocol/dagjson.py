"""The JSON face of DAG-CBOR values, as the CLI and API show and accept them.

Objects, lists, strings, integers, booleans and null map one to one. Bytes and
links take the DAG-JSON forms `{"/": {"bytes": "<base64, no padding>"}}` and
`{"/": "<CID>"}`. Floats are refused: quantities are decimal strings.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from . import dagcbor
from .cid import CID
from .errors import InvalidData


def to_json_value(value: Any) -> Any:
    if isinstance(value, CID):
        return {"/": str(value)}
    if isinstance(value, bytes):
        return {"/": {"bytes": base64.b64encode(value).decode("ascii").rstrip("=")}}
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    return value


def from_json_value(value: Any, _depth: int = 0) -> Any:
    """Convert parsed JSON to DAG values; raise `bad_body` for what DAG-CBOR cannot hold."""
    if isinstance(value, float):
        raise InvalidData("bad_body", "floats are not allowed; write quantities as decimal strings")
    if isinstance(value, dict) and set(value) == {"/"}:
        return _special(value["/"])
    if isinstance(value, (list, dict)) and _depth >= dagcbor.MAX_DEPTH:
        # Checked here, not only by check_value: deep JSON must not exhaust the Python stack.
        raise InvalidData("bad_body", f"nested deeper than {dagcbor.MAX_DEPTH}")
    if isinstance(value, list):
        return [from_json_value(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: from_json_value(v, _depth + 1) for k, v in value.items()}
    return value


def _special(inner: Any) -> CID | bytes:
    if isinstance(inner, str):
        try:
            return CID.parse(inner)
        except InvalidData as exc:
            raise InvalidData("bad_body", f"bad link {{\"/\": …}}: {exc.message}") from None
    if isinstance(inner, dict) and set(inner) == {"bytes"} and isinstance(inner["bytes"], str):
        text = inner["bytes"]
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidData("bad_body", "bad base64 in {\"/\": {\"bytes\": …}}") from None
    raise InvalidData("bad_body", 'a map with the sole key "/" must be a link or bytes')


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise InvalidData("bad_body", "duplicate key in a JSON object")
    return result


def _no_constant(name: str) -> Any:
    raise InvalidData("bad_body", f"{name} is not a JSON value Tally accepts")


def parse_body(text: str) -> dict[str, Any]:
    """Parse an entry body given as JSON text into a DAG-CBOR map."""
    try:
        parsed = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InvalidData("bad_body", f"not JSON: {exc}") from None
    except RecursionError:
        raise InvalidData("bad_body", "JSON nested too deeply") from None
    body = from_json_value(parsed)
    if not isinstance(body, dict):  # checked after conversion: {"/": …} is a link or bytes
        raise InvalidData("bad_body", "the body must be a JSON object")
    try:
        dagcbor.check_value(body)
    except InvalidData as exc:
        raise InvalidData("bad_body", exc.message) from None
    return body

"""Entry bodies as JSON (protocol/dagjson.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from protocol_helpers import FAST, bodies, cid_of, strict_equal

from protocol import dagcbor
from protocol.cid import CODEC_RAW
from protocol.dagjson import from_json_value, parse_body, to_json_value
from protocol.errors import InvalidData

LINK = cid_of(b"block")
RAW_LINK = cid_of(b"raw", CODEC_RAW)


def bad_body(text: str) -> None:
    with pytest.raises(InvalidData) as info:
        parse_body(text)
    assert info.value.code == "bad_body"


def test_objects_accepted() -> None:
    text = '{"a": 1, "b": [true, false, null, "x", -5], "c": {"d": {}}, "e": [], "big": 18446744073709551615,' \
           ' "small": -18446744073709551616, "u": "\\u00fc\\u6c34"}'
    assert strict_equal(parse_body(text), {
        "a": 1, "b": [True, False, None, "x", -5], "c": {"d": {}}, "e": [], "big": 2**64 - 1, "small": -(2**64),
        "u": "\u00fc\u6c34",
    })
    assert parse_body("{}") == {}


@pytest.mark.parametrize("text", ["[]", "[{}]", "1", '"x"', "null", "true", '{"/": "' + str(LINK) + '"}',
                                  '{"/": {"bytes": "AA"}}'])
def test_non_object_refused(text: str) -> None:
    bad_body(text)


@pytest.mark.parametrize(
    "text",
    ['{"q": 1.5}', '{"q": 1e3}', '{"q": 1E3}', '{"q": 1.0}', '{"q": -0.0}', '{"q": 1e-2}', '{"q": 0.1}',
     '{"q": [1, 2.5]}', '{"q": {"r": 3.0}}', '{"q": 1e400}'],
)
def test_floats_refused(text: str) -> None:
    bad_body(text)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_refused(constant: str) -> None:
    bad_body(f'{{"q": {constant}}}')
    bad_body(f'{{"q": [{constant}]}}')


@pytest.mark.parametrize("text", ['{"a": 1, "a": 2}', '{"a": 1, "a": 1}', '{"x": {"b": 1, "b": 2}}',
                                  '{"x": [{"c": 1, "c": 1}]}'])
def test_duplicate_keys_refused(text: str) -> None:
    bad_body(text)


@pytest.mark.parametrize(
    "text",
    ['{"q": 18446744073709551616}', '{"q": -18446744073709551617}', '{"q": [1' + "0" * 40 + "]}"],
)
def test_integers_outside_64_bits_refused(text: str) -> None:
    bad_body(text)


@pytest.mark.parametrize("b64", ["!!!!", "A", "AAAAA", "AA=A", "AA-_", "A A", "AA\\n", "\\u00e9A"])
def test_bad_base64_refused(b64: str) -> None:
    bad_body(f'{{"b": {{"/": {{"bytes": "{b64}"}}}}}}')


@pytest.mark.parametrize(
    "inner",
    [
        '"QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"',
        '"' + str(LINK)[:-1] + '"',
        '"' + str(LINK).upper() + '"',
        '"' + str(LINK) + '="',
        '""',
        "5",
        "null",
        "[]",
        '{"bytes": 5}',
        '{"bytes": "AA", "x": 1}',
        '{"byte": "AA"}',
        "{}",
    ],
)
def test_bad_links_refused(inner: str) -> None:
    bad_body(f'{{"l": {{"/": {inner}}}}}')
    bad_body(f'{{"l": [{{"/": {inner}}}]}}')


@pytest.mark.parametrize("text", ["", "{", '{"a": }', "{'a': 1}", '{"a": 1,}', '{"a": 1} x', "\x00"])
def test_not_json_refused(text: str) -> None:
    bad_body(text)


def _nested_json(containers: int) -> str:
    """A body of `containers` nested containers: the object, then lists."""
    lists = containers - 1
    return '{"a": ' + "[" * lists + "]" * lists + "}"


def test_depth_limit() -> None:
    body = parse_body(_nested_json(dagcbor.MAX_DEPTH))
    assert dagcbor.decode(dagcbor.encode(body), max_bytes=1000) == body
    bad_body(_nested_json(dagcbor.MAX_DEPTH + 1))


@pytest.mark.parametrize("containers", [200, 500, 900, 990, 1_000, 100_000])
def test_deep_json_is_bad_body_not_recursion_error(containers: int) -> None:
    bad_body(_nested_json(containers))


def test_from_json_value_bounds_depth() -> None:
    deep: Any = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(InvalidData) as info:
        from_json_value({"a": deep})
    assert info.value.code == "bad_body"


def test_lone_surrogate_refused() -> None:
    bad_body('{"s": "\\ud800"}')
    bad_body('{"\\udfff": 1}')
    # a correctly paired surrogate is one character
    assert parse_body('{"s": "\\ud83d\\ude00"}') == {"s": "\U0001F600"}


def test_links_and_bytes_parse() -> None:
    body = parse_body(json.dumps({"l": {"/": str(LINK)}, "r": {"/": str(RAW_LINK)},
                                  "b": {"/": {"bytes": "aGVsbG8"}}, "e": {"/": {"bytes": ""}}}))
    assert strict_equal(body, {"l": LINK, "r": RAW_LINK, "b": b"hello", "e": b""})


def test_to_json_value_forms() -> None:
    assert to_json_value(LINK) == {"/": str(LINK)}
    assert to_json_value(b"hello") == {"/": {"bytes": "aGVsbG8"}}  # standard alphabet, no padding
    assert to_json_value(b"\xfb\xff") == {"/": {"bytes": "+/8"}}
    assert to_json_value({"a": [b"", LINK, 1, None, True, "s"]}) == {
        "a": [{"/": {"bytes": ""}}, {"/": str(LINK)}, 1, None, True, "s"]
    }


@FAST
@given(bodies)
def test_body_round_trips_through_json(body: dict[str, Any]) -> None:
    text = json.dumps(to_json_value(body))
    back = parse_body(text)
    assert strict_equal(back, body)
    assert dagcbor.encode(back) == dagcbor.encode(body)


def test_from_json_value_refuses_floats() -> None:
    with pytest.raises(InvalidData) as info:
        from_json_value({"a": [1, 2.0]})
    assert info.value.code == "bad_body"

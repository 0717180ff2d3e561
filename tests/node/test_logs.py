"""The node's log lines: `ts level logger message key=value…`, one line per event."""

from __future__ import annotations

import json
import logging
import re
import sys

from node.logs import REDACTED, LineFormatter


def line(msg: str, *args: object, exc: bool = False, **extra: object) -> str:
    record = logging.LogRecord("node.test", logging.INFO, __file__, 1, msg, args, None)
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:

            record.exc_info = sys.exc_info()
    record.__dict__.update(extra)
    return LineFormatter().format(record)


def test_shape_and_fields() -> None:
    text = line("request %s", "done", method="GET", status=200, ms=1.5, owner=True, remote=None)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info node.test request done "
        r"method=GET status=200 ms=1.5 owner=true remote=null",
        text,
    ), text


def test_values_are_quoted_when_needed_and_lines_stay_single() -> None:
    text = line("multi\nline", path="/a b", note='say "hi"', eq="a=b", empty="")
    assert "\n" not in text
    assert 'path="/a b"' in text and r'note="say \"hi\""' in text and 'eq="a=b"' in text and 'empty=""' in text
    assert "multi\\nline" in text
    failed = line("failed", exc=True)
    assert "\n" not in failed
    exc = failed.split(" exc=", 1)[1]
    assert "ValueError: boom" in json.loads(exc)


def test_secret_looking_fields_are_redacted() -> None:
    text = line("x", token="s3cret", authorization="Bearer s3cret", api_token="s3cret", key="s3cret", did="did:key:z")
    assert "s3cret" not in text
    assert text.count(REDACTED) == 4 and "did=did:key:z" in text

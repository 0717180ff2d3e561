"""The node's log format: one line per event, `ts level logger message key=value…`.

Fields come from `extra={…}` on the logging call. Values that hold spaces,
quotes, `=` or control characters are JSON-quoted, so a line always parses
back. Fields whose names look secret (tokens, keys, passwords) are redacted:
callers must not log them anyway, this is the second line of defence.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO

#: Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_BARE: Final = re.compile(r'[^\s"=\\]+')
_SECRET: Final = re.compile(r"token|secret|password|passphrase|authorization|seed|private|^key$", re.I)
REDACTED: Final = "[redacted]"


def _value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, bool):
        text = json.dumps(value)  # null, true, false
    else:
        text = str(value)
    if _BARE.fullmatch(text) and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


class LineFormatter(logging.Formatter):
    """`2024-05-01T12:00:00.123Z info node.app request method=GET path=/api/v1/identity status=200`."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        parts = [ts, record.levelname.lower(), record.name, _one_line(record.getMessage())]
        for name, value in vars(record).items():
            if name in _STANDARD or name.startswith("_"):
                continue
            parts.append(f"{name}={REDACTED if _SECRET.search(name) else _value(value)}")
        if record.exc_info:
            parts.append(f"exc={_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every logger's events to `stream` (stderr) as lines, replacing other handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LineFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)

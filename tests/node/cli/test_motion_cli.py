"""`tally motion close --early`: a version 1 proposer closes a vote before its time only when they say so, and
`motion show --json` then says it was closed early, by whom and when. A real home and store, no node running."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import TallyRunner, last_line


def test_closing_before_the_time_needs_early(tally: TallyRunner, tmp_path: Path) -> None:
    me = last_line(tally("init").stdout)
    rules = tmp_path / "v1.toml"
    rules.write_text("version = 1\n")
    ledger = last_line(tally("ledger", "create", "Old coop", "--rules", str(rules)).stdout)
    motion = last_line(tally("motion", "create", ledger, "--title", "Paint it green?", "--option", "yes",
                             "--option", "no", "--closes", "2090-03-01").stdout)
    refused = tally("motion", "close", motion)
    assert refused.returncode == 1 and refused.stderr.startswith("error: motion_not_closed: "), refused.stderr
    assert "--early" in refused.stderr
    assert json.loads(tally("motion", "show", motion, "--json").stdout)["closed"] is False
    closed = tally("motion", "close", motion, "--early")
    assert closed.returncode == 0, closed.stderr
    shown = json.loads(tally("motion", "show", motion, "--json").stdout)
    assert shown["closed"] is True and shown["closed_early"] is True and shown["closed_by"] == me
    assert shown["closed_at"] < shown["closes"] == "2090-03-01T00:00:00Z"
    text = tally("motion", "show", motion).stdout
    assert f"closed\tby {me} at {shown['closed_at']}\tearly: its closing time was 2090-03-01T00:00:00Z" in text

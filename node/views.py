"""How stored things are shown: the rows `--json` prints and the API answers with.

The CLI and the API share these, so `tally log --json` and
`GET /api/v1/ledgers/{id}/entries` agree field for field.
"""

from __future__ import annotations

import base64
from typing import Any

from node.store.rows import LedgerInfo
from protocol import Entry, ForkProof, to_json_value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def ledger_row(info: LedgerInfo) -> dict[str, Any]:
    """A ledger as `tally ledger list --json` prints it."""
    return {
        "id": str(info.id),
        "name": info.name,
        "visibility": info.visibility,
        "founder": info.founder,
        "created": info.created,
        "entries": info.entries,
    }


def entry_row(entry: Entry) -> dict[str, Any]:
    """An entry as a `--json` row: top-level ids as plain strings, the body as DAG-JSON."""
    h = entry.header
    return {
        "id": str(entry.id),
        "author": entry.author,
        "ledger": str(entry.ledger_id),
        "seq": h.seq,
        "prev": None if h.prev is None else str(h.prev),
        "ts": h.ts,
        "kind": h.kind,
        "body": None if entry.body is None else to_json_value(entry.body),
        "header_raw": _b64(entry.header_raw),
        "payload_raw": None if entry.payload_raw is None else _b64(entry.payload_raw),
    }


def fork_row(proof: ForkProof) -> dict[str, Any]:
    """A fork as `tally forks --json` prints it; `proof` is the encoded proof (SPEC.md §7), base64."""
    return {
        "author": proof.author,
        "ledger": str(proof.a.ledger_id),
        "seq": proof.seq,
        "a": str(proof.a.id),
        "b": str(proof.b.id),
        "proof": _b64(proof.encode()),
    }

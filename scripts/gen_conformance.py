"""Generate tests/conformance/: the protocol's conformance suite, as JSON another implementation can run.

Each file holds cases of a few types (`type`); each case has an `id`, the SPEC.md sections it
exercises (`spec`), its inputs (bytes as lower-case hex, bodies in the DAG-JSON form of SPEC.md §8)
and the expected outputs the reference code (protocol/) computes from those inputs. `evaluate`
computes the outputs of one case from its inputs alone; this script uses it to write the expected
values, and tests/conformance/test_conformance.py uses it to check that the committed files are
still what the node computes and what this script writes, byte for byte. coverage.json lists the
cases of each SPEC.md section; every section has at least one. tests/conformance/README.md says
how to run the suite without Python.

    python scripts/gen_conformance.py            # rewrite tests/conformance/*.json
    python scripts/gen_conformance.py --check    # exit 1 if a committed file differs
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protocol import dagcbor  # noqa: E402
from protocol.amounts import format_amount  # noqa: E402
from protocol.chain import verify_chain  # noqa: E402
from protocol.cid import CID  # noqa: E402
from protocol.dagjson import from_json_value, parse_body, to_json_value  # noqa: E402
from protocol.decimals import format_decimal  # noqa: E402
from protocol.distribution import distribute  # noqa: E402
from protocol.entry import (  # noqa: E402
    GENESIS_KIND,
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    SIGNING_PREFIX,
    Entry,
    create_entry,
    decode_entry,
    decode_stored_entry,
)
from protocol.errors import InvalidData  # noqa: E402
from protocol.fork import ForkProof  # noqa: E402
from protocol.handshake import IdentityPayload  # noqa: E402
from protocol.identity import SigningKey, did_from_public_key, public_key_from_did, verify_signature  # noqa: E402
from protocol.kel import start_log  # noqa: E402
from protocol.keys import next_digest  # noqa: E402
from protocol.pledges import parse_pledge, standing  # noqa: E402
from protocol.rules import Rules, Voting  # noqa: E402
from protocol.score_voting import count  # noqa: E402
from protocol.state import FINAL, LedgerState, compute_state  # noqa: E402
from protocol.sync import decode_message, encode_message, frontier_digest  # noqa: E402

OUT = ROOT / "tests" / "conformance"
SPEC = ROOT / "SPEC.md"
FILES = ("encoding", "identities", "entries", "chains", "links", "rules", "ledgers", "distributions", "votes",
         "pledges")

Case = dict[str, Any]


def key(n: int) -> SigningKey:
    return SigningKey(hashlib.sha256(b"tally-conformance-%d" % n).digest())


ANA, BEN, CLEO, DANA, EVE = (key(i) for i in range(1, 6))


def hexed(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def unhex(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


def raw_entry(entry: Entry) -> list[str | None]:
    return [entry.header_raw.hex(), hexed(entry.payload_raw)]


def code_of(run: Callable[[], Any]) -> tuple[Any, str | None]:
    try:
        return run(), None
    except InvalidData as exc:
        return None, exc.code


# ---- evaluation: a case's expected outputs from its inputs alone ----------------------------------------------


def evaluate(case: Case, ledgers: Mapping[str, Case]) -> dict[str, Any]:
    """The outputs the reference code computes for `case` (its inputs only; `ledgers` by id for references)."""
    return _EVALUATORS[case["type"]](case, ledgers)


def _dagcbor(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    data = bytes.fromhex(case["cbor"])
    value, code = code_of(lambda: dagcbor.decode(data, max_bytes=MAX_PAYLOAD_BYTES))
    if code is not None:
        return {"code": code}
    assert dagcbor.encode(value) == data
    return {"value": to_json_value(value)}


def _cid(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    cid = CID.for_block(bytes.fromhex(case["block"]))
    return {"cid": str(cid), "cid_bytes": cid.raw.hex()}


def _json_body(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    body, code = code_of(lambda: parse_body(case["text"]))
    return {"code": code} if code is not None else {"cbor": dagcbor.encode(body).hex()}


def _did(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    if "public_key" in case:
        return {"did": did_from_public_key(bytes.fromhex(case["public_key"]))}
    key_bytes, code = code_of(lambda: public_key_from_did(case["did"]))
    return {"code": code} if code is not None else {"public_key": key_bytes.hex()}


def _signature(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    return {"accept": verify_signature(*(bytes.fromhex(case[k]) for k in ("public_key", "signature", "message")))}


def _entry(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    entry, code = code_of(lambda: decode_entry(bytes.fromhex(case["header"]), unhex(case["payload"])))
    if code is not None:
        return {"code": code}
    return {"id": str(entry.id), "author": entry.author, "seq": entry.seq, "kind": entry.kind,
            "ledger": str(entry.ledger_id), "signing_bytes": _signing_bytes(entry).hex()}


def _signing_bytes(entry: Entry) -> bytes:
    fields = dagcbor.decode(entry.header_raw, max_bytes=MAX_HEADER_BYTES)
    assert isinstance(fields, dict)
    return SIGNING_PREFIX + dagcbor.encode({k: v for k, v in fields.items() if k != "sig"})


def _stored_entry(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    entry, code = code_of(lambda: decode_stored_entry(bytes.fromhex(case["entry_id"]), bytes.fromhex(case["header"]),
                                                      unhex(case["payload"])))
    return {"code": code} if code is not None else {"erased": entry.body is None}


def _chain(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    entries = [decode_entry(bytes.fromhex(h), unhex(p)) for h, p in case["entries"]]
    head, code = code_of(lambda: verify_chain(entries))
    return {"code": code} if code is not None else {"head_seq": head.seq if head else 0}


def _fork(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    if "proof" in case:
        proof, code = code_of(lambda: ForkProof.decode(bytes.fromhex(case["proof"])))
        return {"code": code} if code is not None else {"author": proof.author, "seq": proof.seq}
    one, other = (decode_entry(bytes.fromhex(h), None) for h in case["headers"])
    return {"proof": ForkProof.of(one, other).encode().hex()}


def _identity_payload(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    def check() -> IdentityPayload:
        payload = IdentityPayload.decode(bytes.fromhex(case["payload"]))
        payload.verify(bytes.fromhex(case["handshake_hash"]))
        return payload
    payload, code = code_of(check)
    return {"code": code} if code is not None else {"did": payload.did}


def _sync_message(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    data = bytes.fromhex(case["cbor"])
    message, code = code_of(lambda: decode_message(data))
    if code is not None:
        return {"code": code}
    assert encode_message(message) == data
    return {"t": message.T}


def _frontier(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    heads = {bytes.fromhex(a): (seq, CID.parse(cid)) for a, seq, cid in case["heads"]}
    return {"digest": frontier_digest(heads).hex()}


def _entry_json(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    """SPEC.md §12 `<entry>`: *_raw in standard base64 with padding, body in §8's JSON mapping."""
    entry = decode_entry(bytes.fromhex(case["header"]), unhex(case["payload"]))
    return {"entry": {
        "id": str(entry.id), "author": entry.author, "ledger": str(entry.ledger_id), "seq": entry.seq,
        "prev": None if entry.header.prev is None else str(entry.header.prev), "ts": entry.header.ts,
        "kind": entry.kind, "body": None if entry.body is None else to_json_value(entry.body),
        "header_raw": base64.b64encode(entry.header_raw).decode("ascii"),
        "payload_raw": None if entry.payload_raw is None else base64.b64encode(entry.payload_raw).decode("ascii"),
    }}


def _discovery(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    """SPEC.md §15.1: the service type and TXT record a node announces."""
    public_key_from_did(case["did"])
    return {"service_type": "_tally._tcp.local.", "txt": {"id": case["did"], "v": "1"}}


def _rules(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    rules, code = code_of(lambda: Rules.from_body(from_json_value(case["body"])))
    if code is not None:
        return {"code": code}
    return {"version": rules.version, "pledge_claims": rules.pledge_claims,
            "modes": [b.mode for b in rules.buckets]}


def ledger_state(case: Case) -> LedgerState:
    entries = [decode_entry(bytes.fromhex(h), unhex(p)) for h, p in case["entries"]]
    genesis = next(e for e in entries if e.kind == GENESIS_KIND)
    forks = {bytes.fromhex(author): seq for author, seq in case.get("forks", {}).items()}
    return compute_state(genesis, entries, forks)


def _ledger(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    state = ledger_state(case)
    out: dict[str, Any] = {
        "digest": state.digest.hex(),
        "members": list(state.members),
        "left": list(state.left),
        "status": {str(CID(raw)): status for raw, status in sorted(state.status.items())},
        "invalid": {str(p.id): p.code for p in state.invalid},
        "claims": {who: format_decimal(t.claim) for who, t in state.totals().items()},
        "names": dict(state.names),
    }
    if state.distributions or state.conflicting:
        out["distributions"] = [
            {"id": str(d.id), "counts": d in state.distributions,
             "lines": [[line.bucket, line.recipient, format_amount(line.amount, d.payout.unit)]
                       for line in d.payout.lines]}
            for d in sorted((*state.distributions, *state.conflicting), key=lambda d: (d.ts, d.id.raw))
        ]
    if state.motions:
        out["motions"] = [{"id": str(m.id), "closing": None if m.closing is None else str(m.closing),
                           "winner": m.winner, "totals": [m.tally.totals[o] for o in m.motion.options],
                           "tie_break": m.tally.tie_break} for m in state.motions]
    if state.pledges:
        out["pledges"] = [{"id": str(p.id), "payments": [str(pay.id) for pay in p.payments]} for p in state.pledges]
    if state.amendments:
        out["rules"] = to_json_value(state.rules.to_body())
    if state.identities:
        out["keys"] = {i.identity: {"key": i.key, "devices": [[d.key, d.revoked is None] for d in i.devices]}
                       for i in state.identities.values()}
    return out


def _distribution(case: Case, ledgers: Mapping[str, Case]) -> dict[str, Any]:
    state = ledger_state(ledgers[case["ledger"]])
    final = [c for c in state.contributions if c.status == FINAL]
    since = None if case.get("since") is None else date.fromisoformat(case["since"])
    until = None if case.get("until") is None else date.fromisoformat(case["until"])
    payout, code = code_of(lambda: distribute(state.rules, state.ledger, Decimal(case["amount"]), case["unit"], final,
                                              [d.payout for d in state.distributions], since, until))
    if code is not None:
        return {"code": code}
    return {"lines": [[line.bucket, line.recipient, format_amount(line.amount, payout.unit)]
                      for line in payout.lines]}


def _count(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    v = case["voting"]
    voting = Voting(v["min"], v["max"], v["blank"], Decimal(v["quorum"]))
    tally = count(case["options"], voting, case["ballots"], totals_first=case["version"] > 1)
    return {"totals": dict(tally.totals), "eligible": list(tally.eligible), "ranking": list(tally.ranking),
            "winner": tally.winner, "tie_break": tally.tie_break}


def _pledge(case: Case, _: Mapping[str, Case]) -> dict[str, Any]:
    pledge, code = code_of(lambda: parse_pledge(from_json_value(case["body"]), author=case["author"],
                                                ledger=CID.parse(case["ledger"])))
    if code is not None:
        return {"code": code}
    payments = [_payment(i, day, amount) for i, (day, amount) in enumerate(case["payments"])]
    result = standing(pledge, payments, date.fromisoformat(case["as_of"]))
    return {
        "periods": [[p.label, format_decimal(p.due), format_decimal(p.paid), format_decimal(p.arrears)]
                    for p in result.periods],
        "due": format_decimal(result.due), "paid": format_decimal(result.paid),
        "arrears": format_decimal(result.arrears), "credit": format_decimal(result.credit),
    }


def _payment(i: int, day: str, amount: str) -> Any:
    from protocol.pledges import Payment
    return Payment(CID.for_block(b"payment-%d" % i), date.fromisoformat(day), Decimal(amount))


_EVALUATORS: dict[str, Callable[[Case, Mapping[str, Case]], dict[str, Any]]] = {
    "dagcbor": _dagcbor, "cid": _cid, "json_body": _json_body, "did": _did, "signature": _signature,
    "entry": _entry, "stored_entry": _stored_entry, "chain": _chain, "fork": _fork,
    "identity_payload": _identity_payload, "sync_message": _sync_message, "frontier": _frontier,
    "entry_json": _entry_json, "discovery": _discovery, "rules": _rules, "ledger": _ledger,
    "distribution": _distribution, "count": _count, "pledge": _pledge,
}


# ---- building the cases -------------------------------------------------------------------------------------


class Book:
    """A ledger being written with fixed keys and a fixed clock, so every run writes the same bytes."""

    def __init__(self, founders: Iterable[SigningKey], **config: Any) -> None:
        founders = list(founders)
        rules = Rules.from_config({"founders": [f.did for f in founders], **config}, name="Conformance coop",
                                  creator=founders[0].did)
        self.clock = 1_767_225_600_000  # 2026-01-01T00:00:00Z
        self.genesis = create_entry(founders[0], ledger=None, seq=1, prev=None, ts=self.clock, kind=GENESIS_KIND,
                                    body=rules.to_body())
        self.id = self.genesis.id
        self.heads: dict[bytes, Entry] = {founders[0].public_key: self.genesis}
        self.entries: list[Entry] = [self.genesis]
        self.members: dict[str, CID] = {f.did: self.id for f in founders}

    def append(self, author: SigningKey, kind: str, body: dict[str, Any], *, keep: bool = True,
               head: Entry | None = None) -> Entry:
        prev = head if head is not None else self.heads.get(author.public_key)
        self.clock += 60_000
        entry = create_entry(author, ledger=self.id, seq=1 if prev is None else prev.seq + 1,
                             prev=None if prev is None else prev.id, ts=self.clock, kind=kind, body=body)
        if keep:
            self.heads[author.public_key] = entry
            self.entries.append(entry)
        return entry

    def member(self, who: SigningKey) -> CID:
        return self.members.get(who.did, self.id)

    def admit(self, sponsor: SigningKey, agent: SigningKey) -> Entry:
        entry = self.append(sponsor, "member.admit", {"agent": agent.did, "member": self.member(sponsor)})
        self.members[agent.did] = entry.id
        return entry

    def event(self, who: SigningKey, quantity: str, action: str = "work", unit: str = "hour", **fields: Any) -> Entry:
        measure = "effortQuantity" if action in ("work", "use") else "resourceQuantity"
        return self.append(who, "vf.event", {"action": action, measure: {"hasNumericalValue": quantity,
                                                                          "hasUnit": unit},
                                             "member": self.member(who), **fields})

    def endorse(self, who: SigningKey, event: Entry, verdict: str = "accept") -> Entry:
        return self.append(who, "vf.endorse", {"event": event.id, "verdict": verdict, "member": self.member(who)})

    def state(self, entries: Iterable[Entry] | None = None) -> LedgerState:
        return compute_state(self.genesis, self.entries if entries is None else entries)

    def distribution(self, who: SigningKey, amount: str, unit: str = "euro", *, state: LedgerState | None = None,
                     keep: bool = True) -> Entry:
        state = state or self.state()
        final = [c for c in state.contributions if c.status == FINAL]
        payout = distribute(state.rules, state.ledger, Decimal(amount), unit, final,
                            [d.payout for d in state.distributions])
        from protocol.distribution import distribution_body
        return self.append(who, "ledger.distribution", distribution_body(payout, state.heads, self.member(who)),
                           keep=keep)

    def raw(self, entries: Iterable[Entry] | None = None) -> list[list[str | None]]:
        return [raw_entry(e) for e in (self.entries if entries is None else entries)]


def signed(author: SigningKey, fields: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in fields.items() if k != "sig"}
    return dagcbor.encode({**unsigned, "sig": author.sign(SIGNING_PREFIX + dagcbor.encode(unsigned))})


def case(id_: str, type_: str, spec: list[str], **inputs: Any) -> Case:
    return {"id": id_, "type": type_, "spec": spec, **inputs}


def encoding_cases() -> list[Case]:
    link = CID.for_block(dagcbor.encode({"a": 1}))
    valid = {
        "map-key-order": {"bb": 1, "a": [1, -1, 23, 24, 255, 256, 2**32, -(2**32)], "c": None},
        "scalars": [True, False, None, "", "ünïcode", b"\x00\xff"],
        "link": {"prev": link, "size": 14},
        "nested": {"a": {"b": {"c": [[], {}]}}},
    }
    cases = [case(f"dagcbor/{name}", "dagcbor", ["2", "1"], cbor=dagcbor.encode(value).hex())
             for name, value in valid.items()]
    invalid = {
        "unsorted-keys": "a2616202616101",  # {"b": 2, "a": 1}: keys out of order
        "float": "f93c00",  # 1.0 as a half float
        "indefinite-array": "9f01ff",
        "non-minimal-int": "1801",
        "trailing-bytes": "0101",
        "other-tag": "c11a5f5e1000",
        "duplicate-key": "a2616101616102",
        "link-not-cid": "d82a4100",
    }
    cases += [case(f"dagcbor/{name}", "dagcbor", ["2", "9"], cbor=data) for name, data in invalid.items()]
    cases += [case(f"cid/{name}", "cid", ["3"], block=block.hex())
              for name, block in (("empty", b""), ("map", dagcbor.encode({"a": 1})))]
    bodies = {
        "plain": '{"a": "1.5", "n": 3}', "link": json.dumps({"member": {"/": str(link)}}),
        "bytes": '{"b": {"/": {"bytes": "AP8"}}}', "float": '{"a": 1.5}', "exponent": '{"a": 1e3}',
        "duplicate-key": '{"a": 1, "a": 2}', "not-an-object": '[1, 2]', "nan": '{"a": NaN}',
    }
    cases += [case(f"json/{name}", "json_body", ["8"], text=text) for name, text in bodies.items()]
    return cases


def identity_cases() -> list[Case]:
    zero = SigningKey(bytes(32))
    cases = [case("did/zero-seed", "did", ["4"], public_key=zero.public_key.hex()),
             case("did/parse", "did", ["4"], did=ANA.did)]
    bad = {
        "wrong-prefix": "did:web:example.org", "multibase-f": "did:key:f" + zero.public_key.hex(),
        "bad-base58": "did:key:z0OIl", "x25519": "did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc",
        "short-key": "did:key:z6Mk",
    }
    cases += [case(f"did/{name}", "did", ["4", "9"], did=did) for name, did in bad.items()]
    vectors = json.loads((ROOT / "tests" / "protocol" / "vectors" / "ed25519_edge.json").read_text("utf-8"))
    cases += [case(f"ed25519/{v['name']}", "signature", ["4"], description=v["description"],
                   public_key=v["public_key"], signature=v["signature"], message=v["message"])
              for v in vectors["vectors"]]
    return cases


def entry_cases() -> list[Case]:
    book = Book([ANA])
    event = book.event(ANA, "2")
    fields = dagcbor.decode(event.header_raw, max_bytes=MAX_HEADER_BYTES)
    assert isinstance(fields, dict)
    payload = event.payload_raw
    assert payload is not None

    def variant(name: str, header: bytes, body: bytes | None = payload, spec: tuple[str, ...] = ("5.4", "9")) -> Case:
        return case(f"entry/{name}", "entry", list(spec), header=header.hex(), payload=hexed(body))

    not_a_map = dagcbor.encode([1])
    cases = [
        variant("genesis", book.genesis.header_raw, book.genesis.payload_raw, ("5", "5.1", "5.3", "6")),
        variant("event", event.header_raw, spec=("5", "5.1", "5.2", "5.3")),
        variant("erased-payload", event.header_raw, None, ("5", "5.4")),
        variant("oversize-header", signed(ANA, {**fields, "kind": "vf.event", "x": bytes(1100)}),
                spec=("5.4", "9", "1.1")),
        variant("not-canonical", event.header_raw + b"\x00"),
        variant("not-a-map", dagcbor.encode([1, 2])),
        variant("unknown-version", signed(ANA, {**fields, "v": 2})),
        variant("missing-field", signed(ANA, {k: v for k, v in fields.items() if k != "kind"})),
        variant("unknown-field", signed(ANA, {**fields, "x": 1})),
        variant("seq-zero", signed(ANA, {**fields, "seq": 0})),
        variant("negative-ts", signed(ANA, {**fields, "ts": -1})),
        variant("bad-kind", signed(ANA, {**fields, "kind": "Vf.event"})),
        variant("bool-seq", signed(ANA, {**fields, "seq": True})),
        variant("negative-size", signed(ANA, {**fields, "size": -1})),
        variant("size-too-large", signed(ANA, {**fields, "size": 16385}), spec=("5.4", "9", "1.1")),
        variant("prev-missing", signed(ANA, {**fields, "seq": 2, "prev": None})),
        variant("genesis-with-ledger", signed(ANA, {**fields, "kind": GENESIS_KIND})),
        variant("payload-changed", event.header_raw, dagcbor.encode({"a": 1})),
        variant("payload-not-a-map", signed(ANA, {**fields, "payload": CID.for_block(not_a_map),
                                                  "size": len(not_a_map)}), not_a_map),
        variant("bad-signature", dagcbor.encode({**fields, "sig": bytes(64)})),
        variant("signed-by-another", dagcbor.encode({**fields, "sig": signed(BEN, fields)[-64:]})),
    ]
    cases += [
        case("stored/erased", "stored_entry", ["10"], entry_id=event.id.raw.hex(), header=event.header_raw.hex(),
             payload=None),
        case("stored/wrong-id", "stored_entry", ["10"], entry_id=book.genesis.id.raw.hex(),
             header=event.header_raw.hex(), payload=hexed(payload)),
        case("api/entry", "entry_json", ["12", "8"], header=event.header_raw.hex(), payload=hexed(payload)),
        case("api/genesis", "entry_json", ["12", "8"], header=book.genesis.header_raw.hex(),
             payload=hexed(book.genesis.payload_raw)),
    ]
    return cases


def chain_cases() -> list[Case]:
    book = Book([ANA, BEN])
    one, two, three = book.event(BEN, "1"), book.event(BEN, "2"), book.event(BEN, "3")
    elsewhere = Book([BEN])
    other = elsewhere.event(BEN, "1")  # seq 2 of Ben's chain in another ledger
    late = book.append(BEN, "vf.event", {"n": 1}, keep=False, head=three)
    early = create_entry(BEN, ledger=book.id, seq=4, prev=three.id, ts=three.header.ts - 1, kind="note.text",
                         body={"n": 2})
    fork_a = book.append(BEN, "note.text", {"n": 3}, keep=False, head=one)
    fork_b = book.append(BEN, "note.text", {"n": 4}, keep=False, head=one)
    ana = book.append(ANA, "note.text", {"n": 5}, keep=False)
    wrong_prev = create_entry(BEN, ledger=book.id, seq=2, prev=book.genesis.id, ts=two.header.ts, kind="note.text",
                              body={"n": 6})
    cases = [
        case("chain/valid", "chain", ["6"], entries=book.raw([one, two, three, late])),
        case("chain/seq-gap", "chain", ["6", "9"], entries=book.raw([one, three])),
        case("chain/not-from-1", "chain", ["6", "9"], entries=book.raw([two, three])),
        case("chain/ts-regression", "chain", ["6", "9"], entries=book.raw([one, two, three, early])),
        case("chain/wrong-author", "chain", ["6", "9"], entries=book.raw([book.genesis, one])),
        case("chain/wrong-ledger", "chain", ["6", "9"], entries=book.raw([one, other])),
        case("chain/bad-prev", "chain", ["6", "9"], entries=book.raw([one, wrong_prev])),
        case("fork/proof", "fork", ["7"], headers=[fork_a.header_raw.hex(), fork_b.header_raw.hex()]),
        case("fork/same-entry", "fork", ["7", "9"],
             proof=dagcbor.encode({"v": 1, "a": fork_a.header_raw, "b": fork_a.header_raw}).hex()),
        case("fork/two-authors", "fork", ["7", "9"],
             proof=dagcbor.encode({"v": 1, **dict(zip("ab", sorted([fork_a.header_raw, ana.header_raw],
                                                                      key=lambda h: CID.for_block(h).raw),
                                                      strict=True))}).hex()),
    ]
    return cases


def link_cases() -> list[Case]:
    transcript = hashlib.sha256(b"handshake").digest()
    payload = IdentityPayload.create(ANA, transcript).encode()
    ledger = Book([ANA]).id
    cid = CID.for_block(b"x")
    author = ANA.public_key
    messages = {
        "sub": {"t": "sub", "ledgers": [[ledger, bytes(32)]]},
        "front": {"t": "front", "ledger": ledger, "heads": [[author, 3, cid]], "done": True},
        "want": {"t": "want", "ledger": ledger, "author": author, "from": 1, "limit": 10},
        "sent": {"t": "sent", "ledger": ledger, "author": author, "upto": 0},
        "level": {"t": "level", "ledger": ledger, "digest": bytes(32)},
        "own": {"t": "own", "heads": None},
        "own-answer": {"t": "own", "heads": [[ledger, 4, cid]]},
        "err": {"t": "err", "code": "rate_limited", "message": "slow down"},
        "fork": {"t": "fork", "proof": dagcbor.encode({"v": 1, "a": b"", "b": b""})},
        "want-too-many": {"t": "want", "ledger": ledger, "author": author, "from": 1, "limit": 1025},
        "unknown-type": {"t": "hello"},
        "extra-key": {"t": "level", "ledger": ledger, "digest": bytes(32), "x": 1},
        "short-digest": {"t": "level", "ledger": ledger, "digest": bytes(31)},
    }
    cases = [
        case("handshake/identity", "identity_payload", ["11"], payload=payload.hex(), handshake_hash=transcript.hex()),
        case("handshake/other-transcript", "identity_payload", ["11", "9"], payload=payload.hex(),
             handshake_hash=hashlib.sha256(b"other").digest().hex()),
    ]
    also = {"own": ["13.8"], "own-answer": ["13.8"], "err": ["13.7"], "fork": ["13.6"],
            "want-too-many": ["13.9", "1.1"], "sub": ["13.5"], "want": ["13.5"], "sent": ["13.5"],
            "level": ["13.5"], "front": ["13.3"]}
    cases += [case(f"sync/{name}", "sync_message", ["13", "13.2", *also.get(name, [])], cbor=dagcbor.encode(m).hex())
              for name, m in messages.items()]
    cases.append(case("sync/frontier", "frontier", ["13", "13.3"],
                      heads=[[BEN.public_key.hex(), 2, str(cid)], [ANA.public_key.hex(), 7, str(ledger)]]))
    cases.append(case("discovery/txt", "discovery", ["15", "15.1"], did=ANA.did))
    return cases


def rules_cases() -> list[Case]:
    body = Rules.from_config({}, name="Coop", creator=ANA.did).to_body()
    v1 = {k: v for k, v in body.items() if k not in ("version", "pledge_claims")}
    mixed = Rules.from_config({"buckets": [{"name": "reserve", "percent": "10", "recipient": "ledger"},
                                           {"name": "members", "percent": "100", "mode": "remaining"}]},
                              name="Coop", creator=ANA.did).to_body()
    bodies = {
        "default-v2": body, "version-1": v1, "mixed-v2": mixed,
        "mixed-v1": {k: v for k, v in mixed.items() if k not in ("version", "pledge_claims")},
        "version-3": {**body, "version": 3},
        "pledge-claims-in-v1": {**v1, "pledge_claims": True},
        "unknown-key": {**body, "x": 1},
        "unknown-nested-key": {**body, "validation": {"accept": 1, "reject": 1, "acept": 2}},
        "non-canonical-decimal": {**body, "rates": {"work": {"hour": "2.50"}}},
        "unknown-action": {**body, "rates": {"dance": {"hour": "1"}}},
        "unknown-unit": {**body, "rates": {"work": {"litre": "1"}}},
        "bad-founder": {**body, "founders": ["bob"]},
        "bad-recipient": {**body, "buckets": [{**body["buckets"][0], "recipient": "bob"}]},
        "straight-under-100": {**body, "buckets": [{**body["buckets"][0], "percent": "90"}]},
    }
    return [case(f"rules/{name}", "rules", ["14", "9"], body=to_json_value(b)) for name, b in bodies.items()]


RATES = {"work": {"hour": "25"}, "use": {"day": "25"}, "transfer": {"euro": "1"}}


def coop_ledger() -> tuple[Case, Book]:
    """Membership, validation, corrections, evidence, waiting and quarantined entries (§16)."""
    book = Book([ANA], rates=RATES)
    book.admit(ANA, BEN)
    book.admit(ANA, CLEO)
    book.append(BEN, "member.about", {"name": "Ben", "member": book.member(BEN)})
    ana = book.event(ANA, "6", note="workshop")
    ben = book.event(BEN, "40")
    fixed = book.event(BEN, "4", corrects=ben.id)  # Ben's typo, corrected
    van = book.event(CLEO, "2", action="use", unit="day", hasPointInTime="2026-01-05")
    book.endorse(BEN, ana)
    book.endorse(CLEO, fixed)
    book.endorse(ANA, van)
    book.append(CLEO, "member.leave", {"member": book.member(CLEO)})  # her endorsement still counts (§16.4)
    book.append(CLEO, "vf.endorse", {"event": ana.id, "verdict": "reject", "member": book.member(CLEO)})  # left
    book.append(DANA, "vf.event", {"action": "work", "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"},
                                   "member": book.id})  # not a founder: not_member
    book.endorse(ANA, ana)  # self_endorsement
    book.append(ANA, "note.text", {"text": "ignored"})
    book.event(ANA, "1", cites=[CID.for_block(b"elsewhere")])  # cites never wait (§18.6)
    book.endorse(BEN, book.event(ANA, "1", action="dance"))  # unknown_action: the endorsement is bad_reference
    missing = CID.for_block(b"never sent")
    book.append(ANA, "vf.endorse", {"event": missing, "verdict": "accept", "member": book.id})  # waits
    book.append(BEN, "vf.event", {"action": "work", "effortQuantity": {"hasNumericalValue": "1", "hasUnit": "hour"},
                                  "member": book.member(BEN), "x": CID.for_block(b"not a dependency")})
    forked_at = book.heads[BEN.public_key]
    book.append(BEN, "note.text", {"n": "one"})
    twin = book.append(BEN, "note.text", {"n": "two"}, keep=False, head=forked_at)
    entries = [*book.entries, twin]
    return case("ledger/coop", "ledger", ["16", "16.1", "16.2", "16.3", "16.4", "16.5", "16.6", "16.7", "7", "9"],
                entries=book.raw(entries), forks={BEN.public_key.hex(): twin.seq}), book


def loans_ledger(version: int) -> Case:
    """Concurrent distributions over one debt, a correction that inherits what was paid (§17.2–§17.5)."""
    book = Book([ANA, BEN, DANA], rates=RATES, version=version, buckets=[
        {"name": "reserve", "percent": "10", "recipient": "ledger"},
        {"name": "loans", "percent": "100", "claims": "debt", "actions": ["transfer"],
         "mode": "remaining" if version > 1 else "straight"}] if version > 1 else [
        {"name": "loans", "percent": "100", "claims": "debt", "actions": ["transfer"]}])
    loan = book.event(DANA, "100", action="transfer", unit="euro")
    book.endorse(ANA, loan)
    before = book.state()
    book.distribution(ANA, "50", state=before)
    book.distribution(BEN, "60", state=before)  # recorded apart: it did not count Ana's
    if version > 1:
        fix = book.event(DANA, "100", action="transfer", unit="euro", corrects=loan.id)
        book.endorse(BEN, fix)
        book.distribution(BEN, "100")
    spec = ["17", "17.2", "17.3", "17.4", "17.5", "16.7"] + (["14"] if version > 1 else [])
    return case(f"ledger/loans-v{version}", "ledger", spec, entries=book.raw())


def fund_ledger() -> Case:
    """Motions, ballots, concurrent closings, an amendment, pledges and payments (§18)."""
    book = Book([ANA, BEN, CLEO], rates=RATES, voting={"blank": "no-opinion", "quorum": "0.25"})
    raise_rate = book.append(ANA, "gov.motion", {"title": "Raise the work rate", "options": ["yes", "no"],
                                                 "amend": {"rates": {"work": {"hour": "30"}}},
                                                 "member": book.id})
    votes = [book.append(who, "gov.vote", {"motion": raise_rate.id, "scores": {"yes": 5, "no": 0},
                                           "member": book.id}) for who in (BEN, CLEO)]
    close = book.append(ANA, "gov.close", {"motion": raise_rate.id, "ballots": sorted((v.id for v in votes),
                                                                                      key=lambda c: c.raw),
                                           "member": book.id})
    book.event(BEN, "2", rules=[close.id])  # checked under the amended rate
    # It closes after the three ballots (each entry is a minute after the last) and before the closings,
    # which are not its proposer's: ballots signed after it would be invalid (version 2 rules).
    closes = datetime.fromtimestamp((book.clock + 4 * 60_000 + 30_000) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tie = book.append(ANA, "gov.motion", {"title": "Where?", "options": ["hall", "park"], "closes": closes,
                                          "member": book.id})
    ballots = [book.append(ANA, "gov.vote", {"motion": tie.id, "scores": {"hall": 4}, "member": book.id}),
               book.append(BEN, "gov.vote", {"motion": tie.id, "scores": {"park": 4}, "member": book.id}),
               book.append(CLEO, "gov.vote", {"motion": tie.id, "scores": {"park": 4}, "member": book.id})]
    links = sorted((b.id for b in ballots), key=lambda c: c.raw)
    book.append(BEN, "gov.close", {"motion": tie.id, "ballots": links, "member": book.id})
    book.append(CLEO, "gov.close", {"motion": tie.id, "ballots": links[:1], "member": book.id})  # concurrent
    pledge = book.append(BEN, "vf.commitment", {
        "resourceQuantity": {"hasNumericalValue": "0.1", "hasUnit": "euro"}, "per": "m2", "basis": "300",
        "every": "month", "start": "2026-01", "indexation": "5", "member": book.id})
    for day in ("2026-01-31T23:30:00-05:00", "2026-01-15"):  # the first is paid on 1 February, UTC
        book.event(BEN, "30", action="transfer", unit="euro", fulfills=pledge.id, hasPointInTime=day)
    return case("ledger/fund", "ledger", ["18", "18.1", "18.2", "18.3", "18.4", "18.5", "18.6", "18.7", "16.2"],
                entries=book.raw())


def keys_ledger() -> Case:
    """Pre-rotation, a thief's rotation, a device and its revocation, a recovery by two members (§19)."""
    ana2, ana3, phone, cleo2 = key(41), key(42), key(43), key(44)
    book = Book([ANA, BEN, CLEO], validation={"accept": 2, "reject": 2})
    book.event(ANA, "2")
    incept = book.append(ANA, "key.incept", {"next": next_digest(ana2.public_key), "member": book.id})
    last = book.event(ANA, "3")
    book.append(key(46), "key.rotate", {"identity": ANA.did, "prior": incept.id, "last": last.id,
                                        "next": next_digest(BEN.public_key), "member": book.id})  # not the next key
    book.append(ana2, "key.rotate", {"identity": ANA.did, "prior": incept.id, "last": last.id,
                                     "next": next_digest(ana3.public_key), "member": book.id})
    book.event(ANA, "40")  # the old key after `last`: key_rotated
    grant = book.append(ana2, "key.device", {"key": phone.public_key, "name": "phone", "member": book.id})
    kept = book.event(phone, "1", grant=grant.id)
    book.event(phone, "5")
    book.append(ana2, "key.revoke", {"device": grant.id, "last": kept.id, "member": book.id})
    book.event(CLEO, "2")
    book.append(CLEO, "key.recover", {"identity": CLEO.did, "key": cleo2.public_key, "member": book.id})  # self
    first = book.append(ana2, "key.recover", {"identity": CLEO.did, "key": cleo2.public_key, "member": book.id})
    book.event(key(45), "1", grant=first.id)  # not the approved key: key_not_authorized
    cleo_last = book.event(CLEO, "3")
    second = book.append(BEN, "key.recover", {"identity": CLEO.did, "key": cleo2.public_key, "with": [first.id],
                                              "last": cleo_last.id, "member": book.id})
    book.event(CLEO, "9")  # the lost key, after what the recovery knew of: key_rotated
    book.event(cleo2, "2", grant=second.id)
    return case("ledger/keys", "ledger", ["19", "19.1", "19.2", "19.3", "19.4", "19.5", "19.6", "19.7", "16.7", "9"],
                entries=book.raw())


def erase_ledger() -> Case:
    """Erasures (§20): one whose payload this node dropped, one whose payload it still holds, refusals, and a
    missing payload nothing erased."""
    book = Book([ANA, BEN], validation={"accept": 1, "reject": 1})
    book.endorse(BEN, book.event(ANA, "1"))  # Ben's first entry
    dropped = book.event(ANA, "5", note="a phone number")
    endorsed = book.endorse(BEN, dropped)
    book.append(ANA, "ledger.erase", {"entry": dropped.id, "member": book.id})
    book.endorse(BEN, dropped)  # after the erasure: bad_reference
    note = book.append(ANA, "note.text", {"text": "held"})
    book.append(ANA, "ledger.erase", {"entry": note.id, "member": book.id})  # a kind outside the membership
    ben_first = next(e for e in book.entries if e.header.author == BEN.public_key and e.seq == 1)
    book.append(BEN, "ledger.erase", {"entry": ben_first.id, "member": book.id})  # seq 1: not_erasable
    book.append(BEN, "ledger.erase", {"entry": endorsed.id, "member": book.id})  # an endorsement (of an erased one)
    book.append(ANA, "ledger.erase", {"entry": book.event(BEN, "2").id, "member": book.id})  # another key's
    lost = book.event(ANA, "7")  # its payload missing, nothing erased it: bad_payload
    book.event(ANA, "1")
    held = [decode_entry(e.header_raw, None) if e.id in (dropped.id, lost.id) else e for e in book.entries]
    return case("ledger/erase", "ledger", ["20", "20.1", "20.2", "20.3", "16.2", "16.7", "5.4"], entries=book.raw(held))


def founded_ledger() -> Case:
    """A ledger founded by a member's later key, proven by their key log (§19.9)."""
    ana2, ana3 = key(47), key(48)
    log = start_log(ANA, next_digest(ana2.public_key)).extended(ana2, next_digest(ana3.public_key))
    book = Book([ANA, BEN])
    rules = Rules.from_config({"founders": [ANA.did, BEN.did]}, name="Conformance coop", creator=ANA.did, proof=log)
    book.genesis = create_entry(ana2, ledger=None, seq=1, prev=None, ts=book.clock, kind=GENESIS_KIND,
                                body=rules.to_body())
    book.id, book.heads, book.entries = book.genesis.id, {ana2.public_key: book.genesis}, [book.genesis]
    book.members = {ANA.did: book.id, BEN.did: book.id}
    work = book.append(ana2, "vf.event", {"action": "work", "effortQuantity": {"hasNumericalValue": "2",
                                                                               "hasUnit": "hour"},
                                          "member": book.id})
    book.endorse(BEN, work)
    book.append(ana2, "key.incept", {"next": next_digest(ana3.public_key), "member": book.id})
    book.event(ana3, "1")  # the next key has not rotated in: it writes as itself, no member
    return case("ledger/founded-by-later-key", "ledger", ["19.9", "19.3", "19.7", "14"], entries=book.raw())


def ledger_cases() -> list[Case]:
    coop, _ = coop_ledger()
    return [coop, loans_ledger(2), loans_ledger(1), fund_ledger(), keys_ledger(), erase_ledger(), founded_ledger()]


def distribution_cases() -> list[Case]:
    requests = [
        ("coop-600", "ledger/coop", {"amount": "600", "unit": "euro"}),
        ("coop-period", "ledger/coop", {"amount": "100", "unit": "euro", "since": "2026-01-05",
                                        "until": "2026-01-05"}),
        ("coop-cent", "ledger/coop", {"amount": "0.01", "unit": "euro"}),
        ("coop-too-precise", "ledger/coop", {"amount": "1.001", "unit": "euro"}),
        ("coop-unknown-unit", "ledger/coop", {"amount": "1", "unit": "litre"}),
        ("loans-after", "ledger/loans-v2", {"amount": "80", "unit": "euro"}),
        ("loans-v1-after", "ledger/loans-v1", {"amount": "80", "unit": "euro"}),
    ]
    return [case(f"distribution/{name}", "distribution", ["17", "17.1", "17.2", "17.3", "17.4"], ledger=ledger,
                 **request) for name, ledger, request in requests]


def vote_cases() -> list[Case]:
    zero = {"min": 0, "max": 5, "blank": "zero", "quorum": "0.5"}
    opinion = {"min": 0, "max": 5, "blank": "no-opinion", "quorum": "0.5"}
    votes = [
        ("zero-blanks", ["A", "C"], zero, [{"A": 4, "C": 5}, {"A": 4, "C": 5}, {"A": 3}, {"A": 3}], 2),
        ("no-opinion", ["A", "C"], opinion, [{"A": 4, "C": 5}, {"A": 4, "C": 5}, {"A": 3}, {"A": 3}], 2),
        ("quorum", ["A", "C"], {**opinion, "quorum": "0.75"}, [{"A": 4, "C": 5}, {"A": 4, "C": 5}, {"A": 3}, {"A": 3}],
         2),
        ("runoff", ["A", "B"], zero, [{"A": 5, "B": 0}, {"A": 0, "B": 3}, {"A": 1, "B": 3}], 2),
        ("listed-first", ["B", "A"], zero, [{"A": 5, "B": 0}, {"A": 0, "B": 5}], 2),
        ("totals-v2", ["A", "B"], {**opinion, "quorum": "0.25"}, [{"A": 4}, {"A": 4}, {"B": 4}, {"B": 4}, {"B": 4}],
         2),
        ("totals-v1", ["A", "B"], {**opinion, "quorum": "0.25"}, [{"A": 4}, {"A": 4}, {"B": 4}, {"B": 4}, {"B": 4}],
         1),
        ("no-ballots", ["A", "B"], zero, [], 2),
    ]
    return [case(f"count/{name}", "count", ["18.2"], options=options, voting=voting, ballots=ballots,
                 version=version) for name, options, voting, ballots, version in votes]


def pledge_cases() -> list[Case]:
    ledger = Book([ANA]).id
    base = {"resourceQuantity": {"hasNumericalValue": "0.1", "hasUnit": "euro"}, "per": "m2", "basis": "300",
            "every": "month", "start": "2027-01", "member": {"/": str(ledger)}}
    pledges = [
        ("fixed", base, [["2027-01-03", "30"], ["2027-02-03", "30"]], "2027-04-15"),
        ("escalate", {**base, "escalate": "0.05"}, [["2027-01-03", "400"]], "2028-02-01"),
        ("indexation", {**base, "indexation": "5"}, [], "2030-01-01"),
        ("quarterly-until", {**base, "every": "quarter", "until": "2027-09"}, [["2027-01-01", "100"]], "2028-01-01"),
        ("credit", {**base, "every": "year"}, [["2027-01-01", "50"]], "2027-06-01"),
        ("bad-every", {**base, "every": "week"}, [], "2027-01-01"),
        ("bad-start", {**base, "start": "2027-13"}, [], "2027-01-01"),
        ("both-steps", {**base, "escalate": "0.05", "indexation": "5"}, [], "2027-01-01"),
        ("float", {**base, "escalate": "x"}, [], "2027-01-01"),
    ]
    return [case(f"pledge/{name}", "pledge", ["18.5"], author=ANA.did, ledger=str(ledger), body=body,
                 payments=payments, as_of=as_of) for name, body, payments, as_of in pledges]


def all_cases() -> dict[str, list[Case]]:
    return {
        "encoding": encoding_cases(), "identities": identity_cases(), "entries": entry_cases(),
        "chains": chain_cases(), "links": link_cases(), "rules": rules_cases(), "ledgers": ledger_cases(),
        "distributions": distribution_cases(), "votes": vote_cases(), "pledges": pledge_cases(),
    }


def sections() -> list[str]:
    """Every numbered section and subsection heading of SPEC.md: "1", "5.4", …"""
    return re.findall(r"^#{2,3} ([0-9]+(?:\.[0-9]+)?)\.? ", SPEC.read_text(encoding="utf-8"), flags=re.MULTILINE)


#: Sections whose rules are about a running node's conduct, not about bytes and computations a case can hold;
#: tests/node and tests/sim check them on real nodes, sockets and SQLite files.
NODE_ONLY: dict[str, str] = {
    "13.1": "framing is one encrypted frame per message (§11); the messages themselves are cases of §13.2",
    "13.4": "which peers may see a ledger is a node's decision during a conversation (tests/node/test_sync.py)",
    "13.10": "an example conversation between two running nodes (tests/sim)",
    "15.2": "configured peers are a node's configuration (tests/node/test_config.py)",
    "17.6": "exports are files a running node writes (tests/node/test_export.py)",
    "18.8": "the CLI and API of a running node (tests/node/test_governance_api.py)",
    "19.8": "which peers may see a ledger is a node's decision during a conversation (tests/node/test_keys_cli.py)",
}


def render() -> dict[str, str]:
    """File name -> its text: the case files with their expected outputs, and coverage.json."""
    suite = all_cases()
    ledgers = {c["id"]: c for c in suite["ledgers"]}
    texts: dict[str, str] = {}
    covered: dict[str, list[str]] = {}
    for name, cases in suite.items():
        for c in cases:
            c["expect"] = evaluate(c, ledgers)
            for section in c["spec"]:
                covered.setdefault(section, []).append(c["id"])
        texts[f"{name}.json"] = json.dumps({"cases": cases}, indent=1, ensure_ascii=False) + "\n"
    table = {s: covered.get(s, []) for s in sections()}
    extra = sorted(set(covered) - set(table))
    assert not extra, f"cases name sections SPEC.md does not have: {extra}"
    texts["coverage.json"] = json.dumps({"sections": table, "node_only": NODE_ONLY}, indent=1,
                                        ensure_ascii=False) + "\n"
    return texts


def main() -> int:
    texts = render()
    if "--check" in sys.argv[1:]:
        stale = [name for name, text in texts.items() if not (OUT / name).exists()
                 or (OUT / name).read_text(encoding="utf-8") != text]
        print("conformance suite up to date" if not stale else f"differs from what this script writes: {stale}")
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (OUT / name).write_text(text, encoding="utf-8")
    table = json.loads(texts["coverage.json"])["sections"]
    total = sum(len(json.loads(t)["cases"]) for n, t in texts.items() if n != "coverage.json")
    bare = [s for s, ids in table.items() if not ids and s not in NODE_ONLY]
    print(f"wrote {total} cases in {len(texts) - 1} files to {OUT}; sections without a case: {bare or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

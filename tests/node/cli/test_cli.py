"""The `tally` CLI contract on real homes: each command in process (`node.cli.main.main`, the code the installed
command runs), and the installed command itself as a process once, for what only the process shows."""

from __future__ import annotations

import base64
import json
import sqlite3
import stat
from pathlib import Path

from conftest import TallyRunner, last_line

from protocol import CID, decode_entry

VECTORS = json.loads((Path(__file__).parents[2] / "protocol" / "vectors" / "did_key_ed25519.json").read_text())[
    "seed_vectors"
]


def init(tally: TallyRunner) -> str:
    r = tally("init")
    assert r.returncode == 0, r.stderr
    return last_line(r.stdout)


def create_ledger(tally: TallyRunner, name: str = "Bike coop", *extra: str) -> str:
    r = tally("ledger", "create", name, *extra)
    assert r.returncode == 0, r.stderr
    return last_line(r.stdout)


def log_rows(tally: TallyRunner, ledger: str, *extra: str) -> list[dict]:
    r = tally("log", "--ledger", ledger, "--json", *extra)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_init_prints_did_and_writes_secrets_0600(tally: TallyRunner, home: Path) -> None:
    did = init(tally)
    assert did.startswith("did:key:z6Mk")
    for name in ("identity.key", "api.token"):
        mode = stat.S_IMODE((home / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    # the store holds members-only ledgers: the owner's alone too (SQLite gives its WAL the same mode)
    assert tally("ledger", "create", "Private").returncode == 0
    for path in home.glob("tally.sqlite3*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path.name} has mode {oct(mode)}"
    r = tally("id")
    assert r.returncode == 0 and last_line(r.stdout) == did
    # the secret never appears in any output
    seed = (home / "identity.key").read_text().strip()
    assert seed not in r.stdout + r.stderr


def test_init_refuses_to_overwrite(tally: TallyRunner, home: Path) -> None:
    did = init(tally)
    key_before = (home / "identity.key").read_bytes()
    r = tally("init")
    assert r.returncode == 1
    assert r.stderr.startswith("error: identity_exists: ")
    assert (home / "identity.key").read_bytes() == key_before
    assert last_line(tally("id").stdout) == did


def test_import_key_hex_and_pem_match_vectors(tally: TallyRunner, tmp_path: Path) -> None:
    for i, vector in enumerate(VECTORS):
        key_file = tmp_path / f"seed{i}.hex"
        key_file.write_text(vector["seed"] + "\n")
        r = tally("init", "--import-key", str(key_file), home_dir=tmp_path / f"h{i}")
        assert r.returncode == 0, r.stderr
        assert last_line(r.stdout) == vector["did"]
    # a PKCS#8 PEM of the same seed gives the same identity
    from protocol import SigningKey

    pem = tmp_path / "key.pem"
    pem.write_bytes(SigningKey(bytes.fromhex(VECTORS[1]["seed"])).to_pem())
    r = tally("init", "--import-key", str(pem), home_dir=tmp_path / "pem")
    assert r.returncode == 0, r.stderr
    assert last_line(r.stdout) == VECTORS[1]["did"]


def test_import_key_refuses_bad_files(tally: TallyRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    for content in ("not a key", "00" * 31, "zz" * 32, bad_pem):
        bad.write_text(content)
        r = tally("init", "--import-key", str(bad), home_dir=tmp_path / "h")
        assert r.returncode == 1, content
        assert r.stderr.startswith("error: bad_key_file: "), r.stderr
        assert not (tmp_path / "h" / "identity.key").exists()
    r = tally("init", "--import-key", str(tmp_path / "missing"), home_dir=tmp_path / "h")
    assert r.returncode == 1 and "bad_key_file" in r.stderr


def test_commands_without_identity_fail_cleanly(tally: TallyRunner) -> None:
    for args in (("id",), ("ledger", "list"), ("verify",), ("ledger", "create", "x")):
        r = tally(*args)
        assert r.returncode == 1, args
        assert r.stderr.startswith("error: no_identity: "), r.stderr


def test_ledger_create_and_list(tally: TallyRunner) -> None:
    did = init(tally)
    members = create_ledger(tally, "Bike coop")
    public = create_ledger(tally, "Open network", "--public")
    assert CID.parse(members) != CID.parse(public)
    assert members.startswith("bafyrei")
    r = tally("ledger", "list", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    by_id = {row["id"]: row for row in rows}
    assert by_id[members]["name"] == "Bike coop" and by_id[members]["visibility"] == "members"
    assert by_id[public]["visibility"] == "public"
    assert by_id[members]["founder"] == did
    genesis = log_rows(tally, members)[0]
    assert genesis["kind"] == "ledger.genesis" and genesis["seq"] == 1 and genesis["prev"] is None
    assert genesis["ledger"] == members == genesis["id"]
    # The genesis body is the ledger's full rules: the defaults here, with the name and the creator.
    from protocol.rules import Rules

    assert genesis["body"] == Rules.from_config({}, name="Bike coop", creator=did).to_body()
    assert genesis["body"]["name"] == "Bike coop" and genesis["body"]["visibility"] == "members"


def test_append_and_log_json(tally: TallyRunner) -> None:
    did = init(tally)
    ledger = create_ledger(tally)
    body = {"text": "fixed the brakes", "n": 3, "ok": True, "none": None, "list": [1, "two"],
            "link": {"/": ledger}, "blob": {"/": {"bytes": "aGVsbG8"}}}
    r = tally("append", "--ledger", ledger, "--kind", "note.text", "--body", json.dumps(body))
    assert r.returncode == 0, r.stderr
    entry_id = last_line(r.stdout)
    rows = log_rows(tally, ledger)
    assert [row["seq"] for row in rows] == [1, 2]
    row = rows[1]
    assert row["id"] == entry_id
    assert row["author"] == did and row["ledger"] == ledger and row["prev"] == rows[0]["id"]
    assert row["kind"] == "note.text" and row["body"] == body
    assert isinstance(row["ts"], int) and row["ts"] >= rows[0]["ts"]
    # the raw bytes are the exact stored blocks and verify on their own
    entry = decode_entry(base64.b64decode(row["header_raw"]), base64.b64decode(row["payload_raw"]))
    assert str(entry.id) == entry_id
    assert log_rows(tally, ledger, "--author", did) == rows


def test_log_orders_by_author_then_seq(tally: TallyRunner, tmp_path: Path) -> None:
    init(tally)
    ledger = create_ledger(tally)
    for i in range(3):
        r = tally("append", "--ledger", ledger, "--kind", "note.text", "--body", json.dumps({"i": i}))
        assert r.returncode == 0
    rows = log_rows(tally, ledger)
    assert [(r["seq"], r["body"].get("i")) for r in rows] == [(1, None), (2, 0), (3, 1), (4, 2)]


def test_append_refuses_bad_bodies_and_stores_nothing(tally: TallyRunner) -> None:
    init(tally)
    ledger = create_ledger(tally)
    cases = {
        '{"q": 1.5}': "bad_body",
        '{"q": 1e3}': "bad_body",
        '[1, 2]': "bad_body",
        '"text"': "bad_body",
        '{"a": 1, "a": 2}': "bad_body",
        '{"q": NaN}': "bad_body",
        'not json': "bad_body",
        '{"big": 18446744073709551616}': "bad_body",
        json.dumps({"x": "y" * 17000}): "oversize",
    }
    for body, code in cases.items():
        r = tally("append", "--ledger", ledger, "--kind", "note.text", "--body", body)
        assert r.returncode == 1, body
        assert r.stderr.startswith(f"error: {code}: "), (body, r.stderr)
        assert r.stdout == ""
    assert len(log_rows(tally, ledger)) == 1
    r = tally("append", "--ledger", ledger, "--kind", "Bad Kind", "--body", "{}")
    assert r.returncode == 1 and "bad_field" in r.stderr
    r = tally("append", "--ledger", ledger, "--kind", "ledger.genesis", "--body", "{}")
    assert r.returncode == 1 and "bad_genesis" in r.stderr
    assert len(log_rows(tally, ledger)) == 1


def test_unknown_and_malformed_ids(tally: TallyRunner) -> None:
    init(tally)
    ledger = create_ledger(tally)
    other = str(CID.for_block(b"\xa0"))
    r = tally("append", "--ledger", other, "--kind", "note.text", "--body", "{}")
    assert r.returncode == 1 and r.stderr.startswith("error: unknown_ledger: ")
    r = tally("log", "--ledger", other)
    assert r.returncode == 1 and r.stderr.startswith("error: unknown_ledger: ")
    r = tally("log", "--ledger", "bafynotacid")
    assert r.returncode == 1 and r.stderr.startswith("error: bad_cid: ")
    r = tally("log", "--ledger", ledger, "--author", "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme")
    assert r.returncode == 1 and r.stderr.startswith("error: bad_did: ")


def test_usage_errors_exit_2(tally: TallyRunner) -> None:
    for args in (("bogus",), ("append", "--kind", "x.y"), ("ledger",), ()):
        r = tally(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "usage" in r.stderr


def test_the_installed_command_keeps_the_contract(tally_process: TallyRunner, home: Path) -> None:
    """The `tally` program is `main` behind the process's own settings (node.cli.main.script): its exit codes,
    its last line of stdout and its `error: <code>: ` lines are the same as a shell sees them."""
    r = tally_process("init")
    assert r.returncode == 0 and last_line(r.stdout).startswith("did:key:z6Mk"), r.stderr
    r = tally_process("log", "--ledger", "bafynotacid")
    assert r.returncode == 1 and r.stderr.startswith("error: bad_cid: "), r.stderr
    r = tally_process("ledger")
    assert r.returncode == 2 and "error: usage: " in r.stderr, r.stderr


def test_verify_ok_then_catches_flipped_bytes(tally: TallyRunner, home: Path) -> None:
    init(tally)
    ledger = create_ledger(tally)
    ids = [last_line(tally("append", "--ledger", ledger, "--kind", "note.text", "--body", json.dumps({"i": i})).stdout)
           for i in range(3)]
    r = tally("verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 entries verified" in r.stdout
    target = CID.parse(ids[1]).raw
    db = home / "tally.sqlite3"
    for column in ("header", "payload"):
        with sqlite3.connect(db) as conn:
            (blob,) = conn.execute(f"SELECT {column} FROM entries WHERE id = ?", (target,)).fetchone()
        for pos in (0, len(blob) // 2, len(blob) - 1):
            corrupt = bytearray(blob)
            corrupt[pos] ^= 0x01
            with sqlite3.connect(db) as conn:
                conn.execute(f"UPDATE entries SET {column} = ? WHERE id = ?", (bytes(corrupt), target))
            r = tally("verify")
            assert r.returncode == 1, (column, pos)
            assert f"bad\t{ids[1]}\t" in r.stdout, r.stdout
            assert r.stderr.startswith("error: store_corrupt: ")
        with sqlite3.connect(db) as conn:
            conn.execute(f"UPDATE entries SET {column} = ? WHERE id = ?", (blob, target))
    assert tally("verify").returncode == 0


def test_follow_without_a_node_goes_to_the_store(tally: TallyRunner, home: Path) -> None:
    import asyncio

    from node.store.store import Store

    init(tally)
    other = str(CID.for_block(b"\xa1\x61\x61\x01"))  # a ledger this node has never seen
    for _ in range(2):  # following twice is fine
        r = tally("follow", other)
        assert r.returncode == 0 and last_line(r.stdout) == other, r.stderr

    async def replicated() -> list[CID]:
        async with await Store.open(home / "tally.sqlite3") as store:
            return await store.replicated()

    assert asyncio.run(replicated()) == [CID.parse(other)]
    r = tally("follow", "bafynope")
    assert r.returncode == 1 and r.stderr.startswith("error: bad_cid: ")


def test_forks_lists_proofs(tally: TallyRunner, home: Path) -> None:
    import asyncio

    from node.store.store import Store
    from protocol import ForkProof, SigningKey, create_entry

    init(tally)
    ledger = CID.parse(create_ledger(tally, "Open", "--public"))
    r = tally("forks")
    assert r.returncode == 0 and r.stdout == ""
    rogue = SigningKey(bytes(range(32)))
    a, b = (create_entry(rogue, ledger=ledger, seq=1, prev=None, ts=5, kind="note.text", body={"v": v})
            for v in (1, 2))

    async def ingest() -> None:
        async with await Store.open(home / "tally.sqlite3") as store:
            await store.ingest([a])
            await store.ingest([b])

    asyncio.run(ingest())
    r = tally("forks", "--json")
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(line) for line in r.stdout.splitlines()]
    proof = ForkProof.decode(base64.b64decode(row["proof"]))
    assert {proof.a.id, proof.b.id} == {a.id, b.id}
    assert row == {"author": rogue.did, "ledger": str(ledger), "seq": 1, "a": str(proof.a.id),
                   "b": str(proof.b.id), "proof": row["proof"]}
    r = tally("forks")
    assert r.stdout.splitlines() == ["\t".join([rogue.did, str(ledger), "1", str(proof.a.id), str(proof.b.id),
                                                row["proof"]])]
    assert tally("verify").returncode == 0

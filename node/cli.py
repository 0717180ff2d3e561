"""The `tally` command.

Contract (other programs rely on it): ids print as the whole last line of
stdout; `--json` prints JSON Lines; errors go to stderr as
`error: <code>: <message>`; exit 1 for refused input or a failed check, 2 for
a usage error, 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

from protocol import (
    CID,
    GENESIS_KIND,
    Entry,
    InvalidData,
    LocalError,
    SigningKey,
    TallyError,
    parse_body,
    public_key_from_did,
    to_json_value,
)

from .home import Home, default_home
from .runtime import tune_gc
from .store import AppendRequest, Store, wall_clock_ms

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
MAX_LEDGER_NAME_CHARS = 200


class UsageError(Exception):
    """Exit 2: the command line itself is wrong."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: usage: {message}\n")


def _home(args: argparse.Namespace) -> Home:
    given = getattr(args, "home", None)  # SUPPRESS default: absent unless given
    return Home(Path(given).expanduser() if given else default_home())


async def _open_store(home: Home, key: SigningKey | None = None) -> Store:
    if not home.has_identity():
        raise LocalError("no_identity", f"no identity in {home.path} (run `tally init`)")
    return await Store.open(home.store_path, key=key)


def _parse_cid(text: str) -> CID:
    return CID.parse(text.strip())


def _print_id(value: object) -> None:
    print(str(value), flush=True)


# ---- commands --------------------------------------------------------------


async def cmd_init(args: argparse.Namespace) -> int:
    home = _home(args)
    if home.has_identity():
        raise LocalError("identity_exists", f"{home.key_path} exists; it is never overwritten")
    if args.import_key:
        try:
            data = Path(args.import_key).read_bytes()
        except OSError as exc:
            raise LocalError("bad_key_file", f"cannot read {args.import_key}: {exc.strerror}") from None
        key = SigningKey.from_key_file(data)
    else:
        import secrets

        key = SigningKey(secrets.token_bytes(32))
    try:
        home.create_identity(key)
    except FileExistsError:
        raise LocalError("identity_exists", f"{home.key_path} exists; it is never overwritten") from None
    store = await Store.open(home.store_path)
    await store.close()
    _print_id(key.did)
    return 0


async def cmd_id(args: argparse.Namespace) -> int:
    _print_id(_home(args).load_key().did)
    return 0


async def cmd_ledger_create(args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not name or len(name) > MAX_LEDGER_NAME_CHARS:
        raise LocalError("bad_body", f"a ledger name has 1 to {MAX_LEDGER_NAME_CHARS} characters")
    home = _home(args)
    key = home.load_key()
    body = {"name": name, "visibility": "public" if args.public else "members"}
    store = await _open_store(home, key)
    try:
        entry = await store.append(AppendRequest(None, GENESIS_KIND, body, wall_clock_ms()))
    finally:
        await store.close()
    _print_id(entry.id)
    return 0


async def cmd_ledger_list(args: argparse.Namespace) -> int:
    store = await _open_store(_home(args))
    try:
        ledgers = await store.ledgers()
    finally:
        await store.close()
    for info in ledgers:
        if args.json:
            row = {
                "id": str(info.id),
                "name": info.name,
                "visibility": info.visibility,
                "founder": info.founder,
                "created": info.created,
                "entries": info.entries,
            }
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"{info.id}\t{info.visibility}\t{info.entries} entries\t{info.name}")
    return 0


async def cmd_append(args: argparse.Namespace) -> int:
    ledger = _parse_cid(args.ledger)
    body = parse_body(args.body)
    if args.kind == GENESIS_KIND:
        raise InvalidData("bad_genesis", "use `tally ledger create` to found a ledger")
    home = _home(args)
    key = home.load_key()
    store = await _open_store(home, key)
    try:
        entry = await store.append(AppendRequest(ledger, args.kind, body, wall_clock_ms()))
    finally:
        await store.close()
    _print_id(entry.id)
    return 0


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
        "header_raw": base64.b64encode(entry.header_raw).decode("ascii"),
        "payload_raw": None if entry.payload_raw is None else base64.b64encode(entry.payload_raw).decode("ascii"),
    }


async def cmd_log(args: argparse.Namespace) -> int:
    ledger = _parse_cid(args.ledger)
    author = public_key_from_did(args.author) if args.author else None
    store = await _open_store(_home(args))
    try:
        if not await store.has_ledger(ledger):
            raise LocalError("unknown_ledger", f"no ledger {ledger} is stored here")
        async with contextlib.aclosing(store.log(ledger, author)) as entries:
            async for entry in entries:
                if args.json:
                    print(json.dumps(entry_row(entry), ensure_ascii=False, separators=(",", ":")))
                else:
                    body = json.dumps(to_json_value(entry.body), ensure_ascii=False, separators=(",", ":"))
                    print(f"{entry.author}\t{entry.seq}\t{entry.header.ts}\t{entry.kind}\t{entry.id}\t{body}")
    finally:
        await store.close()
    return 0


async def cmd_verify(args: argparse.Namespace) -> int:
    store = await _open_store(_home(args))
    bad = 0
    try:
        total = await store.count()
        async for problem in store.verify():
            bad += 1
            print(f"bad\t{problem.entry_id}\t{problem.code}\t{problem.message}")
        forks = await store.forks()
    finally:
        await store.close()
    for proof in forks:
        print(f"fork\t{proof.author}\t{proof.a.ledger_id}\tseq {proof.seq}\t{proof.a.id}\t{proof.b.id}")
    if bad:
        raise LocalError("store_corrupt", f"{bad} problem(s) found in {total} stored entries")
    print(f"ok\t{total} entries verified\t{len(forks)} known fork(s)")
    return 0


# ---- parser ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home", default=argparse.SUPPRESS, metavar="DIR",
        help="the node's home folder (default: $TALLY_HOME, else the user data folder)",
    )
    parser = _Parser(prog="tally", description="Tally: a peer-to-peer open-value ledger node.", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def add(name: str, func: Command, help_text: str, target: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = target.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(func=func)
        return p

    p = add("init", cmd_init, "create this node's identity and print its did:key")
    p.add_argument("--import-key", metavar="FILE", help="restore a key: 64 hex characters (seed) or PKCS#8 PEM")
    add("id", cmd_id, "print this node's did:key")

    ledger = add("ledger", _missing_subcommand, "create and list ledgers")
    lsub = ledger.add_subparsers(dest="ledger_command", required=True, metavar="COMMAND", parser_class=_Parser)
    p = add("create", cmd_ledger_create, "found a ledger and print its id", lsub)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--public", action="store_true", help="anyone may read it (default: members only)")
    p = add("list", cmd_ledger_list, "list the ledgers stored here", lsub)
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = add("append", cmd_append, "append a raw entry to your chain in a ledger and print its id")
    p.add_argument("--ledger", required=True, metavar="ID")
    p.add_argument("--kind", required=True, metavar="KIND", help="namespaced kind, e.g. note.text")
    p.add_argument("--body", required=True, metavar="JSON", help="a JSON object (no floats)")

    p = add("log", cmd_log, "list a ledger's entries, by author then seq")
    p.add_argument("--ledger", required=True, metavar="ID")
    p.add_argument("--author", metavar="DID", help="only this author's chain")
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    add("verify", cmd_verify, "re-verify every stored entry from its raw bytes")
    return parser


async def _missing_subcommand(args: argparse.Namespace) -> int:
    raise UsageError("a subcommand is required")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_gc()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        result: int = asyncio.run(args.func(args))
        return result
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: not an error of ours. Silence the
        # interpreter's own flush at exit too.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except TallyError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"error: usage: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The demo coop of `tally demo`: its rules, its members' story (contributions over four weeks, validations,
a motion passed by score vote, a distribution), told through the three nodes' APIs once they answer.
The processes that serve them are node/cli/demo.py's."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from node.http.client import NodeClient
from protocol import LocalError, TallyError

NAMES: Final = ("alice", "bob", "carol")
LEDGER_NAME: Final = "Demo Coop"
STEP_TIMEOUT_S: Final = 120.0  # replication between steps usually takes well under a second
POLL_S: Final = 0.2

RULES: Final[dict[str, Any]] = {
    "purpose": "Repair and lend bikes (a Tally demo)",
    "visibility": "members",
    "units": ["hour", "euro", "day"],
    "validation": {"accept": 1, "reject": 1},
    "rates": {
        "work": {"hour": "20"},
        "work:engineering": {"hour": "30"},
        "transfer": {"euro": "1"},
        "use": {"day": "25"},
    },
    "buckets": [
        {"name": "reserve", "percent": "10", "recipient": "ledger"},
        {"name": "members", "percent": "90"},
    ],
    "voting": {"min": 0, "max": 5, "blank": "zero", "quorum": "0.5"},
}
NEW_HOURLY_RATE: Final = "25"
DISTRIBUTION_AMOUNT: Final = "1000"


@dataclass(frozen=True, slots=True)
class Contribution:
    """One demo contribution: who logs it, what, how many days ago, and who accepts it (None: left pending)."""

    author: str
    action: str
    quantity: str
    unit: str
    days_ago: int
    note: str
    endorser: str | None
    resource: str | None = None


BEFORE_VOTE: Final = (
    Contribution("alice", "work", "6", "hour", 26, "Set up the workshop: benches, stands and tools", "bob"),
    Contribution("bob", "work", "5", "hour", 25, "Repair café: eight bikes back on the road", "carol"),
    Contribution("alice", "transfer", "150", "euro", 24, "Spare parts: chains, tubes, brake pads", "carol"),
    Contribution("carol", "work", "3", "hour", 22, "Rebuilt the wheel-truing stand", "alice", "engineering"),
    Contribution("bob", "use", "2", "day", 18, "Lent his van for the parts run", "alice", "van"),
    Contribution("carol", "transfer", "80", "euro", 15, "Her share of this month's workshop rent", "bob"),
    Contribution("alice", "work", "4", "hour", 12, "Taught a brake-repair class", "carol"),
    Contribution("bob", "work", "3", "hour", 9, "Sorted the donated bikes", None),  # pending: try validating it
)
AFTER_VOTE: Final = (
    Contribution("bob", "work", "4", "hour", 5, "Spring tune-ups for the school", "alice"),
    Contribution("carol", "work", "2", "hour", 3, "Bookkeeping for the month", "bob"),
    Contribution("alice", "work", "3", "hour", 1, "Fixed the workshop's door", "carol"),
)
MOTION_TITLE: Final = f"Raise the hourly rate for work from {RULES['rates']['work']['hour']} to {NEW_HOURLY_RATE}"
BALLOTS: Final = {"alice": {"yes": 5, "no": 0}, "bob": {"yes": 4, "no": 2}, "carol": {"yes": 3, "no": 4}}


class Member(Protocol):
    """A member's running node, as the story needs it."""

    @property
    def name(self) -> str: ...

    @property
    def did(self) -> str: ...

    @property
    def log_path(self) -> Path: ...

    def api(self) -> NodeClient: ...


@dataclass
class Coop:
    """The demo coop on the members' nodes (alice, bob, carol); `ledger` once founded or found."""

    nodes: Sequence[Member]
    ledger: str = field(default="")

    def node(self, name: str) -> Member:
        return next(n for n in self.nodes if n.name == name)

    async def existing_ledger(self) -> bool:
        """True if alice's node holds a Demo Coop with all three as members (a `--dir` used before)."""
        alice = self.node("alice")
        rows = (await alice.api().call("GET", "/ledgers"))["ledgers"]
        for row in rows:
            if row.get("name") == LEDGER_NAME:
                state = await alice.api().call("GET", f"/ledgers/{row['id']}/state")
                if set(state["members"]) >= {n.did for n in self.nodes}:
                    self.ledger = str(row["id"])
                    return True
        return False

    async def seed(self) -> None:
        alice, bob, carol = (self.node(name) for name in NAMES)
        found = await alice.api().call("POST", "/ledgers", {"name": LEDGER_NAME, "rules": RULES})
        self.ledger = ledger = str(found["id"])
        progress(f"alice: founded {LEDGER_NAME!r} (members only): {ledger}")
        for node in (bob, carol):
            await node.api().call("POST", "/follow", {"ledger": ledger})
            await alice.api().call("POST", f"/ledgers/{ledger}/members", {"agent": node.did})
            progress(f"alice: admitted {node.name}, who follows the ledger")
        dids = {n.did for n in self.nodes}
        await self._converged("the three members on every node", lambda s: set(s["members"]) == dids)
        for node in self.nodes:  # the names the members see for each other (member.about)
            await node.api().call("POST", f"/ledgers/{ledger}/about", {"name": node.name.capitalize()})
        progress("alice, bob, carol: named themselves in the ledger")
        await self._converged("the three names on every node", lambda s: len(s["names"]) == len(dids))

        before = await self._contribute(BEFORE_VOTE)
        await self._endorse(BEFORE_VOTE, before)

        motion = str((await alice.api().call("POST", f"/ledgers/{ledger}/motions", {
            "title": MOTION_TITLE, "amend": {"rates": {"work": {"hour": NEW_HOURLY_RATE}}},
            "note": "Parts and rent went up; our hours should count for more.",
        }))["id"])
        progress(f"alice: proposed the motion {MOTION_TITLE!r}: {motion}")
        await self._converged("the motion on every node", lambda s: any(m["id"] == motion for m in s["motions"]))
        for node in self.nodes:
            scores = BALLOTS[node.name]
            await node.api().call("POST", f"/motions/{motion}/votes", {"scores": scores})
            progress(f"{node.name}: voted " + ", ".join(f"{o}={s}" for o, s in scores.items()))
        await self._until(f"the three ballots at {alice.name}'s node", lambda: self._ballots(alice, motion, 3))
        await alice.api().call("POST", f"/motions/{motion}/close", {})

        def passed(state: dict[str, Any]) -> bool:
            shown = next((m for m in state["motions"] if m["id"] == motion), None)
            return (shown is not None and shown["closed"] and shown["amended"] is True
                    and state["rules"]["rates"]["work"]["hour"] == NEW_HOURLY_RATE)

        await self._converged("the closed motion and the new rate on every node", passed)
        progress(f"alice: closed the motion: yes wins, work now counts {NEW_HOURLY_RATE} an hour on every node")

        after = await self._contribute(AFTER_VOTE)
        await self._endorse(AFTER_VOTE, after)

        recorded = await alice.api().call("POST", f"/ledgers/{ledger}/distributions",
                                          {"amount": DISTRIBUTION_AMOUNT, "unit": "euro"})
        shares = ", ".join(f"{who(line['recipient'], self.nodes, ledger)} {line['amount']}"
                           for line in recorded["lines"])
        progress(f"alice: recorded a distribution of {DISTRIBUTION_AMOUNT} euro ({shares}): {recorded['id']}")
        # Equal digests: every node holds every entry written so far, the distribution too, and found it valid.
        await self._converged("the distribution on every node", lambda s: not s["invalid"])

    async def _contribute(self, plan: Sequence[Contribution]) -> list[str]:
        today = datetime.now(UTC).date()
        ids = []
        for c in plan:
            body: dict[str, Any] = {"action": c.action, "quantity": c.quantity, "unit": c.unit,
                                    "at": (today - timedelta(days=c.days_ago)).isoformat(), "note": c.note}
            if c.resource:
                body["resource"] = c.resource
            answer = await self.node(c.author).api().call("POST", f"/ledgers/{self.ledger}/contributions", body)
            ids.append(str(answer["id"]))
            progress(f"{c.author}: logged {c.action} {c.quantity} {c.unit} ({c.note}, {body['at']})")
        await self._converged(f"{len(ids)} contributions on every node", lambda s: holds(s, ids))
        return ids

    async def _endorse(self, plan: Sequence[Contribution], ids: Sequence[str]) -> None:
        for c, entry in zip(plan, ids, strict=True):
            if c.endorser is None:
                progress(f"{c.author}: {c.note!r} waits for a member to validate it")
                continue
            await self.node(c.endorser).api().call("POST", f"/entries/{entry}/endorsements", {"verdict": "accept"})
            progress(f"{c.endorser}: validated {c.author}'s {c.action} {c.quantity} {c.unit}")
        final = {entry for c, entry in zip(plan, ids, strict=True) if c.endorser is not None}
        await self._converged("the validations on every node",
                              lambda s: final.isdisjoint(p["id"] for p in s["pending"]))

    async def _ballots(self, node: Member, motion: str, count: int) -> bool:
        shown = await node.api().call("GET", f"/motions/{motion}")
        return len(shown.get("all_ballots", [])) >= count

    async def _states(self) -> list[dict[str, Any]] | None:
        states = []
        for node in self.nodes:
            try:
                states.append(await node.api().call("GET", f"/ledgers/{self.ledger}/state"))
            except TallyError as exc:
                if exc.code == "unknown_ledger":
                    return None
                raise
        return states

    async def _converged(self, what: str, check: Callable[[dict[str, Any]], bool]) -> None:
        """Wait until the three nodes hold the same state digest and `check` holds for it."""

        async def same() -> bool:
            states = await self._states()
            return (states is not None and len({s["digest"] for s in states}) == 1
                    and all(check(s) for s in states))

        await self._until(what, same)

    async def _until(self, what: str, check: Callable[[], Awaitable[bool]]) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not await check():
            if time.monotonic() > deadline:
                logs = ", ".join(str(n.log_path) for n in self.nodes)
                raise LocalError("internal", f"timed out after {STEP_TIMEOUT_S:.0f} s waiting for {what}; the "
                                 f"nodes' logs: {logs}")
            await asyncio.sleep(POLL_S)


def progress(text: str) -> None:
    print(f"demo: {text}", file=sys.stderr, flush=True)


def holds(state: dict[str, Any], ids: Sequence[str]) -> bool:
    """True if the state holds the contributions `ids`, still waiting for validation."""
    return set(ids) <= {p["id"] for p in state["pending"]}


def who(recipient: str, nodes: Sequence[Member], ledger: str) -> str:
    if recipient == ledger:
        return "the coop"
    return next((n.name for n in nodes if n.did == recipient), recipient)

"""`tally demo`: three local nodes with a demo coop, for a first look.

Makes three homes (alice, bob, carol) under a new temporary folder (or `--dir`), starts a
`tally run` child process for each on 127.0.0.1 (each peers the other two with `--peer`; mDNS is
off: a node on a loopback address announces nothing, and the demo stays away from real nodes on the
LAN; with `--lan` they listen on every interface and announce themselves by mDNS too), then drives
them through their HTTP APIs: Alice founds "Demo Coop" (members only) and admits
Bob and Carol, who follow it; all three log contributions over the past four weeks and validate each
other's; Alice's motion to raise the hourly rate passes by score vote; a few more contributions use
the new rate; Alice records a distribution. Then it prints each node's did:key, dashboard address and
a one-time login link (stdout), and waits. Ctrl-C (or SIGTERM) stops the three nodes (SIGTERM, then
SIGKILL after a timeout), removes the temporary folder (never a `--dir` one) and exits 0. A node
that dies while the demo is being set up stops the demo with exit 1, naming the node and its log;
once it is ready, a node that stops (killed, or stopped cleanly) is reported with the command that
starts it again, and the other two keep running and show it offline (the demo ends, with exit 1,
only when all three have stopped).

Progress goes to stderr, one line per step; each node's own log goes to `<home>/node.log`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from node.cli.demo_coop import LEDGER_NAME, NAMES, POLL_S, Coop, progress
from node.cli.demo_nodes import (
    HOST,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    DemoNode,
    free_ports,
    init_demo_home,
    login_link,
    show_log_tail,
    stop_with_parent,
    tally_command,
)
from node.cli.parsing import UsageError
from node.home import Home
from node.http.client import NodeClient, answers_as
from protocol import LocalError, TallyError

T = TypeVar("T")


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived: stop the nodes and exit 0."""


class _NodeDied(Exception):
    """A node's process ended on its own."""


@dataclass
class Demo:
    root: Path
    temporary: bool  # the demo made the folder: removed when it stops
    base_port: int
    lan: bool = False  # listen on every interface and find each other by mDNS too
    nodes: list[DemoNode] = field(default_factory=list)
    coop: Coop = field(init=False)  # the story told on the nodes (node/cli/demo_coop.py)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _signals: int = field(default=0, init=False)  # SIGINT and SIGTERM received: a second one kills the nodes

    def __post_init__(self) -> None:
        self.coop = Coop(self.nodes)  # the same list: the nodes are added to it as their homes are made

    # ---- the run, start to end ---------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal)
            except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises KeyboardInterrupt instead
                continue
            installed.append(sig)
        died: DemoNode | None = None
        failure: TallyError | None = None
        try:
            try:
                await self._guarded(self._setup())
                await self._guarded(self._watch(), deaths=False)  # until Ctrl-C, or every node has stopped
            except _Stopped:
                progress("stopping the three nodes …")
            except _NodeDied:
                died = self._dead()
            except TallyError as exc:  # a step refused or timed out, or a node that died did not answer
                await asyncio.sleep(0.5)
                died = self._dead()
                failure = exc
            except KeyboardInterrupt:  # where signal handlers cannot be installed
                progress("stopping the three nodes …")
            finally:
                await self._close_clients()
                await self._stop_nodes()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        if died is not None or failure is not None:
            kept = f"; the homes and logs are kept in {self.root}" if self.temporary else ""
            if died is not None:
                code = died.proc.returncode if died.proc is not None else None
                show_log_tail(died)
                raise LocalError("not_running", f"{died.name}'s node stopped on its own (exit status {code}); "
                                 f"its log: {died.log_path}{kept}")
            assert failure is not None
            raise LocalError(failure.code, f"{failure.message}{kept}")
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)
            progress(f"stopped; removed {self.root}")
        else:
            progress(f"stopped; the homes stay in {self.root}")
        return 0

    def _dead(self) -> DemoNode | None:
        return next((n for n in self.nodes if n.proc is not None and n.proc.poll() is not None), None)

    def _on_signal(self) -> None:
        self._signals += 1
        self._stop.set()

    async def _watch(self) -> None:
        """While the demo runs: report each node that stops, with the command that starts it again (the others
        keep running and show it offline); end (_NodeDied) once all of them have stopped."""
        reported: set[str] = set()
        while True:
            for node in self.nodes:
                if node.name not in reported and node.proc is not None and node.proc.poll() is not None:
                    reported.add(node.name)
                    self._report_stopped(node)
            if len(reported) == len(self.nodes):
                raise _NodeDied
            await asyncio.sleep(POLL_S)

    def _report_stopped(self, node: DemoNode) -> None:
        code = node.proc.returncode if node.proc is not None else None
        others = [n.name for n in self.nodes if n is not node and n.alive()]
        again = f"{shlex.join(node.command)} >>{shlex.quote(str(node.log_path))} 2>&1 &"
        say = (f"{node.name}'s node stopped (exit status {code}); "
               + (f"{' and '.join(others)} keep running and show it offline. " if others else "")
               + f"Start it again with:\n  {again}")
        progress(say)
        print(say, flush=True)

    async def _guarded(self, work: Coroutine[Any, Any, T], *, deaths: bool = True) -> T:
        """Run `work` until it ends, a stop signal arrives (_Stopped) or (with `deaths`) a node dies
        (_NodeDied)."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._stop.wait())
        death = asyncio.ensure_future(self._first_death() if deaths else asyncio.Event().wait())
        try:
            await asyncio.wait({task, stopped, death}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for other in (task, stopped, death):
                if not other.done():
                    other.cancel()
            await asyncio.gather(task, stopped, death, return_exceptions=True)
        if self._stop.is_set():  # Ctrl-C in a terminal reaches the nodes too: they stop, as asked
            raise _Stopped
        if death.done() and not death.cancelled() and death.exception() is None:
            raise _NodeDied
        return task.result()

    async def _first_death(self) -> None:
        """Returns once a started node's process has ended (after a moment, so a signal counts first)."""
        while True:
            if any(n.proc is not None and n.proc.poll() is not None for n in self.nodes):
                await asyncio.sleep(0.5)
                return
            await asyncio.sleep(POLL_S)

    async def _setup(self) -> None:
        await self._make_homes()
        self._start_nodes()
        await asyncio.gather(*(self._until_answering(n) for n in self.nodes))
        await self._open_clients()
        if await self.coop.existing_ledger():
            progress(f"reusing {LEDGER_NAME} ({self.coop.ledger}) from an earlier demo in {self.root}")
        else:
            await self.coop.seed()
        await self._show()

    # ---- homes and processes -----------------------------------------------------------

    async def _make_homes(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ports = self._ports()
        for name, port in zip(NAMES, ports, strict=True):
            home = Home(self.root / name)
            if home.has_identity():
                did = str(home.load_key().did)
                progress(f"{name}: reusing the identity in {home.path}")
            else:
                did = await init_demo_home(home)
                progress(f"{name}: new identity {did} in {home.path}")
            self.nodes.append(DemoNode(name, home, port, did))

    def _ports(self) -> list[int]:
        if self.base_port:
            return [self.base_port + i for i in range(len(NAMES))]
        return free_ports(len(NAMES))

    def _start_nodes(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "TALLY_HOME"}
        for node in self.nodes:
            args = [sys.executable, "-m", "node.cli.main", "--home", str(node.home.path), "run",
                    "--listen", f"{'0.0.0.0' if self.lan else HOST}:{node.port}",
                    "--mdns" if self.lan else "--no-mdns", "--offline"]
            for other in self.nodes:
                if other is not node:
                    args += ["--peer", other.address]
            node.command = tuple(args)
            with node.log_path.open("ab") as log:
                node.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                             preexec_fn=stop_with_parent())
            progress(f"{node.name}: starting a node on {node.address} (pid {node.proc.pid}, log {node.log_path})")

    async def _until_answering(self, node: DemoNode) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not await answers_as(node.address, node.did, 2.0):
            if time.monotonic() > deadline:
                raise LocalError("not_running", f"{node.name}'s node did not answer at {node.address} within "
                                 f"{START_TIMEOUT_S:.0f} s; its log: {node.log_path}")
            await asyncio.sleep(POLL_S)
        progress(f"{node.name}: answering at {node.address}")

    async def _open_clients(self) -> None:
        for node in self.nodes:
            node.client = await NodeClient(node.address, node.home.load_token()).__aenter__()

    async def _close_clients(self) -> None:
        for node in self.nodes:
            if node.client is not None:
                with contextlib.suppress(Exception):
                    await node.client.__aexit__(None, None, None)
                node.client = None

    async def _stop_nodes(self) -> None:
        running = [n for n in self.nodes if n.alive()]
        for node in running:
            assert node.proc is not None
            with contextlib.suppress(ProcessLookupError):
                node.proc.send_signal(signal.SIGTERM)
        signals = self._signals
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(n.alive() for n in running) and time.monotonic() < deadline and self._signals <= signals + 1:
            await asyncio.sleep(0.1)  # a second Ctrl-C (or the timeout) kills them
        for node in running:
            assert node.proc is not None
            if node.proc.poll() is None:
                progress(f"{node.name}: did not stop in time; killing it")
                with contextlib.suppress(ProcessLookupError):
                    node.proc.kill()
            node.proc.wait()

    # ---- what the newcomer reads ---------------------------------------------------------

    async def _show(self) -> None:
        alice = self.coop.node("alice")
        state = await alice.api().call("GET", f"/ledgers/{self.coop.ledger}/state")
        history = (await alice.api().call("GET", f"/ledgers/{self.coop.ledger}/history"))["contributions"]
        final = sum(1 for c in history if c["status"] == "final")
        pending = sum(1 for c in history if c["status"] == "pending")
        passed = [m for m in state["motions"] if m["closed"] and m["amended"]]
        entries = (await alice.api().call("GET", f"/ledgers/{self.coop.ledger}/entries"))["entries"]
        distributions = sum(1 for e in entries if e["kind"] == "ledger.distribution")
        links = {}
        for node in self.nodes:
            links[node.name] = await login_link(node)

        tally = tally_command()
        home_of = {n.name: shlex.quote(str(n.home.path)) for n in self.nodes}
        where = "removed when the demo stops" if self.temporary else "kept when the demo stops"
        out = [
            "",
            *([f"Tally demo: three nodes on every interface (ports {', '.join(str(n.port) for n in self.nodes)}),"
               " each a peer of the other two and announced by mDNS, where the LAN allows multicast."]
              if self.lan else
              [f"Tally demo: three nodes on {HOST}, each a peer of the other two (mDNS is off: the demo stays",
               "away from any Tally nodes on your network; --lan puts them on it)."]),
            f"Homes: {self.root} ({where})",
            "",
            f'Ledger "{LEDGER_NAME}": {self.coop.ledger}',
            f"  {len(state['members'])} members, {len(history)} contributions ({final} final, {pending} waiting "
            f"for validation), {len(passed)} amendment passed by vote (work: "
            f"{state['rules']['rates']['work']['hour']} an hour), {distributions} distribution recorded",
            "",
        ]
        for node in self.nodes:
            link = links[node.name]
            out += [
                f"{node.name:<7} {node.did}",
                f"  dashboard  {node.address}/",
                f"  login      {link}" if link else "  login      (this node has no dashboard login yet)",
                f"  home       {node.home.path}   log {node.log_path}",
            ]
        out += [
            "",
            "What to try:",
            "  - Open alice's login link: her dashboard shows Demo Coop, its members, contributions and motion.",
            "  - Log a contribution on alice's dashboard, then open bob's login link and validate it there.",
            "  - Bob's 'Sorted the donated bikes' waits for validation: accept it on alice's or carol's dashboard.",
            "  - Propose a motion, vote on it from each dashboard, close it from the proposer's.",
            f"  - {tally} --home {home_of['alice']} history {self.coop.ledger}",
            f"  - {tally} --home {home_of['bob']} state {self.coop.ledger}      (the same digest on every node)",
            f"  - {tally} --home {home_of['carol']} distribute {self.coop.ledger} --amount 500 --unit euro",
            "",
            "Login links work once and expire after 5 minutes; for a fresh one:",
            f"  {tally} --home {home_of['alice']} open      (or bob's, carol's home)",
            "",
            "Ctrl-C stops the three nodes.",
        ]
        print("\n".join(out), flush=True)


async def cmd_demo(args: argparse.Namespace) -> int:
    base_port: int = args.base_port
    if base_port and not 1 <= base_port <= 65535 - (len(NAMES) - 1):
        raise UsageError(f"--base-port must be from 1 to {65535 - (len(NAMES) - 1)} (or 0 for free ports)")
    if args.dir:
        root, temporary = Path(args.dir).expanduser().resolve(), False
    else:
        root, temporary = Path(tempfile.mkdtemp(prefix="tally-demo-")).resolve(), True
    return await Demo(root, temporary, base_port, lan=args.lan).run()

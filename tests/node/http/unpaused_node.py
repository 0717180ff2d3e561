"""`tally …` as its own process, its node's wrong-token waits (`ApiConfig.pause`) answered at once.

For the schemathesis run (test_openapi.py): its auth checks send one wrong token over and over, and each 401 of
the same guess waits twice as long as the one before (0.25 s up to 8 s), about 80 s of the run spent asleep.
Everything else is the real `tally run`: its store, guarded site, replicator, log and signals. The node still
logs each refused token with the wait it would have had (`delay_s`); tests/node/http/test_owner_auth.py sits
through the real waits of real nodes.

Usage: python unpaused_node.py --home HOME run … (the arguments of `tally`).
"""

from __future__ import annotations

import asyncio
import functools

import node.run
from node.cli.main import script
from node.http.context import ApiConfig


async def answer_at_once(seconds: float) -> None:
    await asyncio.sleep(0)  # still a turn of the loop, as a wait would be


if __name__ == "__main__":
    # node.run builds the node's ApiConfig by this name: the one setting changed, every other one as given
    node.run.ApiConfig = functools.partial(ApiConfig, pause=answer_at_once)  # type: ignore[misc, assignment]
    script()

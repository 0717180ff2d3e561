"""A flood of peer link attempts beyond the caps (SPEC §13.9) is answered by the API app's first
middleware, over a real loopback socket: 503 each, and one log line per host with a count, not one
line (nor any access-log line) per attempt."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from loopback_api import KEY, running_api

from node.store.store import Store
from node.sync import gate
from node.sync.replication import Replicator


async def test_refused_link_attempts_cost_one_log_line_per_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gate, "MAX_HANDSHAKES_PER_ADDRESS", 0)  # every attempt is over the cap
    caplog.set_level(logging.INFO)
    store = await Store.open(tmp_path / "tally.sqlite3", key=KEY)
    rep = Replicator(store, KEY, offline=True)
    await rep.start()
    try:
        async with running_api(store, rep) as api:
            url = str(api.client.make_url("/api/v1/sync"))
            async with aiohttp.ClientSession() as http:
                for _ in range(40):
                    async with http.get(url, headers={"Connection": "Upgrade", "Upgrade": "websocket"}) as resp:
                        assert resp.status == 503, resp.status
                        assert resp.headers.get("Connection", "").lower() == "close"  # the connection ends too
                status, identity = await api.call("GET", "/identity")  # the rest of the API answers as usual
            assert status == 200 and identity["id"] == KEY.did
    finally:
        await rep.stop()
        await store.close()
    refusals = [r for r in caplog.records if r.getMessage().startswith("peer links refused")]
    assert len(refusals) == 1 and "host=127.0.0.1" in refusals[0].getMessage(), [r.getMessage() for r in refusals]
    logged_paths = [getattr(r, "path", None) for r in caplog.records if r.getMessage() == "request"]
    assert "/api/v1/sync" not in logged_paths and "/api/v1/identity" in logged_paths, logged_paths


def test_spec_states_the_refusal_log_period() -> None:
    spec = (Path(__file__).resolve().parents[3] / "SPEC.md").read_text()
    assert f"`REFUSALS_LOG_S = {gate.REFUSALS_LOG_S:.0f}`" in spec

"""Cancellation reaching the backend, proven with our own stdio fixture server.

server-everything ignores notifications/cancelled in a way no client can observe, so this uses
tests/e2e/fixture_server.py, which logs the request id a `slow` call started under and the id
each notifications/cancelled names. Through the gateway the ids are the gateway's upstream ids;
they must still match each other.
"""

from __future__ import annotations

import time

import anyio
import pytest
from conftest import Endpoint, fixture_spec, read_events, text_of
from mcp.shared.exceptions import MCPError

BACKEND = "fx"


@pytest.fixture(scope="module")
def fx(peers, module_gateway, tmp_path_factory) -> Endpoint:
    log = tmp_path_factory.mktemp("fixture") / "events.jsonl"
    ep = module_gateway({"mcpServers": {BACKEND: fixture_spec(peers, log)}}, probe={BACKEND: ["slow"]})
    ep.fixture_log = log
    return ep


async def _poll_event(log, pred, timeout: float, what: str, skip: int = 0) -> dict:
    """Wait for an event matching `pred` among the log's events after the first `skip`."""
    deadline = time.monotonic() + timeout
    while True:
        hits = [e for e in read_events(log)[skip:] if pred(e)]
        if hits:
            return hits[0]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; events: {read_events(log)[-10:]}")
        await anyio.sleep(0.05)


@pytest.mark.parametrize("how", ["cancel-scope", "read-timeout"])
async def test_cancel_reaches_backend(fx: Endpoint, frontend: str, how: str):
    ep = fx
    if frontend not in ep.frontends:
        pytest.skip("direct mode: the stdio fixture is only reachable over stdio")
    log = ep.fixture_log
    async with ep.connect(frontend) as c:
        seen = len(read_events(log))  # the log is shared by every fixture process of this module

        def new_start(e: dict) -> bool:
            return e["event"] == "started"

        if how == "cancel-scope":
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.call_tool, ep.name("slow"), {"seconds": 30})
                started = await _poll_event(log, new_start, 15, "the backend to start `slow`", seen)
                tg.cancel_scope.cancel()
        else:
            with pytest.raises(MCPError) as exc:
                await c.call_tool(ep.name("slow"), {"seconds": 30}, read_timeout_seconds=1.5)
            assert exc.value.error.code == -32001  # REQUEST_TIMEOUT, raised by the client itself
            started = await _poll_event(log, new_start, 5, "the backend to start `slow`", seen)

        rid, pid = started["requestId"], started["pid"]

        def mine(kind: str):
            return lambda e: e["event"] == kind and e["requestId"] == rid and e["pid"] == pid

        await _poll_event(log, mine("cancelled"), 10,
                          f"notifications/cancelled for upstream request {rid!r} at the backend", seen)
        await _poll_event(log, mine("aborted"), 5, "the backend to abort the cancelled call", seen)

        # the session and the backend keep working
        with anyio.fail_after(10):
            r = await c.call_tool(ep.name("echo"), {"message": "after cancel"})
        assert text_of(r) == "fixture fixture: after cancel"


@pytest.mark.gateway_only
async def test_backend_timeout_cancels_upstream(peers, gateway, tmp_path):
    """A per-backend `timeout` (seconds) bounds a call: the caller gets an error promptly and
    the gateway cancels the upstream request."""
    log = tmp_path / "events.jsonl"
    ep = gateway({"mcpServers": {BACKEND: {**fixture_spec(peers, log), "timeout": 1}}}, probe={BACKEND: ["slow"]})
    async with ep.connect("mcp") as c:
        t0 = time.monotonic()
        with anyio.fail_after(20):
            try:
                r = await c.call_tool(ep.name("slow"), {"seconds": 30})
            except MCPError as e:
                message = e.error.message
            else:
                assert r.is_error, f"slow call outlived the 1 s backend timeout: {text_of(r)!r}"
                message = text_of(r)
        assert time.monotonic() - t0 < 10, "the backend timeout did not fire"
        assert BACKEND in message, message
        started = await _poll_event(log, lambda e: e["event"] == "started", 5, "the backend to start `slow`")
        await _poll_event(log, lambda e: e["event"] == "cancelled" and e["requestId"] == started["requestId"], 10,
                          "the gateway to cancel the timed-out upstream request")
        r = await c.call_tool(ep.name("echo"), {"message": "after timeout"})
        assert text_of(r) == "fixture fixture: after timeout"

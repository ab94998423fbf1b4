"""Degraded backends (gateway only): a command that does not exist, a disabled backend, a backend
that dies in the middle of a call, one killed from outside, and a clean shutdown."""

from __future__ import annotations

import re

import anyio
import httpx
import psutil
import pytest
from conftest import FRONTENDS, Endpoint, fixture_spec, read_events, text_of, wait_until
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.gateway_only

MISSING = "/nonexistent/e2e-no-such-command-42"


@pytest.fixture(scope="module")
def degraded(everything, module_gateway) -> Endpoint:
    cfg = {
        "mcpServers": {
            "ev": everything.stdio_spec(),
            "broken": {"command": MISSING, "args": ["--flag"]},
            "off": {"command": "/nonexistent/never-started", "disabled": True},
        }
    }
    return module_gateway(cfg, expect_down=("broken",), probe={"ev": ["echo"]})


def names_backend(message: str, backend: str) -> bool:
    """True when `backend` appears as a word of its own (not only inside `backend__tool`)."""
    return re.search(rf"(?<![\w-]){re.escape(backend)}(?![\w-])", message) is not None


def test_missing_command_is_reported_down(degraded: Endpoint):
    backends = {b["name"]: b for b in degraded.backends()}
    assert set(backends) == {"ev", "broken", "off"}
    assert backends["broken"]["transport"] == "stdio"
    assert backends["broken"]["state"] == "down"
    assert "e2e-no-such-command-42" in (backends["broken"].get("lastError") or ""), backends["broken"]
    assert backends["ev"]["state"] == "ready" and backends["ev"].get("lastError") is None
    assert backends["off"]["state"] == "disabled"

    r = httpx.get(degraded.url("/readyz"), timeout=10)
    ready = {b["name"]: b["state"] for b in r.json()["backends"]}
    assert ready == {"ev": "ready", "broken": "down", "off": "disabled"}
    assert httpx.get(degraded.url("/healthz"), timeout=10).status_code == 200


async def test_other_backends_keep_serving(degraded: Endpoint, frontend: str):
    async with degraded.connect(frontend) as c:
        names = [t.name for t in (await c.list_tools()).tools]
        assert "ev__echo" in names
        assert not [n for n in names if n.startswith(("broken__", "off__"))], names
        r = await c.call_tool("ev__echo", {"message": "still serving"})
        assert text_of(r) == "Echo: still serving"
        with pytest.raises(MCPError) as exc:
            await c.call_tool("broken__echo", {"message": "x"})
        assert "broken" in exc.value.error.message


@pytest.mark.parametrize("fe", FRONTENDS)
async def test_backend_exits_mid_call(everything, peers, gateway, tmp_path, fe: str):
    log = tmp_path / "events.jsonl"
    cfg = {"mcpServers": {"ev": everything.stdio_spec(), "fx": fixture_spec(peers, log)}}
    ep = gateway(cfg, transport="stdio" if fe == "stdio" else "http", probe={"ev": ["echo"], "fx": ["crash"]})
    async with ep.connect(fe) as c:
        with anyio.fail_after(30):
            message = await _error_text(c, "fx__crash", {})
        assert any(e["event"] == "crashing" for e in read_events(log)), "the fixture never got the call"
        assert names_backend(message, "fx"), f"error does not name backend fx: {message!r}"

        with anyio.fail_after(10):
            r = await c.call_tool("ev__echo", {"message": "unaffected"})
        assert text_of(r) == "Echo: unaffected"

        # Later calls either reach a restarted fx or fail naming it: never hang, never lie.
        with anyio.fail_after(30):
            try:
                r = await c.call_tool("fx__echo", {"message": "again"})
            except MCPError as e:
                assert names_backend(e.error.message, "fx"), e.error.message
            else:
                if r.is_error:
                    assert names_backend(text_of(r), "fx"), text_of(r)
                else:
                    assert text_of(r) == "fixture fixture: again"
    if fe != "stdio":
        fx = {b["name"]: b for b in ep.backends()}["fx"]
        assert fx["state"] in ("down", "starting", "ready"), fx
        if fx["state"] == "down":
            assert fx.get("lastError"), fx


async def test_backend_killed_from_outside(everything, gateway):
    """SIGKILL one server-everything child of the gateway while a long call runs on it."""
    ep = gateway({"mcpServers": {"ev": everything.stdio_spec({"E2E_IDENT": "victim"}),
                                 "ev2": everything.stdio_spec({"E2E_IDENT": "survivor"})}},
                 probe={"ev": ["echo"], "ev2": ["echo"]})

    def victim() -> psutil.Process | None:
        for p in psutil.Process(ep.process.pid).children(recursive=True):
            try:
                if p.environ().get("E2E_IDENT") == "victim":
                    return p
            except psutil.Error:
                continue
        return None

    proc = wait_until(victim, 10, "the `ev` backend process")
    async with ep.connect("mcp") as c:
        async def kill_soon() -> None:
            await anyio.sleep(0.5)  # let the call reach the backend first
            proc.kill()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_soon)
                message = await _error_text(c, "ev__trigger-long-running-operation", {"duration": 5, "steps": 5})
        assert names_backend(message, "ev"), f"error does not name backend ev: {message!r}"
        r = await c.call_tool("ev2__echo", {"message": "alive"})
        assert text_of(r) == "Echo: alive"


def test_sigterm_stops_gateway_and_its_backends(everything, peers, gateway, tmp_path):
    log = tmp_path / "events.jsonl"
    ep = gateway({"mcpServers": {"ev": everything.stdio_spec(), "fx": fixture_spec(peers, log)}})
    children = psutil.Process(ep.process.pid).children(recursive=True)
    assert len(children) >= 2, [c.cmdline() for c in children]
    problems = gateway.stop(ep)
    assert not problems, "\n".join(problems)

    def gone() -> bool:
        return all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE for c in children)

    wait_until(gone, 5, "the gateway's backends to exit")


async def _error_text(c, tool: str, args: dict) -> str:
    """Call `tool`, expecting a failure (a JSON-RPC error or an isError result); return its text."""
    try:
        r = await c.call_tool(tool, args)
    except MCPError as e:
        return e.error.message + (f" {e.error.data}" if e.error.data else "")
    if r.is_error:
        return text_of(r)
    raise AssertionError(f"{tool} succeeded although its backend went away: {text_of(r)!r}")

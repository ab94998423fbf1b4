"""Server→client requests reach only the client they are for (gateway only).

server-everything (over stdio, SSE and streamable HTTP) shared by several Python SDK clients at
once, each answering sampling and elicitation with a text of its own. With `sessions: shared`
(the default) a request the gateway cannot tie to one client (requests of several clients in
flight on the backend) is refused with a clear error, never handed to another client; with
`sessions: per-client` every client has an upstream session (for stdio, a process) of its own,
so every call succeeds.
Either way no client ever sees another's answer, and no callback is ever asked by another
client's call.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import psutil
import mcp_types as types
import pytest
from conftest import BACKEND_TRANSPORTS, DIRECT, EVERYTHING_JS, Endpoint, Recorder, await_until, text_of
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.skipif(DIRECT, reason="attribution is the gateway's")

BACKEND = "ev"
SAMPLING_TOOL = "trigger-sampling-request"
ELICITATION_TOOL = "trigger-elicitation-request"
REFUSED = "cannot tell which client this"


@dataclass
class Peer:
    """One client: the text it answers with, and every request its callbacks were asked."""

    index: int
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    sampled: list[str] = field(default_factory=list)
    elicited: int = 0

    @property
    def prompt(self) -> str:
        return f"prompt-of-{self.tag}"

    @property
    def answer(self) -> str:
        return f"answer-of-{self.tag}"

    async def sampling(self, ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.sampled.append(params.messages[0].content.text)
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text=self.answer),
                                         model="e2e", stop_reason="endTurn")

    async def elicitation(self, ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicited += 1
        return types.ElicitResult(action="accept", content={"name": self.answer, "check": True, "integer": 7})


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def gateway_for(gateway, everything, sessions: str, settings: dict[str, Any] | None = None,
                transport: str = "stdio") -> Endpoint:
    spec = {**everything.spec(transport), "sessions": sessions}
    config: dict[str, Any] = {"mcpServers": {BACKEND: spec}}
    if settings:
        config["gateway"] = settings
    return gateway(config, probe={BACKEND: ["echo"]})


def backend_processes(ep: Endpoint) -> int:
    """server-everything processes the gateway runs."""
    n = 0
    for p in psutil.Process(ep.process.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if str(EVERYTHING_JS) in " ".join(p.cmdline()):
                n += 1
    return n


def client_sessions(ep: Endpoint) -> int:
    """Clients with an upstream session of their own on the backend, as /api/v1/backends says."""
    (b,) = [b for b in ep.backends() if b["name"] == BACKEND]
    return b["clientSessions"]


@contextlib.asynccontextmanager
async def clients(ep: Endpoint, peers: list[Peer], frontend: str = "mcp"):
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for p in peers:
            out.append(await stack.enter_async_context(
                ep.connect(frontend, sampling_callback=p.sampling, elicitation_callback=p.elicitation)))
        for c in out:
            await wait_listed(c, (ep.name(SAMPLING_TOOL), ep.name(ELICITATION_TOOL)))
        yield out


async def wait_listed(c, names: tuple[str, ...], timeout: float = 15) -> None:
    """The sampling and elicitation tools are registered once the backend knows the client can
    answer them (announced with tools/list_changed)."""
    with anyio.fail_after(timeout):
        while True:
            listed = {t.name for t in (await c.list_tools()).tools}
            if all(n in listed for n in names):
                return
            await anyio.sleep(0.1)


async def call(c, name: str, args: dict[str, Any]) -> tuple[str, bool]:
    """The call's text and whether it failed (tool error or JSON-RPC error)."""
    try:
        r = await c.call_tool(name, args)
    except MCPError as e:
        return str(e), True
    return text_of(r), bool(r.is_error)


async def run_all(ep: Endpoint, peers: list[Peer], cs: list, tool: str, rounds: int) -> list[tuple[Peer, str, bool]]:
    """Every client calls `tool` `rounds` times, all clients at once."""
    results: list[tuple[Peer, str, bool]] = []

    async def one(p: Peer, c) -> None:
        for _ in range(rounds):
            args = {"prompt": p.prompt, "maxTokens": 5} if tool == SAMPLING_TOOL else {}
            text, failed = await call(c, ep.name(tool), args)
            results.append((p, text, failed))

    async with anyio.create_task_group() as tg:
        for p, c in zip(peers, cs):
            tg.start_soon(one, p, c)
    return results


def misdeliveries(peers: list[Peer], results: list[tuple[Peer, str, bool]]) -> list[str]:
    """Every sign that one client saw another's request or answer."""
    found = []
    for p, text, _ in results:
        for other in peers:
            if other is not p and other.answer in text:
                found.append(f"client {p.index} got client {other.index}'s answer")
    for p in peers:
        for asked in p.sampled:
            if p.prompt not in asked:
                found.append(f"client {p.index}'s sampling callback was asked another's prompt: {asked!r}")
    return found


def check(peers: list[Peer], results: list[tuple[Peer, str, bool]], *, all_succeed: bool) -> int:
    """Assert no misdelivery; each call has its own answer or a clear refusal. Refusals."""
    assert not misdeliveries(peers, results), misdeliveries(peers, results)
    refused = 0
    for p, text, failed in results:
        if failed:
            assert not all_succeed, f"client {p.index}: {text}"
            assert REFUSED in text and f"backend '{BACKEND}'" in text, text
            refused += 1
        else:
            assert p.answer in text, f"client {p.index}: {text}"
    # Every answer a callback gave came back to that client's own call.
    for p in peers:
        ok = sum(1 for q, _, failed in results if q is p and not failed)
        assert len(p.sampled) + p.elicited == ok, (p.index, len(p.sampled), p.elicited, ok)
    return refused


@pytest.mark.parametrize("n", [2, 10])
@pytest.mark.parametrize("tool", [SAMPLING_TOOL, ELICITATION_TOOL])
@pytest.mark.parametrize("sessions", ["shared", "per-client"])
@pytest.mark.parametrize("transport", BACKEND_TRANSPORTS)
async def test_concurrent_clients_only_ever_answer_their_own_requests(gateway, everything, transport, sessions,
                                                                      tool, n):
    """Over streamable HTTP the backend says which request a message belongs to (its response
    stream); over stdio and legacy SSE the gateway must work it out."""
    ep = gateway_for(gateway, everything, sessions, transport=transport)
    peers = [Peer(i) for i in range(n)]
    launched = 1 if transport == "stdio" else 0
    async with clients(ep, peers) as cs:
        results = await run_all(ep, peers, cs, tool, rounds=3)
        assert client_sessions(ep) == (n if sessions == "per-client" else 0)
        if launched:  # per-client: a process each besides the shared one that lists the tools
            assert backend_processes(ep) == (n + 1 if sessions == "per-client" else 1)
    await await_until(lambda: client_sessions(ep) == 0 and backend_processes(ep) == launched, 15,
                      "the clients' own backend sessions closed")
    refused = check(peers, results, all_succeed=sessions == "per-client")
    method = "sampling/createMessage" if tool == SAMPLING_TOOL else "elicitation/create"
    counted = metric(httpx.get(ep.url("/metrics"), timeout=10).text,
                     "mcp_gateway_unattributed_messages_total", backend=BACKEND, kind="request", method=method)
    assert counted == refused, (counted, refused)


@pytest.mark.parametrize("frontend", ["mcp", "sse"])
@pytest.mark.parametrize("sessions", ["shared", "per-client"])
async def test_a_request_while_another_clients_call_is_in_flight(gateway, everything, sessions, frontend):
    """Deterministic: A's long call is in flight (its progress has arrived) when B's call makes
    the backend ask for a sample. Shared: ambiguous, refused with a clear error and counted, and
    nobody is asked. Per-client: B's own backend asks B."""
    ep = gateway_for(gateway, everything, sessions)
    a, b = Peer(0), Peer(1)
    started = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        started.set()

    async with clients(ep, [a, b], frontend) as (ca, cb):
        async with anyio.create_task_group() as tg:
            async def long_call() -> None:
                await ca.call_tool(ep.name("trigger-long-running-operation"), {"duration": 30, "steps": 30},
                                   progress_callback=on_progress)

            tg.start_soon(long_call)
            with anyio.fail_after(15):
                await started.wait()
            text, failed = await call(cb, ep.name(SAMPLING_TOOL), {"prompt": b.prompt, "maxTokens": 5})
            tg.cancel_scope.cancel()
    assert not a.sampled, "A was asked for B's sample"
    metrics = httpx.get(ep.url("/metrics"), timeout=10).text
    counted = metric(metrics, "mcp_gateway_unattributed_messages_total", backend=BACKEND, kind="request",
                     method="sampling/createMessage")
    if sessions == "shared":
        assert failed, text
        assert REFUSED in text and "2 different clients" in text and "sessions: per-client" in text, text
        assert not b.sampled
        assert counted == 1
        warned = [line for line in ep.process.log_path.read_text().splitlines()
                  if "backend request refused" in line and "sampling/createMessage" in line]
        assert len(warned) == 1 and f"backend={BACKEND}" in warned[0], warned
        assert b.prompt not in warned[0], "the warning names the method, never the payload"
    else:
        assert not failed, text
        assert b.answer in text and b.sampled == [f"Resource {SAMPLING_TOOL} context: {b.prompt}"]
        assert counted == 0


async def test_per_client_sessions_are_bounded(gateway, everything):
    """Beyond gateway.maxClientSessionsPerBackend, a new client gets a clear "busy" error; a
    client that leaves frees its place."""
    ep = gateway_for(gateway, everything, "per-client", {"maxClientSessionsPerBackend": 2})
    peers = [Peer(i) for i in range(3)]
    async with clients(ep, peers) as cs:
        first = [await call(c, ep.name("echo"), {"message": p.tag}) for p, c in zip(peers[:2], cs[:2])]
        assert all(not failed and p.tag in text for p, (text, failed) in zip(peers, first)), first
        text, failed = await call(cs[2], ep.name("echo"), {"message": "third"})
        assert failed and "maxClientSessionsPerBackend" in text and f"backend '{BACKEND}'" in text, text
        assert backend_processes(ep) == 3
    await await_until(lambda: backend_processes(ep) == 1, 15, "the clients' own backend processes reaped")
    async with clients(ep, peers[2:]) as (c,):
        text, failed = await call(c, ep.name("echo"), {"message": "again"})
        assert not failed and "again" in text, text


@pytest.mark.notifications
@pytest.mark.parametrize("sessions", ["shared", "per-client"])
async def test_log_messages_reach_only_their_client(gateway, everything, sessions):
    """A turns on server-everything's simulated logging: a log line at once (during A's call),
    then one every 5 s with no request in flight. Per-client: A's own process logs, and every
    line is A's. Shared: the backend's one session logs, and a line sent while no request is in
    flight is nobody's: dropped and counted, not broadcast. B never gets a line either way."""
    ep = gateway_for(gateway, everything, sessions)
    rec_a, rec_b = Recorder(), Recorder()
    async with ep.connect("mcp", rec_a) as ca, ep.connect("mcp", rec_b) as cb:
        toggle = ep.name("toggle-simulated-logging")
        assert text_of(await ca.call_tool(toggle, {})).startswith("Started")
        try:
            if sessions == "per-client":
                await await_until(lambda: len(rec_a.logs) >= 2, 15, "a log line sent between A's calls")
            else:
                def dropped() -> float:
                    text = httpx.get(ep.url("/metrics"), timeout=10).text
                    return metric(text, "mcp_gateway_unattributed_messages_total", backend=BACKEND,
                                  kind="notification", method="message")

                await await_until(lambda: dropped() >= 1, 15, "a log line sent with no call in flight dropped")
                assert len(rec_a.logs) <= 1, "only the line sent during A's own call reaches A"
            await cb.list_tools()  # B's session is alive and reading
        finally:
            await ca.call_tool(toggle, {})
    assert rec_b.logs == [], "B never turned logging on: not one of A's lines is B's"

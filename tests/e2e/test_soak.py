"""Fault soak (gateway only, about a minute): some 100 raw client sessions, half over
streamable HTTP (/mcp) and half over legacy SSE (/sse + /messages), call a tool on a healthy
backend (the fixture server) and one on server-everything, both over stdio, while
server-everything is SIGKILLed from outside every few seconds and the gateway restarts it.

Every request is counted by a ledger keyed by its (globally unique) JSON-RPC id, so the checks
are exact: each request gets exactly one answer, and that answer carries the request's own
message; the healthy backend never fails; the killed one either answers or fails with a
JSON-RPC "backend unavailable" error naming it, never hangs; the gateway's RSS after the soak
stays within a bound of its RSS after a warm-up that a leak of 1 KiB per request would break;
SIGTERM leaves no backend process behind.

Deselect with `-m "not soak"`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import psutil
import pytest
from conftest import Endpoint, fixture_spec, wait_until

pytestmark = [pytest.mark.gateway_only, pytest.mark.soak]

PROTOCOL = "2025-06-18"          # /mcp
LEGACY_PROTOCOL = "2024-11-05"   # /sse
ACCEPT = "application/json, text/event-stream"
FIXTURE_ID = "soak"

WORKERS_PER_FRONTEND = 25        # sessions open at once on each frontend
SESSIONS_PER_WORKER = 2          # -> 2 x 25 x 2 = 100 sessions in the soak proper
WARMUP_SECONDS = 10.0            # same load, one kill; then the RSS baseline
SOAK_SECONDS = 45.0
KILL_EVERY = 3.0                 # seconds server-everything stays up between kills
KILL_QUIET_END = 12.0            # no kill this close to the end: the last restart happens inside
MIN_KILLS = 4                    # warm-up kill included
ANSWER_DEADLINE = 20.0           # per request; an answer later than this counts as missing
RESTART_DEADLINE = 40.0          # server-everything back after a kill (restart backoff included)
# Gateway RSS may grow from after the warm-up to after the soak by at most half of what a leak of
# LEAK_PER_REQUEST per request would add, and never more than RSS_BOUND_CAP. Once warmed up the
# RSS is flat (measured: under 1 MiB over 10 to 45 thousand requests), so the soak needs at least
# MIN_SOAK_REQUESTS (a bound of 2 MiB or more) for the check to be both meaningful and stable.
LEAK_PER_REQUEST = 1024
RSS_BOUND_CAP = 4 * 1024 * 1024
MIN_SOAK_REQUESTS = 4096
OVERALL_DEADLINE = 90.0            # from the start of the test to the end of the soak and its checks


# ---------------------------------------------------------------------------------------------
# The ledger: every request sent, every message received
# ---------------------------------------------------------------------------------------------


@dataclass
class Call:
    id: int
    frontend: str            # "mcp" | "sse"
    target: str              # "init" | backend name
    message: str
    sent_at: float
    where: str = ""          # where its answer must arrive: its own POST's response, or its SSE session
    done: anyio.Event = field(default_factory=anyio.Event)
    answers: list[dict] = field(default_factory=list)
    answered_at: float | None = None
    problem: str | None = None   # HTTP status / transport trouble seen while sending or reading


class Ledger:
    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.calls: dict[int, Call] = {}
        self.strays: list[dict] = []            # answers naming an id never sent
        self.misrouted: list[tuple[str, dict]] = []   # answers that arrived elsewhere
        self.server_requests: list[dict] = []   # requests from the gateway (none expected)
        self.notifications: Counter[str] = Counter()
        self.session_problems: list[str] = []
        self.sessions: Counter[str] = Counter()

    def open(self, frontend: str, target: str, where: str | None = None) -> Call:
        rid = next(self.ids)
        call = Call(rid, frontend, target, f"{frontend[0]}{rid}", time.monotonic(), where or f"post {rid}")
        self.calls[rid] = call
        return call

    def deliver(self, msg: Any, where: str) -> None:
        for m in msg if isinstance(msg, list) else [msg]:
            if not isinstance(m, dict):
                self.strays.append({"non-object": m})
            elif "method" in m:
                if "id" in m:
                    self.server_requests.append(m)
                else:
                    self.notifications[str(m["method"])] += 1
            else:
                call = self.calls.get(m.get("id")) if isinstance(m.get("id"), int) else None
                if call is None:
                    self.strays.append(m)
                    continue
                if call.where != where:
                    self.misrouted.append((where, m))
                    continue
                call.answers.append(m)
                if call.answered_at is None:
                    call.answered_at = time.monotonic()
                call.done.set()


def expected_text(call: Call) -> str:
    return f"fixture {FIXTURE_ID}: {call.message}" if call.target == "fx" else f"Echo: {call.message}"


def result_text(answer: dict) -> str | None:
    content = (answer.get("result") or {}).get("content") or []
    texts = [c.get("text") for c in content if isinstance(c, dict) and c.get("type") == "text"]
    return "\n".join(t for t in texts if t is not None) if texts else None


def verdict(call: Call) -> str:
    """'ok', 'down' (an acceptable backend-unavailable error) or a description of what is wrong."""
    if call.problem:
        return f"problem: {call.problem}"
    if not call.answers:
        return "unanswered"
    if len(call.answers) > 1:
        return f"{len(call.answers)} answers"
    if call.answered_at - call.sent_at > ANSWER_DEADLINE:
        return f"answered after {call.answered_at - call.sent_at:.1f} s"
    (a,) = call.answers
    if call.target == "init":
        ok = isinstance(a.get("result"), dict) and a["result"].get("protocolVersion")
        return "ok" if ok else f"bad initialize answer {a}"
    if "result" in a:
        if a["result"].get("isError"):
            return f"tool error result {a['result']}"
        text = result_text(a)
        return "ok" if text == expected_text(call) else f"wrong content {text!r} (expected {expected_text(call)!r})"
    err = a.get("error")
    if not isinstance(err, dict):
        return f"neither result nor error: {a}"
    if call.target == "ev" and err.get("code") == -32000 and re.search(r"(?<![\w-])ev(?![\w-])", str(err.get("message"))):
        return "down"  # "backend unavailable", naming the backend
    return f"error {err.get('code')}: {str(err.get('message'))[:200]}"


# ---------------------------------------------------------------------------------------------
# Raw transports
# ---------------------------------------------------------------------------------------------


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    event, data = "message", []
    async for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)


def init_body(rid: int, protocol: str) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": "initialize", "params": {
        "protocolVersion": protocol, "capabilities": {},
        "clientInfo": {"name": "e2e-soak", "version": "1.0.0"}}}


def call_body(call: Call, tool: str) -> dict:
    return {"jsonrpc": "2.0", "id": call.id, "method": "tools/call",
            "params": {"name": tool, "arguments": {"message": call.message}}}


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class Soak:
    def __init__(self, ep: Endpoint, http: httpx.AsyncClient, ledger: Ledger) -> None:
        self.ep = ep
        self.http = http
        self.ledger = ledger
        self.tools = {"fx": ep.name("echo", "fx"), "ev": ep.name("echo", "ev")}

    # ---- streamable HTTP -----------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        """One client (so one small connection pool) per worker: a pool shared by a hundred
        concurrent streams spends more time scanning its connections than talking."""
        return httpx.AsyncClient(base_url=self.ep.base_url, timeout=ANSWER_DEADLINE, trust_env=False)

    async def mcp_post(self, http: httpx.AsyncClient, body: dict, sid: str | None,
                       call: Call | None) -> httpx.Response:
        """POST one message to /mcp; every JSON-RPC message in the answer (JSON or an SSE stream,
        read to its end so that a duplicate would show) goes to the ledger."""
        where = call.where if call is not None else "post (notification)"
        headers = {"Content-Type": "application/json", "Accept": ACCEPT}
        if sid:
            headers |= {"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL}
        async with http.stream("POST", "/mcp", content=json.dumps(body).encode(), headers=headers) as r:
            if r.headers.get("content-type", "").startswith("text/event-stream"):
                async for _, data in sse_events(r.aiter_lines()):
                    self.ledger.deliver(json.loads(data), where)
            else:
                raw = await r.aread()
                if raw.strip():
                    self.ledger.deliver(json.loads(raw), where)
        if call is not None and r.status_code != 200:
            call.problem = f"HTTP {r.status_code}"
        return r

    async def mcp_request(self, http: httpx.AsyncClient, body: dict, sid: str | None,
                          call: Call) -> httpx.Response | None:
        with anyio.move_on_after(ANSWER_DEADLINE):
            try:
                return await self.mcp_post(http, body, sid, call)
            except (httpx.HTTPError, httpx.StreamError, ValueError) as e:
                call.problem = f"{type(e).__name__}: {e}"
        return None

    async def mcp_session(self, http: httpx.AsyncClient, until: float) -> None:
        self.ledger.sessions["mcp"] += 1
        init = self.ledger.open("mcp", "init")
        r = await self.mcp_request(http, init_body(init.id, PROTOCOL), None, init)
        sid = r.headers.get("mcp-session-id") if r is not None else None
        if not sid:
            self.ledger.session_problems.append(f"mcp initialize {init.id}: no session ({verdict(init)})")
            return
        r = await self.mcp_post(http, INITIALIZED, sid, None)
        if r.status_code != 202:
            self.ledger.session_problems.append(f"mcp {sid}: notifications/initialized got HTTP {r.status_code}")
        while True:  # at least one round per session
            async with anyio.create_task_group() as tg:
                for backend in ("fx", "ev"):
                    call = self.ledger.open("mcp", backend)
                    tg.start_soon(self.mcp_request, http, call_body(call, self.tools[backend]), sid, call)
            if time.monotonic() >= until:
                break
        r = await http.delete("/mcp", headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL})
        if r.status_code not in (200, 202, 204):
            self.ledger.session_problems.append(f"mcp {sid}: DELETE got HTTP {r.status_code}")

    # ---- legacy SSE ----------------------------------------------------------------------

    async def sse_session(self, http: httpx.AsyncClient, until: float) -> None:
        self.ledger.sessions["sse"] += 1
        endpoint: list[str] = []
        where = f"sse session {self.ledger.sessions['sse']}"
        announced = anyio.Event()
        ended = anyio.Event()

        async def read(stream: httpx.Response) -> None:
            try:
                async for event, data in sse_events(stream.aiter_lines()):
                    if event == "endpoint":
                        endpoint.append(data if data.startswith("http") else self.ep.base_url + data)
                        announced.set()
                    else:
                        self.ledger.deliver(json.loads(data), where)
            except (httpx.HTTPError, httpx.StreamError, ValueError) as e:
                self.ledger.session_problems.append(f"sse stream {endpoint}: {type(e).__name__}: {e}")
            ended.set()

        async def send(call: Call, body: dict) -> None:
            with anyio.move_on_after(ANSWER_DEADLINE):
                try:
                    r = await http.post(endpoint[0], json=body)
                    if r.status_code != 202:
                        call.problem = f"HTTP {r.status_code}: {r.text[:200]}"
                        return
                except httpx.HTTPError as e:
                    call.problem = f"{type(e).__name__}: {e}"
                    return
                await call.done.wait()

        timeout = httpx.Timeout(ANSWER_DEADLINE, read=None)
        async with http.stream("GET", "/sse", headers={"Accept": "text/event-stream"}, timeout=timeout) as stream, \
                anyio.create_task_group() as tg:
            if stream.status_code != 200:
                self.ledger.session_problems.append(f"GET /sse: HTTP {stream.status_code}")
                return
            tg.start_soon(read, stream)
            with anyio.move_on_after(ANSWER_DEADLINE):
                await announced.wait()
            if not endpoint:
                self.ledger.session_problems.append("GET /sse: no endpoint event")
                tg.cancel_scope.cancel()
                return
            init = self.ledger.open("sse", "init", where)
            await send(init, init_body(init.id, LEGACY_PROTOCOL))
            if verdict(init) != "ok":
                self.ledger.session_problems.append(f"sse initialize {init.id}: {verdict(init)}")
                tg.cancel_scope.cancel()
                return
            r = await http.post(endpoint[0], json=INITIALIZED)
            if r.status_code != 202:
                self.ledger.session_problems.append(f"sse {endpoint[0]}: notifications/initialized got HTTP {r.status_code}")
            while not ended.is_set():  # at least one round per session
                async with anyio.create_task_group() as calls:
                    for backend in ("fx", "ev"):
                        call = self.ledger.open("sse", backend, where)
                        calls.start_soon(send, call, call_body(call, self.tools[backend]))
                if time.monotonic() >= until:
                    break
            if ended.is_set():
                self.ledger.session_problems.append(f"sse {endpoint[0]}: the stream ended while in use")
            tg.cancel_scope.cancel()

    # ---- load ----------------------------------------------------------------------------

    async def load(self, seconds: float, sessions_per_worker: int) -> None:
        """WORKERS_PER_FRONTEND workers per frontend, each running `sessions_per_worker`
        sessions back to back; the first ones end at staggered times so sessions come and go
        throughout, the last ones at the deadline."""
        start = time.monotonic()
        end = start + seconds

        async def worker(i: int, session: Callable[[httpx.AsyncClient, float], Awaitable[None]]) -> None:
            async with self.client() as http:
                for k in range(sessions_per_worker):
                    frac = (k + 0.25 + 0.5 * i / max(1, WORKERS_PER_FRONTEND - 1)) / sessions_per_worker
                    try:
                        await session(http, end if k == sessions_per_worker - 1 else start + seconds * frac)
                    except Exception as e:  # noqa: BLE001 - reported with the rest
                        self.ledger.session_problems.append(f"{session.__name__}: {type(e).__name__}: {e}")

        async with anyio.create_task_group() as tg:
            for i in range(WORKERS_PER_FRONTEND):
                tg.start_soon(worker, i, self.mcp_session)
                tg.start_soon(worker, i, self.sse_session)

    # ---- the gateway's side ----------------------------------------------------------------

    async def readyz(self) -> dict:
        r = await self.http.get("/readyz")
        return r.json()

    async def state_of(self, backend: str) -> str | None:
        return {b["name"]: b["state"] for b in (await self.readyz())["backends"]}.get(backend)


async def poll(check: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Await `check()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await anyio.sleep(interval)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for p in children:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def leaves(eg: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        out += leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def mib(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


# ---------------------------------------------------------------------------------------------


async def test_fault_soak(everything, peers, gateway):
    t_start = time.monotonic()
    ep = gateway({"mcpServers": {"fx": fixture_spec(peers, ident=FIXTURE_ID), "ev": everything.stdio_spec()}})
    gw = psutil.Process(ep.process.pid)
    marker = str(peers.everything_js)
    # every backend process ever seen, and its process group, for the orphan check
    seen: dict[tuple[int, float], psutil.Process] = {}
    pgids: dict[tuple[int, float], int] = {}

    def remember() -> list[psutil.Process]:
        procs = descendants(gw.pid)
        for p in procs:
            try:
                key = (p.pid, p.create_time())
                if key not in seen:
                    pgids[key] = os.getpgid(p.pid)
                    seen[key] = p
            except (psutil.Error, OSError):
                continue
        return procs

    def everything_procs() -> list[psutil.Process]:
        out = []
        for p in remember():
            try:
                if marker in p.cmdline():
                    out.append(p)
            except psutil.Error:
                continue
        return out

    published = {t["name"] for t in ep.api_tools()}
    assert {"fx__echo", "ev__echo"} <= published, sorted(published)

    ledger = Ledger()
    kills: list[tuple[float, int]] = []
    rss_samples: list[tuple[float, int]] = []   # (t, RSS) every 0.25 s under load
    phase_requests: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=ep.base_url, timeout=ANSWER_DEADLINE, trust_env=False) as http:
        soak = Soak(ep, http, ledger)

        async def everything_up() -> psutil.Process:
            killed = {pid for _, pid in kills}

            async def check() -> psutil.Process | None:
                if not ep.process.alive():
                    raise AssertionError(f"the gateway exited (code {ep.process.proc.returncode})")
                procs = [p for p in everything_procs() if p.pid not in killed]
                return procs[0] if len(procs) == 1 and await soak.state_of("ev") == "ready" else None

            return await poll(check, RESTART_DEADLINE, "server-everything to be restarted and ready")

        async def killer(until: float, budget: int) -> None:
            """SIGKILL server-everything KILL_EVERY seconds after each time it is back (paced)."""
            for _ in range(budget):
                proc = await everything_up()
                if time.monotonic() + KILL_EVERY > until:
                    return
                await anyio.sleep(KILL_EVERY)  # pacing, not synchronisation
                try:
                    proc.kill()  # SIGKILL
                except psutil.NoSuchProcess:
                    continue  # it went away by itself: the next round waits for its successor
                kills.append((time.monotonic() - t_start, proc.pid))

        async def monitor(stop: anyio.Event) -> None:
            while not stop.is_set():
                if not ep.process.alive():
                    raise AssertionError(f"the gateway exited (code {ep.process.proc.returncode}) during the soak")
                rss_samples.append((time.monotonic() - t_start, gw.memory_info().rss))
                with anyio.move_on_after(0.25):
                    await stop.wait()

        async def quiesce(what: str) -> int:
            """Once the clients are gone: no session left, both backends ready; then the RSS."""
            async def idle() -> bool:
                data = await soak.readyz()
                states = {b["name"]: b["state"] for b in data["backends"]}
                return data.get("sessions") == 0 and states == {"fx": "ready", "ev": "ready"}

            await poll(idle, RESTART_DEADLINE, f"no sessions and both backends ready ({what})")
            await everything_up()
            return gw.memory_info().rss

        async def phase(name: str, seconds: float, sessions_per_worker: int, kill_budget: int) -> None:
            before = len(ledger.calls)
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(monitor, stop)
                tg.start_soon(killer, time.monotonic() + seconds - (KILL_QUIET_END if kill_budget > 1 else 1.0),
                              kill_budget)
                await soak.load(seconds, sessions_per_worker)
                stop.set()
            phase_requests[name] = len(ledger.calls) - before

        failures: list[str] = []
        rss_warm = rss_end = 0
        soak_took = 0.0
        final_verdicts: Counter[str] = Counter()
        try:
            with anyio.fail_after(OVERALL_DEADLINE - (time.monotonic() - t_start)):
                await phase("warm-up", WARMUP_SECONDS, 1, kill_budget=1)
                rss_warm = await quiesce("after the warm-up")
                soak_started = time.monotonic()
                await phase("soak", SOAK_SECONDS, SESSIONS_PER_WORKER, kill_budget=100)
                soak_took = time.monotonic() - soak_started
                rss_end = await quiesce("after the soak")

                # The restarted backend serves again: one more session, both tools.
                final = Ledger()
                after = Soak(ep, http, final)
                async with after.client() as one:
                    await after.mcp_session(one, time.monotonic())  # one round
                final_verdicts = Counter(verdict(c) for c in final.calls.values())
        except* (TimeoutError, AssertionError) as eg:
            # a hang or a dead gateway: still report the ledger below, then stop the gateway
            failures += [f"{type(e).__name__}: {e}" for e in leaves(eg)]

    # ---- what happened ----------------------------------------------------------------------
    calls = list(ledger.calls.values())
    verdicts = {c.id: verdict(c) for c in calls}
    by_kind: Counter[tuple[str, str, str]] = Counter()
    for c in calls:
        v = verdicts[c.id]
        by_kind[(c.frontend, c.target, v if v in ("ok", "down") else "BAD")] += 1
    codes = Counter(str((c.answers[0].get("error") or {}).get("code")) for c in calls
                    if len(c.answers) == 1 and "error" in c.answers[0])
    latencies = sorted(c.answered_at - c.sent_at for c in calls if c.answered_at is not None)
    soak_requests = phase_requests.get("soak", 0)
    rss_bound = min(RSS_BOUND_CAP, soak_requests * LEAK_PER_REQUEST // 2)
    growth = rss_end - rss_warm
    summary = "\n".join([
        f"soak: {len(calls)} requests ({phase_requests}) in {sum(ledger.sessions.values())} sessions "
        f"{dict(ledger.sessions)}; soak phase {soak_took:.1f} s ({soak_requests / max(soak_took, 1e-9):.0f} requests/s)",
        "  " + ", ".join(f"{fe}/{target}/{v}={n}" for (fe, target, v), n in sorted(by_kind.items())),
        f"  error codes: {dict(codes)}; notifications seen: {dict(ledger.notifications)}",
        f"  {len(kills)} kills of server-everything at t={[round(t, 1) for t, _ in kills]} s since the start "
        f"(pids {[p for _, p in kills]})",
        f"  latency p50={percentile(latencies, 0.5):.3f} s p99={percentile(latencies, 0.99):.3f} s "
        f"max={percentile(latencies, 1.0):.3f} s",
        f"  gateway RSS after warm-up {mib(rss_warm)}, after soak {mib(rss_end)}: growth {mib(growth)} "
        f"(bound {mib(rss_bound)}; a 1 KiB/request leak would add {mib(soak_requests * LEAK_PER_REQUEST)}); "
        f"peak under load {mib(max((r for _, r in rss_samples), default=0))}",
        "  RSS under load (t s: MiB): " + ", ".join(f"{t:.0f}: {r / 1048576:.1f}" for t, r in rss_samples[::20]),
        f"  after the soak, one more session: {dict(final_verdicts)}",
    ])
    print(summary)

    bad = [c for c in calls if verdicts[c.id] not in ("ok", "down")]
    if bad:
        kinds = Counter(f"{c.frontend}/{c.target}: {verdicts[c.id][:160]}" for c in bad)
        first = [(c.id, c.frontend, c.target, verdicts[c.id][:120], round(c.sent_at - t_start, 2),
                  None if c.answered_at is None else round(c.answered_at - t_start, 2)) for c in bad[:15]]
        failures.append(f"{len(bad)} requests went wrong, by kind: {dict(kinds.most_common(10))}; "
                        f"first ones (id, frontend, target, verdict, sent at t, answered at t): {first}")
    if ledger.strays:
        failures.append(f"answers to ids never sent: {ledger.strays[:10]}")
    if ledger.misrouted:
        failures.append(f"answers on the wrong stream: {ledger.misrouted[:10]}")
    if ledger.server_requests:
        failures.append(f"unexpected requests from the gateway: {ledger.server_requests[:5]}")
    if ledger.session_problems:
        failures.append(f"session trouble: {ledger.session_problems[:20]}")
    if sum(ledger.sessions.values()) < 2 * WORKERS_PER_FRONTEND * SESSIONS_PER_WORKER:
        failures.append(f"only {sum(ledger.sessions.values())} sessions")
    if len(kills) < MIN_KILLS:
        failures.append(f"only {len(kills)} kills (at least {MIN_KILLS} wanted)")
    if not any(v == "down" or v.startswith("error") for c in calls if c.target == "ev" for v in [verdicts[c.id]]):
        failures.append("no call ever found the killed backend down: the kills did not bite")
    for fe in ("mcp", "sse"):
        for target in ("fx", "ev"):
            if not by_kind[(fe, target, "ok")]:
                failures.append(f"no successful {fe}/{target} call")
    if final_verdicts != {"ok": 3}:
        failures.append(f"after the soak, initialize + fx + ev on a new session: {dict(final_verdicts)}")
    if soak_requests < MIN_SOAK_REQUESTS:
        failures.append(f"only {soak_requests} requests in the soak: too few for the RSS bound to catch "
                        f"a 1 KiB/request leak (at least {MIN_SOAK_REQUESTS} wanted)")
    if rss_warm and rss_end and growth >= rss_bound:
        failures.append(f"gateway RSS grew by {mib(growth)} (bound {mib(rss_bound)})")

    # ---- SIGTERM: the gateway exits in time and takes every backend process with it --------------
    remember()
    if len(seen) < len(kills) + 2:
        failures.append(f"saw only {len(seen)} backend processes for {len(kills)} kills")
    groups = set(pgids.values()) - {os.getpgid(0)}
    problems = gateway.stop(ep)
    failures += problems

    def leftovers() -> list[str]:
        left = []
        for p in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if p.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if (p.pid, p.create_time()) in seen or os.getpgid(p.pid) in groups:
                    left.append(f"{p.pid}: {' '.join(p.info['cmdline'] or [])[:160]}")
            except (psutil.Error, OSError):
                continue
        return left

    try:
        wait_until(lambda: not leftovers(), 5, "the gateway's backends to exit")
    except TimeoutError:
        failures.append(f"processes left behind by the gateway after SIGTERM: {leftovers()}")
    took = time.monotonic() - t_start
    print(f"  stopped with SIGTERM: {'problems' if problems else 'clean'}; {len(seen)} backend processes "
          f"seen, {len(leftovers())} left; wall time {took:.1f} s")
    assert not failures, "\n".join(failures) + "\n" + summary

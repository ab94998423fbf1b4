"""Hardening (gateway only): planted secrets never reach a response, a status, a metric or a log
line; SIGTERM drains calls in flight (HTTP and stdio frontends); a backend that stops reading
its stdin is restarted after gateway.writeTimeout; the gateway's own upstream calls are
bounded by requestTimeout; a non-loopback bind without authentication is warned about; a
crash-looping backend is retried with a short, capped backoff."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import conftest
import httpx
import psutil
import pytest
from conftest import (
    GATEWAY_BIN,
    LISTENING_RE,
    RUN_TAG_VAR,
    Endpoint,
    ManagedProcess,
    fixture_spec,
    free_port,
    read_events,
    tail,
    wait_until,
)

pytestmark = pytest.mark.gateway_only

ACCEPT = "application/json, text/event-stream"
PROTOCOL = "2025-06-18"

BACKEND_UNAVAILABLE = -32000
BUSY = -32003
SHUTTING_DOWN = -32004

# The built-in test backend; the gateway resolves a bare `mcp-fixture` next to its own binary.
MCP_FIXTURE = {"command": "mcp-fixture"}


# ---------------------------------------------------------------------------------------------
# Raw streamable HTTP (async), so that many calls can be in flight at once and every byte of
# every answer can be inspected.
# ---------------------------------------------------------------------------------------------


def is_response(msg: dict) -> bool:
    return "id" in msg and ("result" in msg or "error" in msg)


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    messages: list[dict]
    text: str  # the raw body as far as it was read
    sent_at: float
    answered_at: float | None  # monotonic time of the first JSON-RPC response
    cut: str | None = None  # the stream broke (e.g. the gateway exited) before it ended

    def responses(self, rid: Any = None) -> list[dict]:
        return [m for m in self.messages if is_response(m) and (rid is None or m.get("id") == rid)]

    def error(self) -> dict:
        errs = [m["error"] for m in self.responses() if "error" in m]
        assert errs, f"no JSON-RPC error in HTTP {self.status} {self.messages or self.text!r}"
        return errs[0]


class RawSession:
    """One MCP session on /mcp."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.sid: str | None = None
        self._ids = itertools.count(1)

    def next_id(self) -> int:
        return next(self._ids)

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": ACCEPT}
        if self.sid:
            h["Mcp-Session-Id"] = self.sid
            h["MCP-Protocol-Version"] = PROTOCOL
        return h

    async def post(self, body: Any, *, to_end: bool = False) -> Reply:
        """POST `body`; collect the JSON-RPC messages of the answer (a JSON or an SSE body). An SSE
        body is read up to its first response, or (`to_end`) until the server ends it."""
        sent = time.monotonic()
        messages: list[dict] = []
        raw: list[str] = []
        answered: float | None = None
        cut: str | None = None
        async with self.http.stream("POST", "/mcp", content=json.dumps(body).encode(),
                                    headers=self._headers()) as r:
            if r.headers.get("content-type", "").startswith("text/event-stream"):
                data: list[str] = []
                try:
                    async for line in r.aiter_lines():
                        raw.append(line)
                        if line.startswith("data:"):
                            data.append(line[5:].lstrip())
                        elif line == "" and data:
                            msg = json.loads("\n".join(data))
                            data = []
                            for m in msg if isinstance(msg, list) else [msg]:
                                messages.append(m)
                                if answered is None and is_response(m):
                                    answered = time.monotonic()
                            if answered is not None and not to_end:
                                break
                except httpx.HTTPError as e:
                    cut = repr(e)
            else:
                body_bytes = await r.aread()
                text = body_bytes.decode(errors="replace")
                raw.append(text)
                if text.strip():
                    answered = time.monotonic()
                    with contextlib.suppress(ValueError):
                        msg = json.loads(text)
                        messages.extend(m for m in (msg if isinstance(msg, list) else [msg]) if isinstance(m, dict))
        return Reply(r.status_code, r.headers, messages, "\n".join(raw), sent, answered, cut)

    async def request(self, method: str, params: dict | None = None, *, to_end: bool = False) -> Reply:
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id(), "method": method}
        if params is not None:
            body["params"] = params
        return await self.post(body, to_end=to_end)

    async def initialize(self) -> Reply:
        r = await self.request("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                              "clientInfo": {"name": "e2e-hardening", "version": "1.0.0"}})
        if r.status != 200:
            return r
        self.sid = r.headers.get("mcp-session-id")
        assert self.sid, f"initialize answered without an Mcp-Session-Id: {r.headers}"
        note = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert note.status == 202, (note.status, note.text)
        return r

    async def call(self, tool: str, args: dict, *, to_end: bool = False) -> Reply:
        return await self.request("tools/call", {"name": tool, "arguments": args}, to_end=to_end)


@contextlib.asynccontextmanager
async def raw_client(ep: Endpoint, timeout: float = 90.0):
    async with httpx.AsyncClient(base_url=ep.base_url, timeout=httpx.Timeout(timeout, connect=10)) as http:
        yield http


async def apoll(pred, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `pred()` (plain or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = pred()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - keep polling, report the last one
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what} (last: {last!r})")
        await anyio.sleep(interval)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text `text`."""
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def still_running(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid}: {' '.join(p.cmdline())[:160]}")
        except psutil.Error:
            continue
    return out


def detach(gateway, ep: Endpoint) -> None:
    """Take `ep` out of the fixture's teardown: the test stops it (and checks the stop) itself."""
    if ep in gateway.started:
        gateway.started.remove(ep)


def backends_by_name(ep: Endpoint) -> dict[str, dict]:
    return {b["name"]: b for b in ep.backends()}


# ---------------------------------------------------------------------------------------------
# 1. Planted secrets never leak
# ---------------------------------------------------------------------------------------------

USERINFO = "alice:PLANTED_PW_1"
MARKER = "PLANTED"  # every planted value starts with it
# Encoded forms a library could print: the Basic credentials made from the URL's userinfo.
BASIC = base64.b64encode(USERINFO.encode()).decode().rstrip("=")


def find_leaks(surfaces: dict[str, str]) -> list[str]:
    found = []
    for where, text in surfaces.items():
        hits = [ln for ln in text.splitlines() if MARKER.lower() in ln.lower() or BASIC in ln]
        if hits:
            found.append(f"{where}: {len(hits)} line(s), e.g. {hits[0][:400]!r}")
    return found


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_planted_secrets_never_leak(gateway, tmp_path, monkeypatch, log_format: str):
    monkeypatch.setattr(conftest, "GATEWAY_LOG_LEVEL", "trace")
    closed = free_port()  # nothing listens there: both HTTP backends fail to connect
    log_dir = tmp_path / "logs"
    cfg = {
        "mcpServers": {
            "hb": {"type": "streamable-http",
                   "url": f"http://{USERINFO}@127.0.0.1:{closed}/mcp?api_key=PLANTED_Q_2",
                   "headers": {"Authorization": "Bearer PLANTED_H_3"}},
            "sb": {"type": "sse", "url": f"http://{USERINFO}@127.0.0.1:{closed}/sse?token=PLANTED_Q_4"},
            "sx": {"command": "sh",
                   "args": ["-c", 'echo "connecting with token=$SECRET_TOKEN" >&2; exit 3'],
                   "env": {"SECRET_TOKEN": "PLANTED_E_5"}},
            "fx": MCP_FIXTURE,
        }
    }
    ep = gateway(cfg, expect_down=("hb", "sb", "sx"),
                 extra_args=("--log-dir", str(log_dir), "--log-format", log_format))

    want = {
        "hb": f"http://***@127.0.0.1:{closed}/mcp?api_key=***",
        "sb": f"http://***@127.0.0.1:{closed}/sse?token=***",
        "sx": "token=***",
    }

    def failed_informatively() -> dict | None:
        bs = backends_by_name(ep)
        ok = all(want[n] in (bs[n].get("lastError") or "") for n in want)
        return bs if ok else None

    try:
        backends = wait_until(failed_informatively, 15, "lastError of hb, sb, sx with their redacted forms")
    except TimeoutError as e:
        raise AssertionError(f"{e}; backends now: {json.dumps(ep.backends(), indent=1)}") from None
    assert backends["fx"]["state"] == "ready", backends["fx"]

    surfaces: dict[str, str] = {}
    async with raw_client(ep, timeout=20) as http:
        for path in ("/readyz", "/api/v1/backends", "/api/v1/tools", "/metrics", "/healthz"):
            r = await http.get(path)
            surfaces[f"GET {path} ({r.status_code})"] = r.text
        s = RawSession(http)
        init = await s.initialize()
        surfaces["initialize"] = init.text
        listed = await s.request("tools/list", {})
        surfaces["tools/list"] = listed.text
        for backend in ("hb", "sb", "sx"):
            reply = await s.call(f"{backend}__echo", {"message": "hello"})
            surfaces[f"tools/call {backend}__echo"] = reply.text
            failed = [m for m in reply.responses() if "error" in m or (m.get("result") or {}).get("isError")]
            assert failed, f"{backend}__echo did not fail: HTTP {reply.status} {reply.text}"
        ok = await s.call("fx__echo", {"message": "still fine"})
        assert "still fine" in ok.text, ok.text
        # the metrics after the failed calls too
        surfaces["GET /metrics (after calls)"] = (await http.get("/metrics")).text

    # Everything the process wrote (stdout + stderr) and every file in --log-dir.
    surfaces["gateway stdout+stderr"] = Path(ep.process.log_path).read_text(errors="replace")
    files = sorted(p for p in log_dir.rglob("*") if p.is_file())
    assert files, f"--log-dir {log_dir} holds no log file"
    for p in files:
        surfaces[f"log file {p.name}"] = p.read_text(errors="replace")
    logged = "\n".join(surfaces[f"log file {p.name}"] for p in files)
    assert re.search(r"\bTRACE\b", logged), "the log files hold no TRACE line: --log-level trace was not in effect"
    if log_format == "json":
        bad = []
        for p in files:
            for ln in p.read_text(errors="replace").splitlines():
                if ln.strip():
                    try:
                        json.loads(ln)
                    except ValueError:
                        bad.append(ln[:200])
        assert not bad, f"{len(bad)} log line(s) are not JSON, e.g. {bad[:3]}"

    leaks = find_leaks(surfaces)
    assert not leaks, "planted secrets leaked:\n" + "\n".join(leaks)

    # The errors are still informative: the redacted forms are in /readyz and in the logs.
    readyz = json.loads(surfaces[next(k for k in surfaces if k.startswith("GET /readyz"))])
    ready_errors = {b["name"]: b.get("lastError") or "" for b in readyz["backends"]}
    for name, form in want.items():
        assert form in ready_errors[name], f"/readyz lastError of {name} lacks {form!r}: {ready_errors[name]!r}"
    for name in ("hb", "sx"):
        assert want[name] in logged, f"the log files never mention {want[name]!r} (backend {name})"
    assert want["hb"] in surfaces["gateway stdout+stderr"] or want["sb"] in surfaces["gateway stdout+stderr"], \
        "the gateway's own output never names the failing URLs in redacted form"
    call_errors = {k: json.loads(v.split("data:", 1)[-1]).get("error") if "data:" in v else v[:200]
                   for k, v in surfaces.items() if k.startswith("tools/call")}
    print(f"secrets({log_format}): {len(surfaces)} surfaces, {sum(map(len, surfaces.values()))} chars scanned; "
          f"call errors: {call_errors}")


# ---------------------------------------------------------------------------------------------
# 2. SIGTERM drains calls in flight
# ---------------------------------------------------------------------------------------------

GRACE = 3.0
SHORT = {"steps": 10, "interval_ms": 100}  # ~1 s
LONG = {"steps": 600, "interval_ms": 100}  # ~60 s


async def test_sigterm_drains_http(gateway):
    ep = gateway({"gateway": {"shutdownGrace": f"{GRACE:g}s"}, "mcpServers": {"fx": MCP_FIXTURE}})
    proc = ep.process.proc
    children = descendants(proc.pid)
    assert children, "the gateway has no backend process"

    replies: dict[int, Reply] = {}
    events: dict[str, Any] = {}
    async with raw_client(ep) as http:
        sessions = [RawSession(http) for _ in range(5)]
        for s in sessions:
            r = await s.initialize()
            assert r.status == 200, (r.status, r.text)

        async def one(i: int) -> None:
            s = sessions[i % len(sessions)]
            long = i >= 10
            replies[i] = await s.call("fx__slow", LONG if long else SHORT, to_end=long)

        async def in_flight() -> float | None:
            v = metric((await http.get("/metrics")).text, "mcp_gateway_backend_requests_in_flight", backend="fx")
            return v if v is not None and v >= 20 else None

        with anyio.fail_after(GRACE + 20):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(one, i)
                await apoll(in_flight, 10, "20 calls in flight on backend fx")
                assert not replies, f"calls answered before SIGTERM: {sorted(replies)}"
                events["term"] = time.monotonic()
                proc.send_signal(signal.SIGTERM)

                async def not_ready() -> httpx.Response | None:
                    r = await http.get("/readyz")
                    return r if r.status_code == 503 else None

                await apoll(not_ready, 1.0, "/readyz to answer 503 after SIGTERM")
                events["readyz_503"] = time.monotonic() - events["term"]
                late = RawSession(http)
                events["late_init"] = await late.initialize()
                events["late_init_at"] = time.monotonic() - events["term"]

    late: Reply = events["late_init"]
    assert late.status == 503, f"initialize during the drain: HTTP {late.status} {late.text}"
    assert late.error()["code"] in (BUSY, SHUTTING_DOWN), late.text
    assert events["late_init_at"] < GRACE, f"the refused initialize came {events['late_init_at']:.1f} s after SIGTERM"

    for i in range(10):
        r = replies[i]
        resp = r.responses()
        assert len(resp) == 1 and "result" in resp[0], f"short call {i}: HTTP {r.status} {r.text[:500]}"
        assert "completed 10 steps" in json.dumps(resp[0]["result"]), resp[0]
    long_times = []
    for i in range(10, 20):
        r = replies[i]
        resp = r.responses()
        assert len(resp) == 1, f"long call {i}: {len(resp)} responses (cut: {r.cut}): {r.text[:800]}"
        assert "error" in resp[0] and resp[0]["error"]["code"] == SHUTTING_DOWN, f"long call {i}: {resp[0]}"
        after = r.answered_at - events["term"]
        long_times.append(after)
        assert after <= GRACE + 2, f"long call {i} answered {after:.2f} s after SIGTERM (grace {GRACE} s)"

    try:
        proc.wait(timeout=max(0.1, events["term"] + GRACE + 4 - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the gateway did not exit within {GRACE + 4} s of SIGTERM:\n{ep.process.output()}")
    exited_after = time.monotonic() - events["term"]
    detach(gateway, ep)
    code, _, leftovers = ep.process.stop()
    assert not leftovers, f"processes left behind: {leftovers}"
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not still_running(children), 3, "backends gone")
    assert not still_running(children), f"backend processes outlived the gateway: {still_running(children)}"
    print(f"drain(http): readyz 503 after {events['readyz_503']:.2f} s; late initialize refused after "
          f"{events['late_init_at']:.2f} s; long calls answered {min(long_times):.2f}-{max(long_times):.2f} s "
          f"after SIGTERM; exit after {exited_after:.2f} s with code {code}")


def test_sigterm_drains_stdio(tmp_path):
    cfg_path = tmp_path / "gateway.json"
    cfg_path.write_text(json.dumps({"gateway": {"shutdownGrace": f"{GRACE:g}s"},
                                    "mcpServers": {"fx": MCP_FIXTURE}}))
    tag = uuid.uuid4().hex
    err_path = tmp_path / "stderr.log"
    err = open(err_path, "wb")
    proc = subprocess.Popen(
        [str(GATEWAY_BIN), "serve", "--config", str(cfg_path), "--transport", "stdio", "--log-level", "debug"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=tmp_path,
        env={**os.environ, RUN_TAG_VAR: tag}, start_new_session=True,
    )
    received: list[tuple[float, dict]] = []
    lock = threading.Lock()

    def reader() -> None:
        for line in proc.stdout:
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                with lock:
                    received.append((time.monotonic(), msg))

    reading = threading.Thread(target=reader, daemon=True)
    reading.start()

    def send(msg: dict) -> None:
        proc.stdin.write((json.dumps(msg) + "\n").encode())
        proc.stdin.flush()

    def answer(rid: int) -> dict | None:
        with lock:
            return next((m for _, m in received if m.get("id") == rid and is_response(m)), None)

    try:
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}})
        init = wait_until(lambda: answer(1), 15, "the answer to initialize")
        assert "result" in init, init
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        next_id = itertools.count(2)

        def slow_listed() -> bool:
            rid = next(next_id)
            send({"jsonrpc": "2.0", "id": rid, "method": "tools/list", "params": {}})
            got = wait_until(lambda: answer(rid), 10, "tools/list")
            return any(t["name"] == "fx__slow" for t in got.get("result", {}).get("tools", []))

        wait_until(slow_listed, 20, "fx__slow to be listed", interval=0.2)
        children = descendants(proc.pid)
        assert children, "the stdio gateway has no backend process"

        calls = {100: SHORT, 101: SHORT, 102: LONG, 103: LONG, 104: LONG}
        for rid, args in calls.items():
            send({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                  "params": {"name": "fx__slow", "arguments": args, "_meta": {"progressToken": f"p{rid}"}}})

        def all_running() -> bool:
            with lock:
                tokens = {m.get("params", {}).get("progressToken") for _, m in received
                          if m.get("method") == "notifications/progress"}
            return all(f"p{rid}" in tokens for rid in calls)

        wait_until(all_running, 10, "a progress notification from each of the 5 calls")
        assert not any(answer(rid) for rid in calls), "a call was answered before SIGTERM"
        term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: all(answer(rid) for rid in calls), GRACE + 3, "an answer to each of the 5 calls")
        answered = {}
        with lock:
            for t, m in received:
                if m.get("id") in calls and is_response(m):
                    answered.setdefault(m["id"], (t, m))
        for rid, args in calls.items():
            t, m = answered[rid]
            if args is SHORT:
                assert "result" in m and "completed 10 steps" in json.dumps(m["result"]), m
            else:
                assert "error" in m and m["error"]["code"] == SHUTTING_DOWN, m
                assert t - term <= GRACE + 2, f"call {rid} answered {t - term:.2f} s after SIGTERM"
        try:
            code = proc.wait(timeout=max(0.1, term + GRACE + 5 - time.monotonic()))
        except subprocess.TimeoutExpired:
            backends_left = still_running(children)
            proc.stdin.close()  # does the missing EOF hold it?
            try:
                proc.wait(timeout=3)
                after_eof = f"it exited {proc.returncode} at once when its stdin was closed"
            except subprocess.TimeoutExpired:
                after_eof = "closing its stdin did not end it either"
            pytest.fail(f"the stdio gateway did not exit within {GRACE + 5:g} s of SIGTERM (every call was "
                        f"answered by {max(t for t, _ in answered.values()) - term:.2f} s; backends still "
                        f"running: {backends_left}); {after_eof}. stderr tail:\n{tail(err_path, 12)}")
        exited_after = time.monotonic() - term
        reading.join(timeout=5)
        assert not reading.is_alive(), "the gateway's stdout stayed open after it exited"
        with lock:
            got = list(received)
        for rid in calls:
            resp = [m for _, m in got if m.get("id") == rid and is_response(m)]
            assert len(resp) == 1, f"call {rid}: {len(resp)} responses: {resp}"
        wait_until(lambda: not still_running(children), 3, "backends gone after the stdio gateway exited")
        print(f"drain(stdio): exit after {exited_after:.2f} s with code {code}")
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        err.close()
        leftovers = conftest.tagged_alive(tag)
        conftest.kill_tagged(tag)
    assert not leftovers, f"processes left behind: {leftovers}"


# ---------------------------------------------------------------------------------------------
# 3. A backend that stops reading its stdin
# ---------------------------------------------------------------------------------------------

BIG = "x" * (256 * 1024)


async def test_backend_that_stops_reading_stdin_is_restarted(peers, gateway, tmp_path):
    log = tmp_path / "events.jsonl"
    stalled = fixture_spec(peers, log, ident="staller")
    stalled["args"] = [*stalled["args"], "--stall-tool"]
    ep = gateway({"gateway": {"writeTimeout": "1s", "requestTimeout": "30s"},
                  "mcpServers": {"st": stalled, "ok": MCP_FIXTURE}})
    async with raw_client(ep, timeout=40) as http:
        s = RawSession(http)
        assert (await s.initialize()).status == 200
        r = await s.call("st__stall_stdin", {})
        assert "no longer reading stdin" in r.text, r.text
        await apoll(lambda: any(e["event"] == "stdin-stalled" for e in read_events(log)), 5,
                    "the fixture to stop reading stdin")

        big: dict[int, Reply] = {}
        healthy: list[tuple[float, Reply]] = []
        stall_started = time.monotonic()

        async def big_call(i: int) -> None:
            big[i] = await s.call("st__echo", {"message": f"{i}:{BIG}"})

        async def keep_calling_ok() -> None:
            while len(big) < 4:
                t0 = time.monotonic()
                reply = await s.call("ok__echo", {"message": "alive"})
                healthy.append((time.monotonic() - t0, reply))
                await anyio.sleep(0.1)

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(keep_calling_ok)
                for i in range(4):
                    tg.start_soon(big_call, i)

        for i, reply in sorted(big.items()):
            took = reply.answered_at - reply.sent_at if reply.answered_at else None
            assert took is not None and took <= 6, f"big call {i} took {took} s: {reply.text[:300]}"
            err = reply.error()
            assert err["code"] == BACKEND_UNAVAILABLE, f"big call {i}: {err}"
            assert re.search(r"(?<![\w-])st(?![\w-])", err["message"]), f"big call {i}: error does not name st: {err}"
        assert healthy, "no call to the healthy backend was made during the stall"
        for took, reply in healthy:
            resp = reply.responses()
            assert resp and "result" in resp[0] and "alive" in json.dumps(resp[0]["result"]), reply.text
            assert took < 2, f"a call to the healthy backend took {took:.2f} s during the stall"

        def restarted() -> dict | None:
            st = backends_by_name(ep)["st"]
            return st if st["restarts"] >= 1 and st["state"] == "ready" else None

        try:
            st = wait_until(restarted, 10, "st to be restarted and ready")
        except TimeoutError as e:
            raise AssertionError(f"{e}; st now: {backends_by_name(ep)['st']}") from None
        recovered = time.monotonic() - stall_started
        again = await s.call("st__echo", {"message": "back"})
        assert "fixture staller: back" in again.text, again.text
    spawned = [e for e in read_events(log) if e["event"] == "spawned"]
    assert len(spawned) >= 2, f"the stalled fixture was not started again: {spawned}"
    print(f"stall: errors after {[round(b.answered_at - b.sent_at, 2) for b in big.values()]} s; "
          f"{len(healthy)} healthy calls meanwhile (max {max(t for t, _ in healthy):.2f} s); "
          f"ready again {recovered:.2f} s after the stall; st: {st}")

# ---------------------------------------------------------------------------------------------
# 4. The gateway's own upstream calls are bounded
# ---------------------------------------------------------------------------------------------


async def test_unanswered_set_level_is_bounded_by_request_timeout(peers, gateway, tmp_path):
    log = tmp_path / "events.jsonl"
    mute = fixture_spec(peers, log, ident="mute")
    mute["args"] = [*mute["args"], "--ignore-set-level"]
    ep = gateway({"gateway": {"requestTimeout": "2s"}, "mcpServers": {"lg": mute}})
    async with raw_client(ep, timeout=40) as http:
        s = RawSession(http)
        assert (await s.initialize()).status == 200
        with anyio.fail_after(30):
            reply = await s.request("logging/setLevel", {"level": "debug"})
        took = reply.answered_at - reply.sent_at if reply.answered_at else None
        ignored = [e for e in read_events(log) if e["event"] == "setLevel-ignored"]
        assert ignored, f"the backend never received logging/setLevel (events: {read_events(log)})"
        assert took is not None and took <= 4.5, \
            f"logging/setLevel answered after {took} s (requestTimeout 2 s): HTTP {reply.status} {reply.text}"
        resp = reply.responses()
        assert len(resp) == 1 and resp[0]["id"] is not None, f"HTTP {reply.status} {reply.text}"
        # The backend is still usable afterwards.
        with anyio.fail_after(10):
            echo = await s.call("lg__echo", {"message": "after"})
        assert "fixture mute: after" in echo.text, echo.text
    print(f"setLevel: answered after {took:.2f} s with {resp[0]}")


async def test_replies_that_match_nothing_are_counted_and_logged(peers, gateway, tmp_path):
    ep = gateway({"gateway": {"requestTimeout": "30s"},
                  "mcpServers": {"fx": fixture_spec(peers, tmp_path / "events.jsonl")}})
    async with raw_client(ep, timeout=40) as http:
        s = RawSession(http)
        assert (await s.initialize()).status == 200
        with anyio.fail_after(10):
            answer = await s.call("fx__stray_replies", {})
        assert "sent two stray replies" in answer.text, answer.text
        # The call itself was answered once; the two strays are counted, not delivered.
        def counted() -> str | None:
            t = httpx.get(ep.url("/metrics"), timeout=10).text
            return t if metric(t, "mcp_gateway_unmatched_replies_total", backend="fx") == 2 else None

        text = wait_until(counted, 10, "two unmatched replies counted")
        assert metric(text, "mcp_gateway_unmatched_replies_total", backend="fx") == 2, text
    wait_until(lambda: "matches no request" in ep.process.output(), 10, "a warning in the log")


# ---------------------------------------------------------------------------------------------
# 5. A non-loopback bind without authentication is warned about
# ---------------------------------------------------------------------------------------------

UNAUTHENTICATED = "without authentication"


def start_plain(tmp_path: Path, host: str) -> ManagedProcess:
    work = tmp_path / host.replace(".", "_")
    work.mkdir()
    cfg = work / "gateway.json"
    cfg.write_text(json.dumps({"mcpServers": {"fx": MCP_FIXTURE}}))
    return ManagedProcess(f"gateway --host {host}",
                          [str(GATEWAY_BIN), "serve", "--config", str(cfg), "--host", host, "--port", "0",
                           "--transport", "http", "--log-level", "info"],
                          work / "gateway.log", cwd=work)


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_non_loopback_bind_warns_about_missing_authentication(tmp_path, host: str):
    mp = start_plain(tmp_path, host)
    try:
        def log_text() -> str:
            mp.ensure_alive("while starting")
            return Path(mp.log_path).read_text(errors="replace")

        base = wait_until(lambda: (m := LISTENING_RE.search(log_text())) and m.group(1), 20, "the listening line")
        port = int(base.rsplit(":", 1)[1])
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        if host == "0.0.0.0":
            text = wait_until(lambda: UNAUTHENTICATED in log_text() and log_text(), 10, "the warning")
            line = next(ln for ln in text.splitlines() if UNAUTHENTICATED in ln)
            assert "WARN" in line and "0.0.0.0" in line, line
        else:
            # Once a later line is there (the backend got ready), the warning would have come.
            text = wait_until(lambda: "backend ready" in log_text() and log_text(), 30, "`backend ready`")
            assert UNAUTHENTICATED not in text, [ln for ln in text.splitlines() if UNAUTHENTICATED in ln]
    finally:
        code, in_time, leftovers = mp.stop()
    assert in_time, f"the gateway did not exit within 10 s of SIGTERM:\n{tail(mp.log_path)}"
    assert not leftovers, leftovers


# ---------------------------------------------------------------------------------------------
# 6. A crash-looping backend is retried with a short, capped backoff
# ---------------------------------------------------------------------------------------------
# Expected: attempts at 0, +0.25, +0.5, +1, +2, +4, +8, +8 ... s (doubling from 250 ms, capped at
# 8 s), so five attempts within ~4 s of the first and the sixth ~7.75 s after it.


@pytest.fixture(scope="module")
def crash_loop(module_gateway, tmp_path_factory):
    spawns = tmp_path_factory.mktemp("crash") / "spawns.txt"
    cfg = {"mcpServers": {"cl": {"command": "sh", "args": ["-c", f"date +%s.%N >> '{spawns}'; exit 1"]}}}
    ep = module_gateway(cfg, expect_down=("cl",))
    return ep, spawns


def spawn_times(path: Path) -> list[float]:
    try:
        return [float(x) for x in path.read_text().split()]
    except (FileNotFoundError, ValueError):
        return []


def test_crash_loop_backoff_is_short_and_capped(crash_loop):
    ep, spawns = crash_loop
    times = wait_until(lambda: len(t := spawn_times(spawns)) >= 5 and t, 7, "five attempts to start cl")
    first = times[0]
    assert times[4] - first <= 6, f"five attempts took {times[4] - first:.2f} s: {times}"
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
    assert gaps[0] < 1.0, f"first retry after {gaps[0]} s (backoff should start at 250 ms): {gaps}"
    assert all(g <= 8 + 1.5 for g in gaps), f"a retry waited more than the 8 s cap: {gaps}"
    assert all(b >= a * 0.8 for a, b in zip(gaps, gaps[1:])), f"the delay did not grow: {gaps}"
    print(f"crash loop: attempts at {[round(t - first, 2) for t in times]} s; gaps {gaps}")


def test_crash_loop_restarts_are_counted(crash_loop):
    ep, spawns = crash_loop
    seen: list[tuple[float, int, str]] = []

    def counted() -> bool:
        cl = backends_by_name(ep)["cl"]
        seen.append((time.monotonic(), cl["restarts"], cl["state"]))
        return cl["restarts"] >= 5

    times = spawn_times(spawns)
    budget = max(1.0, 6.5 - (time.time() - times[0])) if times else 6.5
    try:
        wait_until(counted, budget, "restarts >= 5 on /api/v1/backends", interval=0.1)
    except TimeoutError:
        cl = backends_by_name(ep)["cl"]
        attempts = len(spawn_times(spawns))
        raise AssertionError(
            f"/api/v1/backends shows restarts={cl['restarts']} for cl after {attempts} attempts to start it "
            f"(state {cl['state']}, lastError {cl.get('lastError')!r}); restarts seen: "
            f"{sorted({r for _, r, _ in seen})}") from None

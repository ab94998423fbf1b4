"""The HTTP surface, spoken raw (gateway only): JSON-RPC error mapping on /mcp, body limit,
session handling, the legacy SSE handshake, and the health / admin endpoints."""

from __future__ import annotations

import json
import select
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import Endpoint

pytestmark = pytest.mark.gateway_only

ACCEPT = "application/json, text/event-stream"
PROTOCOL = "2025-06-18"
NINE_MIB = 9 * 1024 * 1024


@pytest.fixture(scope="module")
def gw(everything, module_gateway) -> Endpoint:
    return module_gateway({"mcpServers": {"ev": everything.stdio_spec()}}, probe={"ev": ["echo"]})


@pytest.fixture
def http(gw: Endpoint):
    with httpx.Client(base_url=gw.base_url, timeout=20) as client:
        yield client


# ---------------------------------------------------------------------------------------------
# raw streamable-HTTP helpers
# ---------------------------------------------------------------------------------------------


def post(http: httpx.Client, body: Any, session: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[httpx.Response, list[dict]]:
    """POST to /mcp; return the response and the JSON-RPC messages in it (JSON or SSE body).
    An SSE body is read up to the first response message."""
    h = {"Content-Type": "application/json", "Accept": ACCEPT}
    if session:
        h["Mcp-Session-Id"] = session
        h["MCP-Protocol-Version"] = PROTOCOL
    h.update(headers or {})
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    messages: list[dict] = []
    with http.stream("POST", "/mcp", content=content, headers=h) as r:
        ctype = r.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            data: list[str] = []
            for line in r.iter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif line == "" and data:
                    msg = json.loads("\n".join(data))
                    data = []
                    messages.extend(msg if isinstance(msg, list) else [msg])
                    if any("id" in m and ("result" in m or "error" in m) for m in messages):
                        break
        else:
            raw = r.read()
            if raw.strip():
                try:
                    msg = json.loads(raw)
                except ValueError:
                    msg = None
                if isinstance(msg, list):
                    messages.extend(msg)
                elif isinstance(msg, dict):
                    messages.append(msg)
    return r, messages


def error_of(messages: list[dict]) -> dict:
    errs = [m["error"] for m in messages if "error" in m]
    assert errs, f"no JSON-RPC error in {messages}"
    return errs[0]


def open_session(http: httpx.Client) -> str:
    r, msgs = post(http, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {},
        "clientInfo": {"name": "e2e-raw", "version": "1.0.0"}}})
    assert r.status_code == 200, (r.status_code, msgs)
    sid = r.headers.get("mcp-session-id")
    assert sid, "initialize did not return an Mcp-Session-Id header"
    assert msgs and msgs[0]["result"]["protocolVersion"], msgs
    r, _ = post(http, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session=sid)
    assert r.status_code == 202, r.status_code
    return sid


@pytest.fixture
def session(http: httpx.Client) -> str:
    sid = open_session(http)
    yield sid
    http.delete("/mcp", headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL})


# ---------------------------------------------------------------------------------------------


def test_healthz(http: httpx.Client):
    assert http.get("/healthz").status_code == 200


def test_readyz_and_backends_shape(gw: Endpoint, http: httpx.Client):
    r = http.get("/readyz")
    assert r.status_code == 200
    data = r.json()
    assert data["ready"] is True
    (b,) = data["backends"]
    assert b == {**b, "name": "ev", "transport": "stdio", "state": "ready", "lastError": None}
    (b,) = gw.backends()
    assert b["name"] == "ev" and b["transport"] == "stdio" and b["state"] == "ready"


def test_api_tools_shape(gw: Endpoint):
    tools = gw.api_tools()
    echo = [t for t in tools if t["name"] == "ev__echo"]
    assert echo == [{**echo[0], "name": "ev__echo", "backend": "ev", "upstreamName": "echo",
                     "description": "Echoes back the input string"}]
    assert all(t["name"] == f"ev__{t['upstreamName']}" and t["backend"] == "ev" for t in tools)


def test_raw_round_trip(http: httpx.Client, session: str):
    r, msgs = post(http, {"jsonrpc": "2.0", "id": "call-1", "method": "tools/call",
                          "params": {"name": "ev__echo", "arguments": {"message": "raw"}}}, session=session)
    assert r.status_code == 200
    (resp,) = [m for m in msgs if m.get("id") == "call-1"]
    assert resp["result"]["content"][0]["text"] == "Echo: raw"


@pytest.mark.parametrize("with_session", [False, True], ids=["no-session", "in-session"])
def test_malformed_json_is_400_parse_error(http: httpx.Client, session: str, with_session: bool):
    r, msgs = post(http, b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", ',
                   session=session if with_session else None)
    assert r.status_code == 400
    err = error_of(msgs)
    assert err["code"] == -32700
    assert msgs[0].get("id") is None


@pytest.mark.parametrize("body", [
    {"jsonrpc": "2.0", "id": 7},                                   # no method
    {"jsonrpc": "1.0", "id": 7, "method": "tools/list"},           # wrong version
    {"jsonrpc": "2.0", "id": {"x": 1}, "method": "tools/list"},    # id must be string/number
    {"jsonrpc": "2.0", "id": 7, "method": 42},                     # method must be a string
    "just a string",                                               # not an object
], ids=["no-method", "jsonrpc-1.0", "object-id", "numeric-method", "not-an-object"])
def test_invalid_request(http: httpx.Client, session: str, body: Any):
    r, msgs = post(http, body, session=session)
    assert r.status_code in (200, 400), r.status_code
    assert error_of(msgs)["code"] == -32600


def test_unknown_method(http: httpx.Client, session: str):
    r, msgs = post(http, {"jsonrpc": "2.0", "id": 99, "method": "e2e/no-such-method", "params": {}}, session=session)
    err = error_of(msgs)
    assert err["code"] == -32601
    assert [m["id"] for m in msgs if "error" in m] == [99]


def test_body_over_8_mib_is_413(gw: Endpoint, session: str):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "ev__echo", "arguments": {"message": "x" * NINE_MIB}}}).encode()
    status = post_large(gw.url("/mcp"), body, {"Mcp-Session-Id": session, "MCP-Protocol-Version": PROTOCOL})
    assert status == 413


def test_body_just_under_limit_is_accepted(http: httpx.Client, session: str):
    msg = "y" * (7 * 1024 * 1024)
    r, msgs = post(http, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                          "params": {"name": "ev__echo", "arguments": {"message": msg}}}, session=session)
    assert r.status_code == 200
    (resp,) = [m for m in msgs if m.get("id") == 5]
    assert resp["result"]["content"][0]["text"] == "Echo: " + msg


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_unknown_session_is_404(http: httpx.Client, method: str):
    h = {"Mcp-Session-Id": f"e2e-unknown-{uuid.uuid4()}", "MCP-Protocol-Version": PROTOCOL, "Accept": ACCEPT}
    if method == "POST":
        r = http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                      headers={**h, "Content-Type": "application/json"})
    else:
        r = http.request(method, "/mcp", headers=h)
    assert r.status_code == 404


def test_deleted_session_is_gone(http: httpx.Client):
    sid = open_session(http)
    r = http.delete("/mcp", headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL})
    assert r.status_code in (200, 202, 204)
    r, _ = post(http, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session=sid)
    assert r.status_code == 404


def test_legacy_sse_handshake(gw: Endpoint):
    """GET /sse announces the message endpoint; a POST there is answered on the stream."""
    with httpx.Client(base_url=gw.base_url, timeout=20) as http, \
            http.stream("GET", "/sse", headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = sse_events(stream.iter_lines())
        event, data = next(events)
        assert event == "endpoint"
        assert data.startswith("/messages?sessionId=") or "/messages?sessionId=" in data, data
        endpoint = data if data.startswith("http") else gw.base_url + data

        with httpx.Client(timeout=20) as poster:
            r = poster.post(endpoint, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": PROTOCOL, "capabilities": {},
                "clientInfo": {"name": "e2e-raw-sse", "version": "1.0.0"}}})
            assert r.status_code in (200, 202)
            for event, data in events:
                if event == "message":
                    msg = json.loads(data)
                    if msg.get("id") == 1:
                        assert msg["result"]["serverInfo"]["name"]
                        break


def sse_events(lines):
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def post_large(url: str, body: bytes, headers: dict[str, str], timeout: float = 30) -> int:
    """POST a large body over a raw socket with `Expect: 100-continue`, stopping the upload as
    soon as the server answers; returns the final status code."""
    u = urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
    try:
        head = [f"POST {u.path} HTTP/1.1", f"Host: {u.hostname}:{u.port}", "Content-Type: application/json",
                f"Accept: {ACCEPT}", f"Content-Length: {len(body)}", "Expect: 100-continue", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        buf = b""
        ready, _, _ = select.select([sock], [], [], 2.0)
        if ready:
            buf = sock.recv(65536)
            if buf.startswith(b"HTTP/1.1 100"):
                buf = buf.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in buf else b""
            elif buf:
                return _status(buf)
        # upload, watching for an early answer between chunks
        view = memoryview(body)
        sent = 0
        deadline = time.monotonic() + timeout
        while sent < len(body) and not buf:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:
                buf = sock.recv(65536)
                break
            if writable:
                try:
                    sent += sock.send(view[sent:sent + 256 * 1024])
                except (BrokenPipeError, ConnectionResetError):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("upload did not finish")
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        assert buf, "the server closed the connection without answering"
        return _status(buf)
    finally:
        sock.close()


def _status(buf: bytes) -> int:
    line = buf.split(b"\r\n", 1)[0].decode()
    assert line.startswith("HTTP/1."), line
    return int(line.split()[1])


def test_allowed_origin_flag(gateway, peers):
    """`--allowed-origin` adds to the Origin guard; other foreign origins stay refused."""
    from conftest import fixture_spec
    ep = gateway({"mcpServers": {"fx": fixture_spec(peers)}},
                 extra_args=("--allowed-origin", "https://app.example"))
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "t", "version": "0"}}}
    with httpx.Client(base_url=ep.base_url, timeout=20) as http:
        ok, _ = post(http, init, headers={"Origin": "https://app.example"})
        assert ok.status_code == 200
        refused, msgs = post(http, init, headers={"Origin": "https://other.example"})
        assert refused.status_code == 403
        assert "allowedOrigins" in msgs[0]["error"]["message"], msgs

"""Malformed input, spoken raw to every client-facing surface (gateway only).

A permanent corpus: each row is one malformed (or deliberately odd) input and the answer it must
get - an HTTP status and/or the JSON-RPC answers (ok(id) / err(code, id)). Three tables:

* MCP_CASES    - POST (and other verbs) on /mcp: before initialize, in a session at protocol
                 2025-11-25 and in one at 2025-03-26 (the last protocol with JSON-RPC batches);
                 headers (Host, Origin, Content-Type, session ids), sizes, raw HTTP/1.1.
* LEGACY_CASES - POST /messages?sessionId=... of the legacy SSE transport: the POST answers 202
                 when it takes a message (its answer then arrives on the GET /sse stream) and
                 4xx when it refuses one (the error is then in the POST's own body).
* STDIO_CASES  - lines fed to one long-lived `mcp-gateway serve --transport stdio` (raw bytes:
                 invalid UTF-8 and NUL included).

MESSAGES holds the rows shared by the three (invalid JSON, wrong JSON-RPC types, notifications
and responses out of place, bad params); each surface maps a row's verdict to its own answer.
After every row the gateway must still be healthy: the process alive and a ping answered in
the row's session. After the tables: connection-level abuse (slow headers, a stalled body,
idle sockets, 300 of them at once) and, on a second gateway with the default 8 MiB body limit,
documents nested 100k and 1M deep and the connection cap (maxConnections 50).

Expected answers follow the gateway's documented behaviour; where it says nothing, they follow
what the gateway does today. A row with more than one Out accepts any of them (used only
where the transport leaves a choice, such as whether /messages refuses an invalid request in
the POST's body or answers it on the stream).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import selectors
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import (
    _LIVE_LOGS,
    GATEWAY_BIN,
    GATEWAY_LOG_LEVEL,
    RUN_TAG_VAR,
    Endpoint,
    GatewayFactory,
    kill_tagged,
    tagged_alive,
    tail,
    wait_until,
    with_run_tag,
)

pytestmark = pytest.mark.gateway_only

FIXTURE_BIN = GATEWAY_BIN.parent / "mcp-fixture"

LATEST = "2025-11-25"      # batches refused
BATCHING = "2025-03-26"    # batches answered (/mcp)
LEGACY = "2024-11-05"      # batches answered (/messages)
ACCEPT = "application/json, text/event-stream"

MAX_BODY = 64 * 1024
MAX_BATCH = 32
HEADER_TIMEOUT = 3.0       # longer than IDLE_TIMEOUT, so that each of the two shows on its own
BODY_TIMEOUT = 1.0
IDLE_TIMEOUT = 1.0
MAX_CONNECTIONS = 50
IDLE_FLOOD = 300
ALLOWED_ORIGIN = "https://app.example.com"
ALLOWED_HOST = "gw.example.internal"
REQUEST_TIMEOUT = 2.0      # a call its backend never answers ends soon
ANSWER_TIMEOUT = 5.0       # the longest any single answer may take
SLACK = 2.5                # seconds a timeout may overrun before the test calls it missing


def ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


SETTINGS = {
    "requestTimeout": ms(REQUEST_TIMEOUT),
    "maxBodyBytes": "64KiB",
    "maxBatch": MAX_BATCH,
    "headerTimeout": ms(HEADER_TIMEOUT),
    "bodyTimeout": ms(BODY_TIMEOUT),
    "idleTimeout": ms(IDLE_TIMEOUT),
    "allowedOrigins": [ALLOWED_ORIGIN],
    "allowedHosts": [ALLOWED_HOST],
}


def gateway_config(settings: dict[str, Any] = SETTINGS) -> dict[str, Any]:
    return {"gateway": settings, "mcpServers": {"fx": {"command": str(FIXTURE_BIN)}}}


# =============================================================================================
# Expectations
# =============================================================================================


def ok(id_: Any) -> tuple:
    return ("ok", id_)


def err(code: int, id_: Any = None) -> tuple:
    return ("err", id_, code)


@dataclass(frozen=True)
class Out:
    """One acceptable answer. `status`: the HTTP status (or a tuple of them; None on stdio).
    `msgs`: the JSON-RPC answers as a multiset of ok(id) / err(code, id) - () means none at
    all, None leaves the body unchecked. `text` must appear in the body, `lacks` must not."""

    status: int | tuple[int, ...] | None
    msgs: tuple | None = ()
    text: str | None = None
    lacks: tuple[str, ...] = ()

    def statuses(self) -> tuple[int | None, ...]:
        return self.status if isinstance(self.status, tuple) else (self.status,)

    def __str__(self) -> str:
        parts = [] if self.status is None else ["/".join(map(str, self.statuses()))]
        if self.msgs is not None:
            parts.append(str(list(self.msgs)))
        if self.text:
            parts.append(f"mentioning {self.text!r}")
        if self.lacks:
            parts.append(f"without {list(self.lacks)}")
        return " ".join(parts)


def answers(msgs: list[Any]) -> list[tuple]:
    """The JSON-RPC answers among `msgs`, as ok()/err() tuples; the gateway's own notifications
    (a method and no id) are not answers and are left out."""
    out: list[tuple] = []
    for m in msgs:
        if isinstance(m, dict) and "method" in m and "id" not in m:
            continue
        if isinstance(m, dict) and isinstance(m.get("error"), dict):
            out.append(err(m["error"].get("code"), m.get("id")))
        elif isinstance(m, dict) and "result" in m:
            out.append(ok(m.get("id")))
        else:
            out.append(("unexpected", m if not isinstance(m, (bytes, str)) else m[:200]))
    return out


def mismatch(outs: tuple[Out, ...], status: int | None, msgs: list[Any], text: str) -> str | None:
    """None when the answer fits one of `outs`; otherwise what was wrong."""
    got = answers(msgs)
    for o in outs:
        if o.status is not None and status not in o.statuses():
            continue
        if o.msgs is not None and sorted(map(repr, got)) != sorted(map(repr, o.msgs)):
            continue
        if o.text and o.text.lower() not in text.lower():
            continue
        if any(x in text for x in o.lacks):
            continue
        return None
    want = " | ".join(map(str, outs))
    shown = "" if status is None else f"{status} "
    return f"expected {want}; got {shown}{got} body={text[:400]!r}"


# Verdicts of the shared rows, mapped to each surface's answer below.


@dataclass(frozen=True)
class V:
    kind: str
    id: Any = None
    code: int | None = None


PARSE = V("parse")                # -32700, id null
SILENT = V("silent")              # a notification or a response: no answer at all
NOTE_BAD_PARAMS = V("note-params")  # a notification with unusable params: no answer, or one null-id error


def INVALID(id_: Any = None) -> V:   # noqa: N802 - reads as a verdict
    return V("invalid", id_)


def PARAMS(id_: Any = 1) -> V:       # noqa: N802
    return V("params", id_)


def ERROR(code: int, id_: Any = 1) -> V:  # noqa: N802
    return V("error", id_, code)


def OK(id_: Any = 1) -> V:           # noqa: N802
    return V("ok", id_)


def mcp_outs(v: V) -> tuple[Out, ...]:
    """POST /mcp in a session: errors the gateway finds in the message itself may come as 200
    or 400; a request's own outcome comes as 200; notifications and responses get 202."""
    return {
        "parse": (Out(400, (err(-32700),)),),
        "invalid": (Out((200, 400), (err(-32600, v.id),)),),
        "params": (Out((200, 400), (err(-32602, v.id),)),),
        "error": (Out(200, (err(v.code, v.id),)),),
        "ok": (Out(200, (ok(v.id),)),),
        "silent": (Out(202, ()),),
        "note-params": (Out(202, ()), Out(400, (err(-32602),)), Out(400, (err(-32600),))),
    }[v.kind]


def legacy_outs(v: V) -> tuple[Out, ...]:
    """POST /messages: 202 means the answers arrive on the stream; a 4xx carries them itself.
    An invalid message may be refused either way, but answered exactly once."""
    if v.kind in ("invalid", "params"):
        code = -32600 if v.kind == "invalid" else -32602
        return (Out(400, (err(code, v.id),)), Out(202, (err(code, v.id),)))
    return {
        "parse": (Out(400, (err(-32700),)),),
        "error": (Out(202, (err(v.code, v.id),)),),
        "ok": (Out(202, (ok(v.id),)),),
        "silent": (Out(202, ()),),
        "note-params": (Out(202, ()), Out(202, (err(-32602),)), Out(202, (err(-32600),)),
                        Out(400, (err(-32602),)), Out(400, (err(-32600),))),
    }[v.kind]


def stdio_outs(v: V) -> tuple[Out, ...]:
    return {
        "parse": (Out(None, (err(-32700),)),),
        "invalid": (Out(None, (err(-32600, v.id),)),),
        "params": (Out(None, (err(-32602, v.id),)),),
        "error": (Out(None, (err(v.code, v.id),)),),
        "ok": (Out(None, (ok(v.id),)),),
        "silent": (Out(None, ()),),
        "note-params": (Out(None, ()), Out(None, (err(-32602),)), Out(None, (err(-32600),))),
    }[v.kind]


# =============================================================================================
# Message builders
# =============================================================================================

_NO = object()


def j(obj: Any) -> bytes:
    """Compact JSON, UTF-8, one line."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def rq(method: str = "ping", params: Any = _NO, id_: Any = 1, **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not _NO:
        msg["params"] = params
    msg.update(extra)
    return msg


def note(method: str, params: Any = _NO) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not _NO:
        msg["params"] = params
    return msg


ECHO = {"name": "fx__echo", "arguments": {"message": "hello"}}
GREET = {"name": "fx__greet", "arguments": {"name": "alice"}}
INIT = {"protocolVersion": LATEST, "capabilities": {}, "clientInfo": {"name": "e2e-malformed", "version": "1.0.0"}}
README = "fixture://readme"
PING = j(rq())


def padded_ping(total: int, id_: Any = 1) -> bytes:
    """A valid ping of exactly `total` bytes (the padding sits in params)."""
    base = len(j(rq(params={"pad": ""}, id_=id_)))
    body = j(rq(params={"pad": "x" * (total - base)}, id_=id_))
    assert len(body) == total
    return body


def nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_in_params(depth: int) -> bytes:
    inner = "[" * depth + "]" * depth
    return b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"deep":' + inner.encode() + b"}}"


def batch_of(n: int, first_id: int = 1) -> list[dict[str, Any]]:
    return [rq(id_=first_id + i) for i in range(n)]


# =============================================================================================
# The shared corpus: one line each, run on /mcp, on /messages and on stdio
# =============================================================================================


@dataclass(frozen=True)
class M:
    id: str
    body: bytes
    verdict: V


# A tools/call with two- and three-byte UTF-8 characters and a \u escape, cut at many places.
TRUNCATE_ME = (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fx__echo",'
               b'"arguments":{"message":"caf\xc3\xa9 \xe2\x82\xac \\u00e9"}}}')
_ESC = TRUNCATE_ME.index(b"\\u00e9")
_MULTIBYTE = TRUNCATE_ME.index(b"\xe2\x82\xac")


def _truncations() -> list[M]:
    n = len(TRUNCATE_ME)
    cuts = {
        "after-open-brace": 1, "inside-first-key": 5, "after-first-key": 10, "after-colon": 11,
        "inside-version": 14, "after-version": 17, "after-comma": 18, "inside-method": 35,
        "inside-params": 60, "inside-escape": _ESC + 4, "inside-multibyte-char": _MULTIBYTE + 1,
        "before-last-brace": n - 1, "before-last-two-braces": n - 2, "half": n // 2,
    }
    return [M(f"truncated/{name}", TRUNCATE_ME[:at], PARSE) for name, at in cuts.items()]


MESSAGES: list[M] = [
    # ---- not JSON at all ---------------------------------------------------------------------
    M("json/word", b"hello", PARSE),
    M("json/open-brace", b"{", PARSE),
    M("json/close-brace", b"}", PARSE),
    M("json/open-bracket", b"[", PARSE),
    M("json/mismatched-brackets", b"{]", PARSE),
    M("json/trailing-comma-object", b'{"jsonrpc":"2.0","id":1,"method":"ping",}', PARSE),
    M("json/trailing-comma-array", b'[{"jsonrpc":"2.0","id":1,"method":"ping"},]', PARSE),
    M("json/single-quotes", b"{'jsonrpc':'2.0','id':1,'method':'ping'}", PARSE),
    M("json/unquoted-keys", b'{jsonrpc:"2.0",id:1,method:"ping"}', PARSE),
    M("json/line-comment", b'{"jsonrpc":"2.0","id":1,"method":"ping"} // why', PARSE),
    M("json/block-comment", b'/* hi */{"jsonrpc":"2.0","id":1,"method":"ping"}', PARSE),
    M("json/nan", b'{"jsonrpc":"2.0","id":NaN,"method":"ping"}', PARSE),
    M("json/infinity", b'{"jsonrpc":"2.0","id":-Infinity,"method":"ping"}', PARSE),
    M("json/hex-number", b'{"jsonrpc":"2.0","id":0x1,"method":"ping"}', PARSE),
    M("json/leading-zero", b'{"jsonrpc":"2.0","id":01,"method":"ping"}', PARSE),
    M("json/plus-sign", b'{"jsonrpc":"2.0","id":+1,"method":"ping"}', PARSE),
    M("json/two-objects", PING + j(rq(id_=2)), PARSE),
    M("json/object-then-garbage", PING + b" x", PARSE),
    M("json/bad-escape", b'{"jsonrpc":"2.0","id":1,"method":"pi\\qng"}', PARSE),
    M("json/short-unicode-escape", b'{"jsonrpc":"2.0","id":1,"method":"\\u12"}', PARSE),
    M("json/lone-surrogate-escape", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"\\ud800"}}', PARSE),
    M("json/raw-control-char", b'{"jsonrpc":"2.0","id":1,"method":"pi\x01ng"}', PARSE),
    M("json/raw-tab-in-string", b'{"jsonrpc":"2.0","id":1,"method":"pi\tng"}', PARSE),
    M("json/nul-only", b"\x00", PARSE),
    M("json/nul-between-tokens", b'{"jsonrpc":"2.0",\x00"id":1,"method":"ping"}', PARSE),
    M("json/nul-in-string", b'{"jsonrpc":"2.0","id":1,"method":"pi\x00ng"}', PARSE),
    M("json/nul-after-message", PING + b"\x00", PARSE),
    # ---- not UTF-8 -------------------------------------------------------------------------
    M("utf8/lone-ff-fe", b"\xff\xfe", PARSE),
    M("utf8/invalid-byte-in-string", b'{"jsonrpc":"2.0","id":1,"method":"p\xffing"}', PARSE),
    M("utf8/overlong-slash", b'{"jsonrpc":"2.0","id":1,"method":"\xc0\xafping"}', PARSE),
    M("utf8/latin1-e-acute", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"caf\xe9"}}', PARSE),
    M("utf8/cut-sequence", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"\xe2\x82"}}', PARSE),
    M("utf8/encoded-surrogate", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"\xed\xa0\x80"}}', PARSE),
    M("utf8/continuation-only", b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"s":"\x80\x80"}}', PARSE),
    M("utf8/bom-prefix", b"\xef\xbb\xbf" + PING, PARSE),
    M("utf8/utf16-le", PING.decode().encode("utf-16-le"), PARSE),
    M("utf8/utf16-with-bom", PING.decode().encode("utf-16"), PARSE),
    # ---- truncated ---------------------------------------------------------------------------
    *_truncations(),
    # ---- deep nesting (all within 64 KiB) ---------------------------------------------------
    M("deep/arrays-30k", nested_arrays(30_000), PARSE),
    M("deep/objects-10k", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, PARSE),
    M("deep/unclosed-arrays-60k", b"[" * 60_000, PARSE),
    M("deep/arrays-200-in-params", nested_in_params(200), PARSE),
    M("deep/arrays-100-in-params", nested_in_params(100), OK()),
    # ---- JSON, but not a JSON-RPC object -----------------------------------------------------
    M("top/null", b"null", INVALID()),
    M("top/true", b"true", INVALID()),
    M("top/number", b"42", INVALID()),
    M("top/string", b'"ping"', INVALID()),
    M("top/empty-object", b"{}", INVALID()),
    M("top/only-jsonrpc", j({"jsonrpc": "2.0"}), INVALID()),
    M("top/id-only", j({"jsonrpc": "2.0", "id": 1}), INVALID(1)),
    # ---- "jsonrpc" ---------------------------------------------------------------------------
    M("jsonrpc/missing", j({"id": 1, "method": "ping"}), INVALID(1)),
    M("jsonrpc/1.0", j(rq(jsonrpc="1.0")), INVALID(1)),
    M("jsonrpc/number-2.0", b'{"jsonrpc":2.0,"id":1,"method":"ping"}', INVALID(1)),
    M("jsonrpc/number-2", j(rq(jsonrpc=2)), INVALID(1)),
    M("jsonrpc/string-2", j(rq(jsonrpc="2")), INVALID(1)),
    M("jsonrpc/null", j(rq(jsonrpc=None)), INVALID(1)),
    M("jsonrpc/true", j(rq(jsonrpc=True)), INVALID(1)),
    M("jsonrpc/array", j(rq(jsonrpc=["2.0"])), INVALID(1)),
    M("jsonrpc/object", j(rq(jsonrpc={"v": "2.0"})), INVALID(1)),
    M("jsonrpc/trailing-space", j(rq(jsonrpc="2.0 ")), INVALID(1)),
    # ---- "id" --------------------------------------------------------------------------------
    M("id/null", j(rq(id_=None)), INVALID()),
    M("id/null-on-tools-call", j(rq("tools/call", ECHO, id_=None)), INVALID()),
    M("id/float", j(rq(id_=1.5)), INVALID()),
    M("id/float-integral", b'{"jsonrpc":"2.0","id":1.0,"method":"ping"}', INVALID()),
    M("id/exponent", b'{"jsonrpc":"2.0","id":1e3,"method":"ping"}', INVALID()),
    M("id/true", j(rq(id_=True)), INVALID()),
    M("id/false", j(rq(id_=False)), INVALID()),
    M("id/empty-object", j(rq(id_={})), INVALID()),
    M("id/object", j(rq(id_={"a": 1})), INVALID()),
    M("id/empty-array", j(rq(id_=[])), INVALID()),
    M("id/array", j(rq(id_=[1])), INVALID()),
    M("id/beyond-u64", j(rq(id_=2**64)), INVALID()),
    M("id/negative", j(rq(id_=-1)), OK(-1)),
    M("id/zero", j(rq(id_=0)), OK(0)),
    M("id/u64-max", j(rq(id_=2**64 - 1)), OK(2**64 - 1)),
    M("id/empty-string", j(rq(id_="")), OK("")),
    M("id/long-string", j(rq(id_="i" * 2000)), OK("i" * 2000)),
    M("id/unicode-string", j(rq(id_="\u00fcn\u00efc\u00f8d\u00e9-\u2603")), OK("\u00fcn\u00efc\u00f8d\u00e9-\u2603")),
    # ---- "method" ----------------------------------------------------------------------------
    M("method/missing", j({"jsonrpc": "2.0", "id": 1, "params": {}}), INVALID(1)),
    M("method/number", j(rq(method=42)), INVALID(1)),  # type: ignore[arg-type]
    M("method/null", j(rq(method=None)), INVALID(1)),  # type: ignore[arg-type]
    M("method/true", j(rq(method=True)), INVALID(1)),  # type: ignore[arg-type]
    M("method/array", j(rq(method=["ping"])), INVALID(1)),  # type: ignore[arg-type]
    M("method/object", j(rq(method={"name": "ping"})), INVALID(1)),  # type: ignore[arg-type]
    M("method/empty", j(rq("")), ERROR(-32601)),
    M("method/upper-case", j(rq("PING")), ERROR(-32601)),
    M("method/leading-space", j(rq(" ping")), ERROR(-32601)),
    M("method/escaped-nul", j(rq("ping\u0000")), ERROR(-32601)),
    M("method/very-long", j(rq("m" * 5000)), ERROR(-32601)),
    M("method/unknown", j(rq("e2e/no-such-method", {})), ERROR(-32601)),
    M("method/rpc-discover", j(rq("rpc.discover")), ERROR(-32601)),
    M("method/trailing-slash", j(rq("tools/list/")), ERROR(-32601)),
    M("method/escaped-letters", b'{"jsonrpc":"2.0","id":1,"method":"\\u0070ing"}', OK()),
    # ---- notifications and responses out of place -----------------------------------------
    M("notify/initialized-with-id", j(rq("notifications/initialized")), ERROR(-32601)),
    M("notify/cancelled-with-id", j(rq("notifications/cancelled", {"requestId": 99})), ERROR(-32601)),
    M("notify/tools-list-without-id", j(note("tools/list")), SILENT),
    M("notify/ping-without-id", j(note("ping")), SILENT),
    M("notify/tools-call-without-id", j(note("tools/call", ECHO)), SILENT),
    M("notify/unknown", j(note("e2e/whatever", {})), SILENT),
    M("notify/cancelled-for-nothing", j(note("notifications/cancelled", {"requestId": 424242})), SILENT),
    M("notify/cancelled-object-request-id", j(note("notifications/cancelled", {"requestId": {"x": 1}})), SILENT),
    M("notify/params-string", j(note("notifications/initialized", "x")), NOTE_BAD_PARAMS),
    M("notify/params-array", j(note("notifications/cancelled", [424242])), NOTE_BAD_PARAMS),
    M("notify/meta-string", j(note("notifications/progress", {"_meta": "x", "progressToken": 1, "progress": 1})), NOTE_BAD_PARAMS),
    M("response/result-to-nothing", j({"jsonrpc": "2.0", "id": 424242, "result": {}}), SILENT),
    M("response/error-to-nothing", j({"jsonrpc": "2.0", "id": "nope", "error": {"code": -1, "message": "m"}}), SILENT),
    M("response/null-id-error", j({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "m"}}), SILENT),
    M("response/result-and-error", j({"jsonrpc": "2.0", "id": 424243, "result": {}, "error": {"code": 1, "message": "m"}}), SILENT),
    M("response/error-not-an-object", j({"jsonrpc": "2.0", "id": 424244, "error": "boom"}), SILENT),
    M("response/without-id", j({"jsonrpc": "2.0", "result": {}}), INVALID()),
    M("response/float-id", j({"jsonrpc": "2.0", "id": 1.5, "result": {}}), INVALID()),
    M("response/object-id", j({"jsonrpc": "2.0", "id": {"a": 1}, "error": {"code": 1, "message": "m"}}), INVALID()),
    # ---- "params" ----------------------------------------------------------------------------
    M("params/string-on-ping", j(rq("ping", "x")), PARAMS()),
    M("params/empty-array-on-ping", j(rq("ping", [])), PARAMS()),
    M("params/array-on-ping", j(rq("ping", [1, 2])), PARAMS()),
    M("params/number-on-ping", j(rq("ping", 7)), PARAMS()),
    M("params/true-on-ping", j(rq("ping", True)), PARAMS()),
    M("params/null-on-ping", j(rq("ping", None)), PARAMS()),
    M("params/string-on-tools-list", j(rq("tools/list", "next")), PARAMS()),
    M("params/array-on-tools-list", j(rq("tools/list", [])), PARAMS()),
    M("params/array-on-tools-call", j(rq("tools/call", ["fx__echo", {"message": "m"}])), PARAMS()),
    M("params/string-on-tools-call", j(rq("tools/call", "fx__echo")), PARAMS()),
    M("params/number-on-tools-call", j(rq("tools/call", 0)), PARAMS()),
    M("params/false-on-prompts-get", j(rq("prompts/get", False)), PARAMS()),
    M("params/array-on-resources-read", j(rq("resources/read", [])), PARAMS()),
    M("params/string-on-completion", j(rq("completion/complete", "x")), PARAMS()),
    M("params/string-on-set-level", j(rq("logging/setLevel", "debug")), PARAMS()),
    M("params/array-on-subscribe", j(rq("resources/subscribe", ["file:///x"])), PARAMS()),
    M("params/string-on-prompts-list", j(rq("prompts/list", "x")), PARAMS()),
    # ---- "params._meta" -----------------------------------------------------------------------
    M("meta/string-on-ping", j(rq("ping", {"_meta": "x"})), PARAMS()),
    M("meta/array-on-ping", j(rq("ping", {"_meta": []})), PARAMS()),
    M("meta/number-on-ping", j(rq("ping", {"_meta": 1})), PARAMS()),
    M("meta/null-on-ping", j(rq("ping", {"_meta": None})), PARAMS()),
    M("meta/true-on-ping", j(rq("ping", {"_meta": True})), PARAMS()),
    M("meta/string-on-tools-list", j(rq("tools/list", {"_meta": "x"})), PARAMS()),
    M("meta/string-on-tools-call", j(rq("tools/call", {**ECHO, "_meta": "x"})), PARAMS()),
    M("meta/array-on-tools-call", j(rq("tools/call", {**ECHO, "_meta": [{"progressToken": 1}]})), PARAMS()),
    M("meta/number-on-tools-call", j(rq("tools/call", {**ECHO, "_meta": 3.5})), PARAMS()),
    M("meta/string-on-prompts-get", j(rq("prompts/get", {**GREET, "_meta": "x"})), PARAMS()),
    M("meta/string-on-resources-read", j(rq("resources/read", {"uri": README, "_meta": "x"})), PARAMS()),
    M("meta/empty-object-on-ping", j(rq("ping", {"_meta": {}})), OK()),
    M("meta/progress-token-on-tools-list", j(rq("tools/list", {"_meta": {"progressToken": "t"}})), OK()),
    M("meta/progress-token-on-tools-call", j(rq("tools/call", {**ECHO, "_meta": {"progressToken": 7}})), OK()),
    # ---- params the method cannot use ----------------------------------------------------------
    M("tool/call-without-name", j(rq("tools/call", {"arguments": {}})), PARAMS()),
    M("tool/call-name-number", j(rq("tools/call", {"name": 42, "arguments": {}})), PARAMS()),
    M("tool/call-unknown-tool", j(rq("tools/call", {"name": "fx__no_such_tool", "arguments": {}})), PARAMS()),
    M("tool/set-level-unknown", j(rq("logging/setLevel", {"level": "loud"})), PARAMS()),
    M("tool/set-level-number", j(rq("logging/setLevel", {"level": 5})), PARAMS()),
    M("tool/read-without-uri", j(rq("resources/read", {})), PARAMS()),
    M("tool/read-unknown-uri", j(rq("resources/read", {"uri": "e2e://no/such/resource"})), ERROR(-32002)),
    M("tool/complete-without-ref", j(rq("completion/complete", {"argument": {"name": "a", "value": ""}})), PARAMS()),
    # ---- odd but valid -----------------------------------------------------------------------
    M("valid/ping", PING, OK()),
    M("valid/tools-list", j(rq("tools/list")), OK()),
    M("valid/tools-call", j(rq("tools/call", ECHO)), OK()),
    M("valid/prompts-get", j(rq("prompts/get", GREET)), OK()),
    M("valid/resources-read", j(rq("resources/read", {"uri": README})), OK()),
    M("valid/string-id", j(rq(id_="req-1")), OK("req-1")),
    M("valid/spaces-and-tabs", b' { "jsonrpc" :\t"2.0" , "id" : 1 ,\t"method" : "ping" } ', OK()),
    M("valid/unknown-member", j(rq(extra={"x": [1, 2]})), OK()),
    M("valid/duplicate-id-key", b'{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}', OK(2)),
    M("valid/empty-params", j(rq("ping", {})), OK()),
]


# =============================================================================================
# /mcp table
# =============================================================================================

OWN = "<own session>"           # the stage's session id (and its protocol version header)
NONE = "<no session>"
LEGACY_SESSION = "<a legacy SSE session's id>"


@dataclass(frozen=True)
class H:
    """One HTTP row. `stage`: "pre" (no session), LATEST or BATCHING (a session at that
    protocol). `headers` override the defaults; a None value drops one. `raw`: the request head
    sent over a plain socket, with {host} {sid} {ver} {len} {accept} filled in, then `body`."""

    id: str
    body: bytes | Callable[[], bytes] | None
    outs: tuple[Out, ...]
    stage: str = LATEST
    method: str = "POST"
    path: str = "/mcp"
    headers: dict[str, Any] = field(default_factory=dict)
    session: Any = OWN
    raw: str | None = None


def refused(status: int, text: str | None = None) -> tuple[Out, ...]:
    """An HTTP-level refusal with the gateway's JSON-RPC error body."""
    return (Out(status, (err(-32600),), text=text),)


def status_only(*statuses: int) -> tuple[Out, ...]:
    return (Out(statuses if len(statuses) > 1 else statuses[0], None),)


PARSE_400 = (Out(400, (err(-32700),)),)
TOO_LARGE = status_only(413)
NOT_ALLOWED = status_only(405)
NOT_FOUND = status_only(404)
OK_200 = (Out(200, (ok(1),)),)
BATCH_REFUSED = refused(400)
UNKNOWN_SESSION = refused(404)
ODD_SESSION = (Out((400, 404), (err(-32600),)),)

SESSION_HEAD = ("Host: {host}\r\nContent-Type: application/json\r\nAccept: {accept}\r\n"
                "Mcp-Session-Id: {sid}\r\nMCP-Protocol-Version: {ver}\r\nConnection: close\r\n")


def raw_post(extra_head: str = "", *, length: str = "{len}", line: str = "POST /mcp HTTP/1.1") -> str:
    return f"{line}\r\n{SESSION_HEAD}{extra_head}Content-Length: {length}\r\n\r\n"


def chunked(body: bytes, size: int = 4096) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


CHUNKED_HEAD = f"POST /mcp HTTP/1.1\r\n{SESSION_HEAD}Transfer-Encoding: chunked\r\n\r\n"

MCP_SPECIFIC: list[H] = [
    # ---- bodies only HTTP can carry -------------------------------------------------------------
    H("json/empty-body", b"", PARSE_400),
    H("json/whitespace-body", b" \r\n\t\n", PARSE_400),
    H("valid/pretty-printed-multiline", json.dumps(rq(), indent=2).encode(), OK_200),
    H("valid/crlf-after-message", PING + b"\r\n", OK_200),
    # ---- before initialize (no session) ----------------------------------------------------------
    H("pre/tools-list-without-session", j(rq("tools/list")), refused(400), stage="pre"),
    H("pre/notification-without-session", j(note("notifications/initialized")), refused(400), stage="pre"),
    H("pre/parse-error-without-session", b'{"jsonrpc":"2.0",', PARSE_400, stage="pre"),
    H("pre/empty-batch", b"[]", refused(400), stage="pre"),
    H("pre/batch-with-initialize", j([rq("initialize", INIT)]), refused(400), stage="pre"),
    H("pre/initialize-id-null", j(rq("initialize", INIT, id_=None)), mcp_outs(INVALID()), stage="pre"),
    H("pre/initialize-params-string", j(rq("initialize", LATEST)), mcp_outs(PARAMS()), stage="pre"),
    H("pre/initialize-params-array", j(rq("initialize", [LATEST, {}])), mcp_outs(PARAMS()), stage="pre"),
    H("pre/initialize-meta-string", j(rq("initialize", {**INIT, "_meta": "x"})), mcp_outs(PARAMS()), stage="pre"),
    H("pre/initialize-jsonrpc-1.0", j(rq("initialize", INIT, jsonrpc="1.0")), mcp_outs(INVALID(1)), stage="pre"),
    H("pre/initialize-unknown-version", j(rq("initialize", {**INIT, "protocolVersion": "1999-01-01"})),
      OK_200, stage="pre"),
    H("pre/initialize-version-number", j(rq("initialize", {**INIT, "protocolVersion": 20251125})),
      OK_200, stage="pre"),
    H("pre/server-discover", j(rq("server/discover", {})), (Out(200, (err(-32601, 1),)),), stage="pre"),
    H("pre/initialize-unsupported-version-header", j(rq("initialize", INIT)), refused(400), stage="pre",
      headers={"MCP-Protocol-Version": "1999-01-01"}),
    H("pre/body-over-limit", lambda: padded_ping(MAX_BODY + 1), TOO_LARGE, stage="pre"),
    H("pre/initialize-without-content-type", j(rq("initialize", INIT)), refused(415), stage="pre",
      headers={"Content-Type": None}),
    H("pre/initialize-foreign-origin", j(rq("initialize", INIT)), refused(403, "evil.example"), stage="pre",
      headers={"Origin": "https://evil.example"}),
    H("pre/get-without-session", None, refused(400), stage="pre", method="GET"),
    H("pre/delete-without-session", None, refused(400), stage="pre", method="DELETE"),
    # ---- session ids -----------------------------------------------------------------------------
    H("session/unknown-on-post", PING, UNKNOWN_SESSION, session=f"e2e-unknown-{uuid.UUID(int=1)}"),
    H("session/unknown-on-get", None, UNKNOWN_SESSION, method="GET", session=f"e2e-unknown-{uuid.UUID(int=2)}"),
    H("session/unknown-on-delete", None, UNKNOWN_SESSION, method="DELETE", session=f"e2e-unknown-{uuid.UUID(int=3)}"),
    H("session/bogus-characters", PING, UNKNOWN_SESSION, session="!!!*<>'\"%00"),
    H("session/overlong", PING, ODD_SESSION, session="s" * 8192),
    H("session/empty", PING, ODD_SESSION, session=""),
    H("session/non-ascii", PING, ODD_SESSION, session="s\u00e9ssion".encode("latin-1")),
    H("session/legacy-session-id-on-mcp", PING, UNKNOWN_SESSION, session=LEGACY_SESSION),
    H("session/missing-on-request", PING, refused(400), session=NONE),
    H("session/missing-on-notification", j(note("notifications/initialized")), refused(400), session=NONE),
    H("session/missing-on-get", None, refused(400), method="GET", session=NONE),
    H("session/missing-on-delete", None, refused(400), method="DELETE", session=NONE),
    H("session/unsupported-protocol-header", PING, refused(400), headers={"MCP-Protocol-Version": "1999-01-01"}),
    H("session/garbage-protocol-header", PING, refused(400), headers={"MCP-Protocol-Version": "latest please"}),
    # ---- Content-Type ----------------------------------------------------------------------------
    H("content-type/missing", PING, refused(415), headers={"Content-Type": None}),
    H("content-type/empty", PING, refused(415), headers={"Content-Type": ""}),
    H("content-type/text-plain", PING, refused(415), headers={"Content-Type": "text/plain"}),
    H("content-type/form-urlencoded", PING, refused(415), headers={"Content-Type": "application/x-www-form-urlencoded"}),
    H("content-type/multipart", PING, refused(415), headers={"Content-Type": "multipart/form-data; boundary=x"}),
    H("content-type/text-json", PING, refused(415), headers={"Content-Type": "text/json"}),
    H("content-type/json-typo", PING, refused(415), headers={"Content-Type": "application/jsn"}),
    H("content-type/json-seq", PING, refused(415), headers={"Content-Type": "application/json-seq"}),
    H("content-type/vendor-json", PING, refused(415), headers={"Content-Type": "application/vnd.api+json"}),
    H("content-type/wildcard", PING, refused(415), headers={"Content-Type": "*/*"}),
    H("content-type/event-stream", PING, refused(415), headers={"Content-Type": "text/event-stream"}),
    H("content-type/upper-case", PING, OK_200, headers={"Content-Type": "APPLICATION/JSON"}),
    H("content-type/charset", PING, OK_200, headers={"Content-Type": "application/json; charset=utf-8"}),
    H("content-type/mixed-case-charset", PING, OK_200, headers={"Content-Type": "Application/Json;Charset=UTF-8"}),
    H("content-type/space-before-parameter", PING, OK_200, headers={"Content-Type": "application/json ; charset=utf-8"}),
    # ---- Origin ----------------------------------------------------------------------------------
    H("origin/foreign", PING, refused(403, "evil.example"), headers={"Origin": "https://evil.example"}),
    H("origin/null", PING, refused(403), headers={"Origin": "null"}),
    H("origin/file", PING, refused(403), headers={"Origin": "file://"}),
    H("origin/localhost-lookalike", PING, refused(403, "localhost.evil.example"),
      headers={"Origin": "http://localhost.evil.example"}),
    H("origin/loopback-ip-lookalike", PING, refused(403), headers={"Origin": "http://127.0.0.1.evil.example"}),
    H("origin/allowed-host-other-port", PING, refused(403), headers={"Origin": ALLOWED_ORIGIN + ":8443"}),
    H("origin/allowed-host-other-scheme", PING, refused(403), headers={"Origin": ALLOWED_ORIGIN.replace("https", "http")}),
    H("origin/foreign-on-get", None, refused(403), method="GET", headers={"Origin": "https://evil.example"}),
    H("origin/foreign-on-delete", None, refused(403), method="DELETE", headers={"Origin": "https://evil.example"},
      session=f"e2e-unknown-{uuid.UUID(int=4)}"),
    H("origin/foreign-on-api", None, refused(403), method="GET", path="/api/v1/backends",
      headers={"Origin": "https://evil.example"}),
    H("origin/foreign-on-healthz", None, status_only(200), method="GET", path="/healthz",
      headers={"Origin": "https://evil.example"}),
    H("origin/foreign-on-metrics", None, status_only(200), method="GET", path="/metrics",
      headers={"Origin": "https://evil.example"}),
    H("origin/localhost", PING, OK_200, headers={"Origin": "http://localhost:5173"}),
    H("origin/loopback-ip", PING, OK_200, headers={"Origin": "http://127.0.0.1:8080"}),
    H("origin/loopback-ipv6", PING, OK_200, headers={"Origin": "http://[::1]:3000"}),
    H("origin/https-localhost", PING, OK_200, headers={"Origin": "https://localhost"}),
    H("origin/allowed", PING, OK_200, headers={"Origin": ALLOWED_ORIGIN}),
    H("origin/allowed-upper-case", PING, OK_200, headers={"Origin": ALLOWED_ORIGIN.upper()}),
    H("origin/allowed-with-trailing-slash", PING, refused(403), headers={"Origin": ALLOWED_ORIGIN + "/"}),
    H("origin/localhost-upper-case", PING, OK_200, headers={"Origin": "HTTP://LOCALHOST:5173"}),
    # ---- Host ------------------------------------------------------------------------------------
    H("host/foreign", PING, refused(403, "evil.example"), headers={"Host": "evil.example"}),
    H("host/foreign-with-port", PING, refused(403), headers={"Host": "evil.example:80"}),
    H("host/localhost-lookalike", PING, refused(403), headers={"Host": "localhost.evil.example"}),
    H("host/loopback-ip-lookalike", PING, refused(403), headers={"Host": "127.0.0.1.evil.example"}),
    H("host/foreign-on-api", None, refused(403), method="GET", path="/api/v1/tools", headers={"Host": "evil.example"}),
    H("host/foreign-on-sse", None, refused(403), method="GET", path="/sse",
      headers={"Host": "evil.example", "Accept": "text/event-stream"}),
    H("host/foreign-on-messages", PING, refused(403), path="/messages?sessionId=x", headers={"Host": "evil.example"}),
    H("host/foreign-on-healthz", None, status_only(200), method="GET", path="/healthz", headers={"Host": "evil.example"}),
    H("host/foreign-on-metrics", None, status_only(200), method="GET", path="/metrics", headers={"Host": "evil.example"}),
    H("host/foreign-on-readyz", None, (Out(200, None, lacks=("backends", "lastError")),), method="GET",
      path="/readyz", headers={"Host": "evil.example"}),
    H("host/localhost", PING, OK_200, headers={"Host": "localhost"}),
    H("host/localhost-upper-case", PING, OK_200, headers={"Host": "LOCALHOST:1"}),
    H("host/loopback-ipv6", PING, OK_200, headers={"Host": "[::1]:8900"}),
    H("host/allowed", PING, OK_200, headers={"Host": ALLOWED_HOST + ":8900"}),
    # ---- the order of the checks: Host, Origin, Content-Type, size, JSON ---------------------------
    H("order/host-before-origin", b"{", refused(403, "evil-host.example"),
      headers={"Host": "evil-host.example", "Origin": "https://evil-origin.example", "Content-Type": "text/plain"}),
    H("order/origin-before-content-type", b"{", refused(403, "evil-origin.example"),
      headers={"Origin": "https://evil-origin.example", "Content-Type": "text/plain"}),
    H("order/content-type-before-size", lambda: b"x" * (2 * MAX_BODY), refused(415),
      headers={"Content-Type": "text/plain"}),
    H("order/size-before-parse", lambda: b"x" * (2 * MAX_BODY), TOO_LARGE),
    # ---- sizes (maxBodyBytes 64 KiB) -----------------------------------------------------------------
    H("size/exactly-the-limit", lambda: padded_ping(MAX_BODY), OK_200),
    H("size/one-byte-over", lambda: padded_ping(MAX_BODY + 1), TOO_LARGE),
    H("size/100k-nested-arrays", lambda: nested_arrays(100_000), TOO_LARGE),
    H("size/one-mib", lambda: padded_ping(1 << 20), TOO_LARGE,
      raw=raw_post("Expect: 100-continue\r\n")),
    H("size/huge-declared-length", b"", TOO_LARGE, raw=raw_post("Expect: 100-continue\r\n", length="10000000000")),
    H("size/chunked-over-limit", lambda: chunked(padded_ping(2 * MAX_BODY)), TOO_LARGE, raw=CHUNKED_HEAD),
    H("size/batch-over-limit", lambda: j(batch_of(2000)), TOO_LARGE, stage=BATCHING),
    # ---- HTTP verbs and paths -------------------------------------------------------------------------
    H("verb/put-mcp", PING, NOT_ALLOWED, method="PUT"),
    H("verb/patch-mcp", PING, NOT_ALLOWED, method="PATCH"),
    H("verb/options-mcp", None, NOT_ALLOWED, method="OPTIONS"),
    H("verb/invented-method", PING, NOT_ALLOWED, method="BREW"),
    H("verb/post-sse", PING, NOT_ALLOWED, path="/sse"),
    H("verb/put-sse", PING, NOT_ALLOWED, method="PUT", path="/sse"),
    H("verb/get-messages", None, NOT_ALLOWED, method="GET", path="/messages?sessionId=x"),
    H("verb/delete-messages", None, NOT_ALLOWED, method="DELETE", path="/messages?sessionId=x"),
    H("verb/post-healthz", PING, NOT_ALLOWED, path="/healthz"),
    H("verb/get-mcp-without-event-stream", None, refused(406), method="GET", headers={"Accept": "application/json"}),
    H("path/trailing-slash", PING, NOT_FOUND, path="/mcp/"),
    H("path/upper-case", PING, NOT_FOUND, path="/MCP"),
    H("path/suffix", PING, NOT_FOUND, path="/mcp2"),
    H("path/messages-trailing-slash", PING, NOT_FOUND, path="/messages/?sessionId=x"),
    # ---- raw HTTP/1.1 ---------------------------------------------------------------------------------
    H("raw/no-host-header", PING, refused(403),
      raw="POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nAccept: {accept}\r\nMcp-Session-Id: {sid}\r\n"
          "MCP-Protocol-Version: {ver}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"),
    H("raw/http10-no-host-header", PING, refused(403),
      raw="POST /mcp HTTP/1.0\r\nContent-Type: application/json\r\nAccept: {accept}\r\nMcp-Session-Id: {sid}\r\n"
          "MCP-Protocol-Version: {ver}\r\nContent-Length: {len}\r\n\r\n"),
    H("raw/chunked-valid", lambda: chunked(PING, 7), OK_200, raw=CHUNKED_HEAD),
    H("raw/content-length-short", PING, PARSE_400, raw=raw_post(length="10")),
    H("raw/expect-continue-small-body", PING, OK_200, raw=raw_post("Expect: 100-continue\r\n")),
    # Both framings at once (a smuggling vector): refused, or framed by Transfer-Encoding alone.
    H("raw/content-length-and-chunked", lambda: chunked(PING), (Out(400, None), *OK_200),
      raw=raw_post("Transfer-Encoding: chunked\r\n", length="5")),
    H("raw/content-length-not-a-number", PING, status_only(400), raw=raw_post(length="ten")),
    H("raw/content-length-negative", PING, status_only(400), raw=raw_post(length="-1")),
    H("raw/content-length-twice-differing", PING, status_only(400),
      raw=raw_post("Content-Length: 3\r\n")),
    H("raw/chunk-size-not-hex", b"zz\r\n" + PING + b"\r\n0\r\n\r\n", status_only(400), raw=CHUNKED_HEAD),
    H("raw/garbage-request-line", b"", status_only(400), raw="HELLO THERE\r\n\r\n"),
    H("raw/header-without-colon", PING, status_only(400), raw=raw_post("NoColonHere\r\n")),
    H("raw/nul-in-header-value", PING, status_only(400), raw=raw_post("X-Evil: a\x00b\r\n")),
    H("raw/obsolete-line-folding", PING, status_only(400), raw=raw_post("X-Folded: a\r\n b\r\n")),
    H("raw/one-mib-header", PING, status_only(431), raw=raw_post("X-Big: " + "h" * (1 << 20) + "\r\n")),
    H("raw/two-hundred-headers", PING, status_only(431),
      raw=raw_post("".join(f"X-H{i}: v\r\n" for i in range(200)))),
    H("raw/100k-uri", PING, status_only(414), raw=raw_post(line="POST /mcp?" + "q" * 100_000 + " HTTP/1.1")),
    H("raw/lower-case-method", PING, NOT_ALLOWED, raw=raw_post(line="post /mcp HTTP/1.1")),
    # ---- batches on 2025-11-25: refused whole ------------------------------------------------------
    H("batch/latest-one", j([rq()]), BATCH_REFUSED),
    H("batch/latest-two", j(batch_of(2)), BATCH_REFUSED),
    H("batch/latest-mixed", j([rq(), note("notifications/initialized"), rq("tools/list", id_=2)]), BATCH_REFUSED),
    H("batch/latest-notifications-only", j([note("notifications/initialized")]), BATCH_REFUSED),
    H("batch/latest-responses-only", j([{"jsonrpc": "2.0", "id": 77, "result": {}}]), BATCH_REFUSED),
    H("batch/latest-empty", b"[]", BATCH_REFUSED),
    H("batch/latest-nested", j([[rq()]]), BATCH_REFUSED),
    H("batch/latest-over-max", j(batch_of(MAX_BATCH + 1)), BATCH_REFUSED),
    # The session's negotiated version decides, not the header.
    H("batch/latest-session-with-0326-header", j(batch_of(2)), BATCH_REFUSED,
      headers={"MCP-Protocol-Version": BATCHING}),
    # ---- batches on 2025-03-26: answered ------------------------------------------------------------
    H("batch/0326-one", j([rq()]), (Out(200, (ok(1),)),), stage=BATCHING),
    H("batch/0326-two", j(batch_of(2)), (Out(200, (ok(1), ok(2))),), stage=BATCHING),
    H("batch/0326-mixed", j([rq(), note("notifications/initialized"), rq("tools/list", id_=2)]),
      (Out(200, (ok(1), ok(2))),), stage=BATCHING),
    H("batch/0326-with-tools-call", j([rq("tools/call", ECHO), rq(id_=2)]), (Out(200, (ok(1), ok(2))),), stage=BATCHING),
    H("batch/0326-notifications-only", j([note("notifications/initialized"), note("e2e/whatever")]),
      (Out(202, ()),), stage=BATCHING),
    H("batch/0326-responses-only", j([{"jsonrpc": "2.0", "id": 77, "result": {}}]), (Out(202, ()),), stage=BATCHING),
    H("batch/0326-invalid-element", j([rq(), 42]), (Out(200, (ok(1), err(-32600))),), stage=BATCHING),
    H("batch/0326-all-invalid", j([1, 2, 3]), (Out(200, (err(-32600), err(-32600), err(-32600))),), stage=BATCHING),
    H("batch/0326-unknown-method-element", j([rq(), rq("e2e/nope", id_=2)]),
      (Out(200, (ok(1), err(-32601, 2))),), stage=BATCHING),
    H("batch/0326-id-null-element", j([rq(id_=None), rq(id_=2)]), (Out(200, (err(-32600), ok(2))),), stage=BATCHING),
    H("batch/0326-params-element", j([rq("ping", "x"), rq(id_=2)]), (Out(200, (err(-32602, 1), ok(2))),),
      stage=BATCHING),
    H("batch/0326-meta-element", j([rq("ping", {"_meta": 5}), rq(id_=2)]), (Out(200, (err(-32602, 1), ok(2))),),
      stage=BATCHING),
    H("batch/0326-nested", j([[rq()]]), (Out(200, (err(-32600),)),), stage=BATCHING),
    H("batch/0326-deeply-nested", j([[[[[]]]]]), (Out(200, (err(-32600),)),), stage=BATCHING),
    H("batch/0326-duplicate-ids", j([rq(), rq()]), (Out(200, (ok(1), ok(1))),), stage=BATCHING),
    H("batch/0326-empty", b"[]", BATCH_REFUSED, stage=BATCHING),
    H("batch/0326-exactly-max", j(batch_of(MAX_BATCH)), (Out(200, tuple(ok(i + 1) for i in range(MAX_BATCH))),),
      stage=BATCHING),
    H("batch/0326-one-over-max", j(batch_of(MAX_BATCH + 1)), BATCH_REFUSED, stage=BATCHING),
    H("batch/0326-thousand", j(batch_of(1000)), BATCH_REFUSED, stage=BATCHING),
    H("batch/0326-parse-error", b'[{"jsonrpc":"2.0","id":1,"method":"ping"},', PARSE_400, stage=BATCHING),
]

MCP_CASES: list[H] = [H(m.id, m.body, mcp_outs(m.verdict)) for m in MESSAGES] + MCP_SPECIFIC


# =============================================================================================
# /messages table
# =============================================================================================


@dataclass(frozen=True)
class L:
    """One legacy-SSE row: a POST to `path` ({sid}: the session's id) in a legacy session
    that negotiated `stage`."""

    id: str
    body: bytes | Callable[[], bytes] | None
    outs: tuple[Out, ...]
    stage: str = LATEST
    method: str = "POST"
    path: str = "/messages?sessionId={sid}"
    headers: dict[str, Any] = field(default_factory=dict)


LEGACY_SPECIFIC: list[L] = [
    L("json/empty-body", b"", PARSE_400),
    L("json/whitespace-body", b" \r\n\t\n", PARSE_400),
    L("valid/pretty-printed-multiline", json.dumps(rq(), indent=2).encode(), (Out(202, (ok(1),)),)),
    L("session/query-missing", PING, refused(400), path="/messages"),
    L("session/query-empty", PING, ODD_SESSION, path="/messages?sessionId="),
    L("session/unknown", PING, UNKNOWN_SESSION, path=f"/messages?sessionId={uuid.UUID(int=5)}"),
    L("session/overlong", PING, ODD_SESSION, path="/messages?sessionId=" + "s" * 4096),
    L("session/mcp-session-id", PING, UNKNOWN_SESSION, path="/messages?sessionId={mcp_sid}"),
    L("session/snake-case-query", PING, (Out(202, (ok(1),)),), path="/messages?session_id={sid}"),
    L("session/query-twice", PING, (Out(202, (ok(1),)), Out(400, None)),
      path="/messages?sessionId={sid}&sessionId=other"),
    L("content-type/missing", PING, refused(415), headers={"Content-Type": None}),
    L("content-type/text-plain", PING, refused(415), headers={"Content-Type": "text/plain"}),
    L("content-type/form-urlencoded", PING, refused(415), headers={"Content-Type": "application/x-www-form-urlencoded"}),
    L("content-type/charset", PING, (Out(202, (ok(1),)),), headers={"Content-Type": "application/json;charset=UTF-8"}),
    L("origin/foreign", PING, refused(403, "evil.example"), headers={"Origin": "https://evil.example"}),
    L("origin/null", PING, refused(403), headers={"Origin": "null"}),
    L("origin/foreign-on-sse-stream", None, refused(403), method="GET", path="/sse",
      headers={"Origin": "https://evil.example", "Accept": "text/event-stream"}),
    L("origin/localhost", PING, (Out(202, (ok(1),)),), headers={"Origin": "http://localhost:6274"}),
    L("origin/allowed", PING, (Out(202, (ok(1),)),), headers={"Origin": ALLOWED_ORIGIN}),
    L("host/foreign", PING, refused(403, "evil.example"), headers={"Host": "evil.example"}),
    L("order/content-type-before-size", lambda: b"x" * (2 * MAX_BODY), refused(415), headers={"Content-Type": "text/plain"}),
    L("size/exactly-the-limit", lambda: padded_ping(MAX_BODY), (Out(202, (ok(1),)),)),
    L("size/one-byte-over", lambda: padded_ping(MAX_BODY + 1), TOO_LARGE),
    L("size/100k-nested-arrays", lambda: nested_arrays(100_000), TOO_LARGE),
    L("verb/get-messages", None, NOT_ALLOWED, method="GET"),
    L("verb/put-messages", PING, NOT_ALLOWED, method="PUT"),
    L("batch/latest-empty", b"[]", BATCH_REFUSED),
    L("batch/latest-one", j([rq()]), BATCH_REFUSED),
    L("batch/latest-mixed", j([rq(), note("notifications/initialized")]), BATCH_REFUSED),
    L("batch/latest-nested", j([[rq()]]), BATCH_REFUSED),
    L("batch/legacy-two", j(batch_of(2)), (Out(202, (ok(1), ok(2))),), stage=LEGACY),
    L("batch/legacy-mixed", j([rq(), note("notifications/initialized"), rq("e2e/nope", id_=2)]),
      (Out(202, (ok(1), err(-32601, 2))),), stage=LEGACY),
    L("batch/legacy-notifications-only", j([note("notifications/initialized")]), (Out(202, ()),), stage=LEGACY),
    L("batch/legacy-invalid-element", j([rq(), "x"]), (Out(202, (ok(1), err(-32600))),), stage=LEGACY),
    L("batch/legacy-nested", j([[rq()]]), (Out(202, (err(-32600),)),), stage=LEGACY),
    L("batch/legacy-empty", b"[]", BATCH_REFUSED, stage=LEGACY),
    L("batch/legacy-one-over-max", j(batch_of(MAX_BATCH + 1)), BATCH_REFUSED, stage=LEGACY),
    L("batch/legacy-exactly-max", j(batch_of(MAX_BATCH)), (Out(202, tuple(ok(i + 1) for i in range(MAX_BATCH))),),
      stage=LEGACY),
]

LEGACY_CASES: list[L] = [L(m.id, m.body, legacy_outs(m.verdict)) for m in MESSAGES] + LEGACY_SPECIFIC


# =============================================================================================
# stdio table
# =============================================================================================


@dataclass(frozen=True)
class S:
    """One stdio row: `line` is written followed by a newline (a list: written piece by piece,
    paced); a callable builds it on demand."""

    id: str
    line: bytes | list[bytes] | Callable[[], bytes]
    outs: tuple[Out, ...]


def stdio_only(*msgs: tuple) -> tuple[Out, ...]:
    return (Out(None, msgs),)


STDIO_SPECIFIC: list[S] = [
    S("line/empty", b"", stdio_only()),
    S("line/spaces-and-tabs", b"  \t ", stdio_only()),
    S("line/carriage-return-only", b"\r", stdio_only()),
    S("line/crlf-ending", PING + b"\r", stdio_only(ok(1))),
    S("line/written-in-pieces", [b'{"jsonrpc":"2.0",', b'"id":1,', b'"method":"ping"}'], stdio_only(ok(1))),
    S("line/many-messages-at-once", lambda: b"\n".join(j(rq(id_=f"burst-{i}")) for i in range(100)),
      stdio_only(*(ok(f"burst-{i}") for i in range(100)))),
    S("line/exactly-the-limit", lambda: padded_ping(MAX_BODY), stdio_only(ok(1))),
    S("line/one-byte-over", lambda: padded_ping(MAX_BODY + 1), stdio_only(err(-32600))),
    S("line/one-mib-of-x", lambda: b"x" * (1 << 20), stdio_only(err(-32600))),
    S("line/100k-nested-arrays", lambda: nested_arrays(100_000), stdio_only(err(-32600))),
    S("line/invalid-utf8-then-valid-line", b"\xc3\x28\n" + PING, stdio_only(err(-32700), ok(1))),
    S("line/over-limit-then-valid-line", lambda: b"x" * (MAX_BODY + 10) + b"\n" + PING,
      stdio_only(err(-32600), ok(1))),
    S("line/over-limit-in-pieces", [b"[" * 40_000, b"]" * 40_000], stdio_only(err(-32600))),
    S("batch/empty", b"[]", stdio_only(err(-32600))),
    S("batch/empty-with-spaces", b"[ ]", stdio_only(err(-32600))),
    S("batch/nested", j([[rq()]]), stdio_only(err(-32600))),
    # Batches on a 2025-11-25 session: refused whole, or (if stdio answers them) answered per element.
    S("batch/one", j([rq()]), (Out(None, (err(-32600),)), Out(None, (ok(1),)))),
    S("batch/over-max", lambda: j(batch_of(MAX_BATCH + 1)), stdio_only(err(-32600))),
]

STDIO_CASES: list[S] = [S(m.id, m.body, stdio_outs(m.verdict)) for m in MESSAGES] + STDIO_SPECIFIC


def _unique(ids: list[str], table: str) -> None:
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"{table}: duplicate case ids {sorted(dupes)}"


_unique([c.id for c in MCP_CASES], "MCP_CASES")
_unique([c.id for c in LEGACY_CASES], "LEGACY_CASES")
_unique([c.id for c in STDIO_CASES], "STDIO_CASES")


# =============================================================================================
# Wire helpers
# =============================================================================================


@dataclass
class Reply:
    status: int | None
    headers: dict[str, str]
    msgs: list[Any]
    text: str


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
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


def json_messages(raw: bytes) -> list[Any]:
    if not raw.strip():
        return []
    try:
        msg = json.loads(raw)
    except ValueError:
        return []
    return msg if isinstance(msg, list) else [msg]


def exchange(http: httpx.Client, method: str, path: str, headers: dict[str, Any],
             content: bytes | None) -> Reply:
    """One HTTP request; the JSON-RPC messages of its answer (a JSON body, or an SSE body read
    up to the first response)."""
    with http.stream(method, path, headers=headers, content=content) as r:
        ctype = r.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            if method == "GET":  # a stream was opened: its status is the answer
                return Reply(r.status_code, dict(r.headers), [], "<event stream>")
            msgs: list[Any] = []
            texts: list[str] = []
            for _event, data in sse_events(r.iter_lines()):
                texts.append(data)
                try:
                    msg = json.loads(data)
                except ValueError:
                    msgs.append(("unparseable event", data))
                    continue
                msgs.extend(msg if isinstance(msg, list) else [msg])
                if any(isinstance(m, dict) and "id" in m and ("result" in m or "error" in m) for m in msgs):
                    break
            return Reply(r.status_code, dict(r.headers), msgs, "\n".join(texts))
        raw = r.read()
    return Reply(r.status_code, dict(r.headers), json_messages(raw), raw.decode(errors="replace"))


def _recv(sock: socket.socket) -> bytes | None:
    """Up to 64 KiB; b"" once the peer has closed (or reset) the connection; None on a timeout."""
    try:
        return sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return b""
    except TimeoutError:
        return None


def dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2:]
    return out


def read_response(sock: socket.socket, buf: bytes, deadline: float) -> Reply:
    """Read one HTTP/1.1 response (the connection may close at any point)."""
    closed = False
    while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = _recv(sock)
        if not chunk:
            closed = chunk == b""
            break
        buf += chunk
    if not buf:
        return Reply(None, {}, [], "<connection closed without an answer>" if closed else
                     "<no answer, connection still open>")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    if not status_line.startswith("HTTP/1."):
        return Reply(None, {}, [], f"<not an HTTP response: {buf[:200]!r}>")
    status = int(status_line.split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()

    def complete() -> bool:
        if "content-length" in headers:
            return len(body) >= int(headers["content-length"])
        if "chunked" in headers.get("transfer-encoding", ""):
            return body.endswith(b"0\r\n\r\n")
        return False

    while not complete() and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = _recv(sock)
        if not chunk:
            break
        body += chunk
    if "chunked" in headers.get("transfer-encoding", ""):
        body = dechunk(body)
    return Reply(status, headers, json_messages(body), body.decode(errors="replace"))


def _upload(sock: socket.socket, data: bytes, deadline: float) -> bytes:
    """Send `data`, stopping as soon as the server says something; return what it said."""
    view, sent = memoryview(data), 0
    while sent < len(data) and time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock], [], 1.0)
        if readable:
            return _recv(sock) or b""
        if writable:
            try:
                sent += sock.send(view[sent:sent + 65536])
            except OSError:
                return b""
    return b""


def raw_exchange(port: int, head: bytes, body: bytes = b"", timeout: float = ANSWER_TIMEOUT) -> Reply:
    """Send `head` then `body` over a fresh socket, stopping the upload as soon as the server
    answers (with `Expect: 100-continue`, waiting up to a second for an early answer first)."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        buf = _upload(sock, head, deadline)
        if not buf and b"expect: 100-continue" in head.lower():
            readable, _, _ = select.select([sock], [], [], 1.0)
            if readable:
                buf = _recv(sock) or b""
        if buf.startswith(b"HTTP/1.1 100"):  # go on: drop the interim answer
            buf = buf.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in buf else b""
        if not buf:
            buf = _upload(sock, body, deadline)
        return read_response(sock, buf, deadline)
    finally:
        sock.close()


class Inbox:
    """JSON-RPC messages arriving on a stream (an SSE stream, a stdout pipe), in order."""

    CLOSED = "<closed>"

    def __init__(self, what: str) -> None:
        self.what = what
        self.q: queue.Queue[Any] = queue.Queue()
        self.closed = False

    def put(self, msg: Any) -> None:
        if isinstance(msg, list):
            for m in msg:
                self.q.put(m)
        else:
            self.q.put(msg)

    def close(self, why: str) -> None:
        self.closed = True
        self.q.put((self.CLOSED, why))

    def _get(self, timeout: float) -> Any:
        msg = self.q.get(timeout=max(0.0, timeout))
        if isinstance(msg, tuple) and msg and msg[0] == self.CLOSED:
            self.q.put(msg)  # stays closed
            raise AssertionError(f"{self.what} closed: {msg[1]}")
        return msg

    @staticmethod
    def is_answer(msg: Any) -> bool:
        return not (isinstance(msg, dict) and "method" in msg and "id" not in msg)

    def drain(self) -> list[Any]:
        """What has arrived and not been taken yet (answers only)."""
        out = []
        while True:
            try:
                msg = self._get(0)
            except queue.Empty:
                return out
            if self.is_answer(msg):
                out.append(msg)

    def take(self, n: int, timeout: float = ANSWER_TIMEOUT) -> list[Any]:
        """Up to `n` answers, waiting at most `timeout` seconds for them."""
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                msg = self._get(deadline - time.monotonic())
            except queue.Empty:
                break
            if self.is_answer(msg):
                out.append(msg)
        return out

    def until(self, id_: Any, timeout: float = ANSWER_TIMEOUT) -> list[Any]:
        """The answers that arrive before the answer to `id_` (which is consumed)."""
        before: list[Any] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._get(deadline - time.monotonic())
            except queue.Empty:
                raise AssertionError(f"no answer to {id_!r} on {self.what} within {timeout:.0f} s "
                                     f"(other answers meanwhile: {answers(before)})") from None
            if not self.is_answer(msg):
                continue
            if isinstance(msg, dict) and msg.get("id") == id_ and ("result" in msg or "error" in msg):
                if "result" not in msg:
                    raise AssertionError(f"the health ping {id_!r} failed on {self.what}: {msg}")
                return before
            before.append(msg)


# =============================================================================================
# The HTTP gateway (one per module), its /mcp sessions and its legacy SSE sessions
# =============================================================================================


class LegacySession:
    """GET /sse read by a thread into an Inbox; POSTs go to the announced endpoint."""

    def __init__(self, base_url: str, version: str) -> None:
        self.base_url = base_url
        self.inbox = Inbox(f"the legacy SSE stream ({version})")
        self.stream_client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(ANSWER_TIMEOUT, read=None))
        self.resp = self.stream_client.send(
            self.stream_client.build_request("GET", "/sse", headers={"Accept": "text/event-stream"}), stream=True)
        assert self.resp.status_code == 200, f"GET /sse answered {self.resp.status_code}"
        self._endpoint: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, name="legacy-sse-reader", daemon=True)
        self.thread.start()
        endpoint = self._endpoint.get(timeout=ANSWER_TIMEOUT)
        self.sid = parse_qs(urlsplit(endpoint).query)["sessionId"][0]
        self.http = httpx.Client(base_url=base_url, timeout=ANSWER_TIMEOUT,
                                 limits=httpx.Limits(max_keepalive_connections=0))
        self.pings = 0
        r = self.post(j(rq("initialize", {**INIT, "protocolVersion": version}, id_="init")))
        assert r.status_code == 202, (r.status_code, r.text)
        before = self.inbox.until("init")
        assert not answers(before), before
        r = self.post(j(note("notifications/initialized")))
        assert r.status_code == 202, (r.status_code, r.text)

    def _read(self) -> None:
        try:
            for event, data in sse_events(self.resp.iter_lines()):
                if event == "endpoint":
                    self._endpoint.put(data)
                    continue
                try:
                    self.inbox.put(json.loads(data))
                except ValueError:
                    self.inbox.put(("unparseable event", data))
        except Exception as e:  # noqa: BLE001 - the stream's end is reported through the inbox
            self.inbox.close(repr(e))
        else:
            self.inbox.close("the stream ended")

    def post(self, body: bytes, path: str | None = None, headers: dict[str, Any] | None = None,
             method: str = "POST") -> httpx.Response:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        return self.http.request(method, path or f"/messages?sessionId={self.sid}", content=body, headers=h)

    def ping(self) -> list[Any]:
        """Ping over the session; return the answers that arrived on the stream before the pong."""
        self.pings += 1
        pid = f"health-{self.pings}"
        r = self.post(j(rq(id_=pid)))
        assert r.status_code == 202, f"health ping POST answered {r.status_code}: {r.text[:300]}"
        return self.inbox.until(pid)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            stream = self.resp.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self.resp.close()
        self.stream_client.close()
        self.http.close()
        self.thread.join(timeout=5)


class HttpGateway:
    """The module's HTTP gateway, its /mcp sessions (per protocol) and legacy SSE sessions.
    Should a row kill the gateway, that row fails; the next one starts a new gateway (the
    dead one is reported again at teardown)."""

    def __init__(self, factory: GatewayFactory, config: dict[str, Any] | None = None) -> None:
        self.factory = factory
        self.config = config or gateway_config()
        self.ep: Endpoint | None = None
        self.http: httpx.Client | None = None
        self.sessions: dict[str, str] = {}
        self.legacy_sessions: dict[str, LegacySession] = {}
        self.pings = 0
        self.ensure()

    @property
    def port(self) -> int:
        return int(urlsplit(self.ep.base_url).port)

    def ensure(self) -> None:
        if self.ep is not None and self.ep.process.alive():
            return
        self.close_clients()
        self.ep = self.factory(self.config)
        self.http = httpx.Client(base_url=self.ep.base_url, timeout=ANSWER_TIMEOUT,
                                 limits=httpx.Limits(max_keepalive_connections=0))

    def close_clients(self) -> None:
        for s in self.legacy_sessions.values():
            s.close()
        self.legacy_sessions.clear()
        self.sessions.clear()
        if self.http is not None:
            self.http.close()

    # ---- /mcp --------------------------------------------------------------------------------

    def post(self, body: Any, sid: str | None = None, version: str | None = None) -> Reply:
        h = {"Content-Type": "application/json", "Accept": ACCEPT}
        if sid:
            h.update({"Mcp-Session-Id": sid, "MCP-Protocol-Version": version})
        return exchange(self.http, "POST", "/mcp", h, body if isinstance(body, bytes) else j(body))

    def session(self, version: str) -> str:
        if version not in self.sessions:
            r = self.post(rq("initialize", {**INIT, "protocolVersion": version}))
            assert r.status == 200, (r.status, r.text)
            assert answers(r.msgs) == [ok(1)] and r.msgs[0]["result"]["protocolVersion"] == version, r.msgs
            sid = r.headers.get("mcp-session-id")
            assert sid, "initialize returned no Mcp-Session-Id"
            r = self.post(note("notifications/initialized"), sid, version)
            assert r.status == 202, (r.status, r.text)
            self.sessions[version] = sid
        return self.sessions[version]

    def check_mcp(self, version: str) -> None:
        """The gateway process lives and a ping in the session is answered."""
        self.ep.process.ensure_alive("after the case")
        self.pings += 1
        pid = f"health-{self.pings}"
        sid = self.session(version)
        r = self.post(rq(id_=pid), sid, version)
        if r.status != 200 or answers(r.msgs) != [ok(pid)]:
            self.sessions.pop(version, None)  # the next row gets a fresh session
            raise AssertionError(f"gateway unhealthy after the case: a ping in the {version} session got "
                                 f"{r.status} {answers(r.msgs)} {r.text[:300]!r}")

    def delete_session(self, sid: str, version: str = LATEST) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.http.delete("/mcp", headers={"Mcp-Session-Id": sid, "MCP-Protocol-Version": version})

    # ---- legacy SSE --------------------------------------------------------------------------

    def legacy(self, version: str) -> LegacySession:
        s = self.legacy_sessions.get(version)
        if s is not None and s.inbox.closed:  # an earlier row ended it (and failed for that)
            self.drop_legacy(version)
            s = None
        if s is None:
            s = self.legacy_sessions[version] = LegacySession(self.ep.base_url, version)
        return s

    def drop_legacy(self, version: str) -> None:
        s = self.legacy_sessions.pop(version, None)
        if s is not None:
            s.close()


@pytest.fixture(scope="module")
def gw(module_gateway: GatewayFactory) -> Iterator[HttpGateway]:
    if not FIXTURE_BIN.exists():
        pytest.fail(f"{FIXTURE_BIN} not found: run `cargo build --workspace`")
    g = HttpGateway(module_gateway)
    yield g
    g.close_clients()


# =============================================================================================
# The /mcp table
# =============================================================================================


def _body(body: bytes | Callable[[], bytes] | None) -> bytes | None:
    return body() if callable(body) else body


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in MCP_CASES])
def test_mcp(gw: HttpGateway, case: H) -> None:
    gw.ensure()
    version = LATEST if case.stage == "pre" else case.stage
    sid = None if case.stage == "pre" else gw.session(case.stage)
    body = _body(case.body)

    if case.raw is not None:
        fields = {"host": f"127.0.0.1:{gw.port}", "sid": sid or "", "ver": version, "accept": ACCEPT,
                  "len": str(len(body or b""))}
        head = case.raw.format(**fields).encode("latin-1")
        reply = raw_exchange(gw.port, head, body or b"")
    else:
        headers: dict[str, Any] = {"Content-Type": "application/json", "Accept": ACCEPT}
        if case.session == OWN and sid:
            headers.update({"Mcp-Session-Id": sid, "MCP-Protocol-Version": version})
        elif case.session == LEGACY_SESSION:
            headers.update({"Mcp-Session-Id": gw.legacy(LATEST).sid, "MCP-Protocol-Version": version})
        elif case.session not in (OWN, NONE):
            headers.update({"Mcp-Session-Id": case.session, "MCP-Protocol-Version": version})
        elif case.session == NONE and case.stage != "pre":
            headers["MCP-Protocol-Version"] = version
        for k, v in case.headers.items():
            if v is None:
                headers.pop(k, None)
            else:
                headers[k] = v
        if case.method in ("GET", "DELETE", "OPTIONS") and body is None:
            headers.pop("Content-Type", None)
        try:
            reply = exchange(gw.http, case.method, case.path, headers, body)
        except httpx.HTTPError as e:
            pytest.fail(f"no complete answer: {type(e).__name__}: {e}")

    problem = mismatch(case.outs, reply.status, reply.msgs, reply.text)
    new_sid = reply.headers.get("mcp-session-id")
    if new_sid and new_sid != sid:  # an initialize row opened a session: close it again
        gw.delete_session(new_sid)
    assert problem is None, problem
    gw.check_mcp(version)


# =============================================================================================
# The /messages table
# =============================================================================================


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in LEGACY_CASES])
def test_messages(gw: HttpGateway, case: L) -> None:
    gw.ensure()
    session = gw.legacy(case.stage)
    late = session.inbox.drain()
    if late:
        gw.drop_legacy(case.stage)
        session = gw.legacy(case.stage)
        pytest.fail(f"answers arrived on the stream after an earlier case had finished: {answers(late)}")

    path = case.path.format(sid=session.sid, mcp_sid=gw.session(LATEST) if "{mcp_sid}" in case.path else "")
    headers = dict(case.headers)
    if case.method == "GET":
        headers.setdefault("Content-Type", None)
    h = {"Content-Type": "application/json"}
    h.update(headers)
    h = {k: v for k, v in h.items() if v is not None}
    try:
        reply = exchange(session.http, case.method, path, h, _body(case.body))
    except httpx.HTTPError as e:
        pytest.fail(f"no complete answer: {type(e).__name__}: {e}")

    # Answers on the stream: wait for as many as the least demanding expectation needs, then
    # ping; everything before the pong belongs to this row.
    need = min((len(o.msgs) for o in case.outs if o.status == 202 and o.msgs is not None), default=0)
    streamed = session.inbox.take(need) if reply.status == 202 and need else []
    streamed += session.ping()
    if reply.status == 202:
        problem = mismatch(case.outs, 202, streamed, reply.text)
    else:
        problem = mismatch(case.outs, reply.status, reply.msgs, reply.text)
        if problem is None and answers(streamed):
            problem = f"refused with {reply.status} but also answered on the stream: {answers(streamed)}"
    assert problem is None, problem
    gw.ep.process.ensure_alive("after the case")


# =============================================================================================
# The stdio table: one long-lived `serve --transport stdio`
# =============================================================================================


class StdioGateway:
    def __init__(self, work: Path, n: int) -> None:
        work.mkdir(parents=True, exist_ok=True)
        cfg = work / "gateway.json"
        cfg.write_text(json.dumps(with_run_tag(gateway_config()), indent=2))
        self.tag = uuid.uuid4().hex
        self.log_path = work / f"stdio-gateway-{n}.log"
        self.title = f"stdio gateway #{n}"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(GATEWAY_BIN), "serve", "--config", str(cfg), "--transport", "stdio",
             "--log-level", GATEWAY_LOG_LEVEL],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=work,
            env={**os.environ, RUN_TAG_VAR: self.tag}, start_new_session=True,
        )
        _LIVE_LOGS[self.title] = self.log_path
        self.inbox = Inbox("the stdio gateway's stdout")
        self.thread = threading.Thread(target=self._read, name="stdio-reader", daemon=True)
        self.thread.start()
        self.pings = 0
        self.send(j(rq("initialize", INIT, id_="init")))
        assert not answers(self.inbox.until("init", timeout=30)), "answers before the initialize result"
        self.send(j(note("notifications/initialized")))
        # The backend may come up after the handshake: wait until its tools are listed.
        n_list = 0

        def listed() -> bool:
            nonlocal n_list
            n_list += 1
            self.send(j(rq("tools/list", id_=f"list-{n_list}")))
            msgs = self.inbox.take(1)
            return bool(msgs) and any(t["name"] == "fx__echo" for t in msgs[0].get("result", {}).get("tools", []))

        wait_until(listed, 30, "fx__echo listed by the stdio gateway", interval=0.1)

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, b""):
            try:
                self.inbox.put(json.loads(line))
            except ValueError:
                self.inbox.put(("not JSON on stdout", line[:300]))
        self.inbox.close(f"stdout ended (exit code {self.proc.poll()})")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise AssertionError(f"cannot write to the stdio gateway ({e!r}); exit code {self.proc.poll()}; "
                                 f"log:\n{tail(self.log_path, 30)}") from None

    def ping(self) -> list[Any]:
        self.pings += 1
        pid = f"health-{self.pings}"
        self.send(j(rq(id_=pid)))
        return self.inbox.until(pid)

    def stop(self) -> tuple[int | None, list[str], str]:
        """Close stdin (the session's end) and wait for the exit; return the exit code, the
        processes (backends) it left behind, and the tail of its log."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        leftovers = tagged_alive(self.tag)
        kill_tagged(self.tag)
        self.thread.join(timeout=5)
        self._log.close()
        _LIVE_LOGS.pop(self.title, None)
        return code, leftovers, tail(self.log_path, 20)


class StdioHolder:
    """The module's stdio gateway; a row that kills it fails, the next row gets a new one."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.n = 0
        self.gw: StdioGateway | None = None
        self.dead: list[str] = []

    def get(self) -> StdioGateway:
        if self.gw is not None and (not self.gw.alive() or self.gw.inbox.closed):
            code, leftovers, log = self.gw.stop()
            self.dead.append(f"stdio gateway #{self.n} ended during the table (exit code {code}, "
                             f"left behind: {leftovers}):\n{log}")
            self.gw = None
        if self.gw is None:
            self.n += 1
            self.gw = StdioGateway(self.work / f"stdio{self.n}", self.n)
        return self.gw


@pytest.fixture(scope="module")
def stdio_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioHolder]:
    if not FIXTURE_BIN.exists():
        pytest.fail(f"{FIXTURE_BIN} not found: run `cargo build --workspace`")
    holder = StdioHolder(tmp_path_factory.mktemp("malformed-stdio"))
    yield holder
    problems = list(holder.dead)
    if holder.gw is not None:
        code, leftovers, log = holder.gw.stop()
        if code != 0 or leftovers:
            problems.append(f"stdio gateway #{holder.n} did not exit cleanly when stdin closed "
                            f"(exit code {code}, left behind: {leftovers}):\n{log}")
    if problems:
        pytest.fail("stdio teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in STDIO_CASES])
def test_stdio(stdio_gw: StdioHolder, case: S) -> None:
    st = stdio_gw.get()
    late = st.inbox.drain()
    assert not late, f"answers arrived after an earlier case had finished: {answers(late)}"

    if isinstance(case.line, list):
        for piece in case.line[:-1]:
            try:
                st.proc.stdin.write(piece)
                st.proc.stdin.flush()
            except OSError as e:
                raise AssertionError(f"cannot write to the stdio gateway: {e!r}") from None
            time.sleep(0.05)  # pacing: a writer that delivers a line in pieces
        st.send(case.line[-1])
    else:
        st.send(_body(case.line))

    need = min(len(o.msgs) for o in case.outs if o.msgs is not None)
    got = st.inbox.take(need) if need else []
    got += st.ping()
    problem = mismatch(case.outs, None, got, "")
    assert problem is None, problem
    assert st.alive(), f"the stdio gateway exited (code {st.proc.poll()})"


# =============================================================================================
# Connections: slow headers, a stalled body, idle sockets, the connection cap
# =============================================================================================


def healthy_everywhere(gw: HttpGateway) -> None:
    gw.ep.process.ensure_alive("after the case")
    gw.check_mcp(LATEST)
    gw.legacy(LATEST).ping()


def wait_closed(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Wait until the peer closes `sock`; return (closed, whatever it sent first)."""
    deadline = time.monotonic() + timeout
    got = b""
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        chunk = _recv(sock)
        if chunk == b"":
            return True, got
        got += chunk or b""
    return False, got


def closed_quietly_or_408(data: bytes) -> bool:
    return data == b"" or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.0 408")


SLOW_HEADERS = {
    # name: (bytes of a request head, sent one per 200 ms (True) or at once and then nothing)
    "one-byte-every-200ms": (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + b"s" * 200 + b"\r\n\r\n", True),
    "request-line-then-silence": (b"GET /healthz HTTP/1.1\r\n", False),
    "headers-never-finished": (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n", False),
    "nothing-at-all": (b"", False),
}


@pytest.mark.parametrize("name", list(SLOW_HEADERS))
def test_slow_headers_are_cut_off(gw: HttpGateway, name: str) -> None:
    """A client that has not delivered its request head within headerTimeout is disconnected
    (without an answer, or with a 408), whether it trickles bytes or goes silent."""
    gw.ensure()
    data, paced = SLOW_HEADERS[name]
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        start = time.monotonic()
        give_up = start + HEADER_TIMEOUT + SLACK
        sent, closed, answer = 0, False, b""
        if paced:
            for byte in data:
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    closed = True
                    break
                sent += 1
                # pacing: one byte per 200 ms, watching for the gateway to hang up meanwhile
                readable, _, _ = select.select([sock], [], [], 0.2)
                if readable or time.monotonic() > give_up:
                    break
        else:
            sock.sendall(data)
            sent = len(data)
        if not closed:
            closed, answer = wait_closed(sock, max(0.0, give_up - time.monotonic()))
        elapsed = time.monotonic() - start
    finally:
        sock.close()
    assert closed, (f"still connected after {elapsed:.1f} s with {sent}/{len(data)} bytes of the request "
                    f"head sent (headerTimeout {HEADER_TIMEOUT} s)")
    assert closed_quietly_or_408(answer), f"answered {answer[:200]!r} instead of closing (or a 408)"
    assert elapsed <= HEADER_TIMEOUT + SLACK, f"cut off only after {elapsed:.1f} s"
    healthy_everywhere(gw)


def test_stalled_body_gets_408(gw: HttpGateway) -> None:
    """Complete headers, a body that stops halfway: 408 after bodyTimeout, and the gateway
    carries on."""
    gw.ensure()
    sid = gw.session(LATEST)
    body = PING
    head = raw_post().format(host=f"127.0.0.1:{gw.port}", sid=sid, ver=LATEST, accept=ACCEPT,
                             len=str(len(body) + 100)).encode()
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        start = time.monotonic()
        sock.sendall(head + body)
        reply = read_response(sock, b"", time.monotonic() + BODY_TIMEOUT + SLACK)
        elapsed = time.monotonic() - start
    finally:
        sock.close()
    assert reply.status == 408, f"got {reply.status} {reply.text[:200]!r} after {elapsed:.1f} s"
    assert elapsed <= BODY_TIMEOUT + SLACK
    healthy_everywhere(gw)


def test_idle_keep_alive_connection_is_closed(gw: HttpGateway) -> None:
    """After a request, a keep-alive connection that stays silent is closed after idleTimeout
    (well before headerTimeout could have done it)."""
    gw.ensure()
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n\r\n".encode())
        reply = read_response(sock, b"", time.monotonic() + ANSWER_TIMEOUT)
        assert reply.status == 200, reply
        start = time.monotonic()
        closed, extra = wait_closed(sock, IDLE_TIMEOUT + SLACK)
        elapsed = time.monotonic() - start
    finally:
        sock.close()
    assert closed, f"the idle keep-alive connection was still open {elapsed:.1f} s later (idleTimeout {IDLE_TIMEOUT} s)"
    assert elapsed < HEADER_TIMEOUT, (f"closed only after {elapsed:.1f} s: headerTimeout ({HEADER_TIMEOUT} s), "
                                      f"not idleTimeout ({IDLE_TIMEOUT} s), did it")
    assert extra == b"", f"the gateway sent {extra[:200]!r} on an idle connection"
    healthy_everywhere(gw)


def test_idle_connection_flood(gw: HttpGateway) -> None:
    """300 sockets that never send a byte do not keep a normal client from being served, and
    all of them are closed by the gateway's timeouts; open event streams are not idle."""
    gw.ensure()
    legacy = gw.legacy(LATEST)  # an SSE stream open since before the flood
    sel = selectors.DefaultSelector()
    socks = []
    try:
        for _ in range(IDLE_FLOOD):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            socks.append(s)
        start = time.monotonic()
        gw.check_mcp(LATEST)  # served at once, despite the flood
        with httpx.Client(base_url=gw.ep.base_url, timeout=5) as fresh:
            assert fresh.get("/healthz").status_code == 200
        assert time.monotonic() - start < 5, "a normal request waited behind the idle connections"

        still_open = set(socks)
        deadline = start + max(HEADER_TIMEOUT, IDLE_TIMEOUT) + SLACK + 2
        while still_open and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    still_open.discard(s)
                # anything else (a 408) is read and the socket waited on further
        assert not still_open, (f"{len(still_open)} of {IDLE_FLOOD} idle connections still open "
                                f"{time.monotonic() - start:.1f} s after they were opened")
        assert legacy.ping() == [], "the legacy SSE stream lost or gained answers over the flood"
    finally:
        sel.close()
        for s in socks:
            s.close()
    healthy_everywhere(gw)


# ---- a second gateway: default limits (8 MiB bodies) except maxConnections ---------------------


@pytest.fixture(scope="module")
def roomy(module_gateway: GatewayFactory) -> Iterator[HttpGateway]:
    if not FIXTURE_BIN.exists():
        pytest.fail(f"{FIXTURE_BIN} not found: run `cargo build --workspace`")
    g = HttpGateway(module_gateway, gateway_config({"maxConnections": MAX_CONNECTIONS}))
    yield g
    g.close_clients()


DEEP = {
    # name: (path, body) - far deeper than any parser should recurse, yet within 8 MiB
    "mcp-arrays-100k": ("/mcp", lambda: nested_arrays(100_000)),
    "mcp-arrays-1m": ("/mcp", lambda: nested_arrays(1_000_000)),
    "mcp-unclosed-arrays-1m": ("/mcp", lambda: b"[" * 1_000_000),
    "mcp-objects-100k": ("/mcp", lambda: b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    "mcp-arrays-100k-in-params": ("/mcp", lambda: nested_in_params(100_000)),
    "messages-arrays-100k": ("/messages", lambda: nested_arrays(100_000)),
    "messages-objects-100k": ("/messages", lambda: b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
}


@pytest.mark.parametrize("name", list(DEEP))
def test_deep_nesting_under_the_default_body_limit(roomy: HttpGateway, name: str) -> None:
    """With room for them (the default 8 MiB), 100k-deep and 1M-deep documents get a parse
    error, not a crash or a stack overflow."""
    roomy.ensure()
    path, build = DEEP[name]
    if path == "/mcp":
        sid = roomy.session(LATEST)
        reply = exchange(roomy.http, "POST", "/mcp", {"Content-Type": "application/json", "Accept": ACCEPT,
                                                       "Mcp-Session-Id": sid, "MCP-Protocol-Version": LATEST},
                         build())
    else:
        legacy = roomy.legacy(LATEST)
        reply = exchange(legacy.http, "POST", f"/messages?sessionId={legacy.sid}",
                         {"Content-Type": "application/json"}, build())
        assert legacy.ping() == [], "answered on the stream as well"
    problem = mismatch(PARSE_400, reply.status, reply.msgs, reply.text)
    assert problem is None, problem
    roomy.check_mcp(LATEST)


def test_connection_cap(roomy: HttpGateway) -> None:
    """maxConnections: with all 50 taken, the next connection gets an immediate 503 and is
    closed; the 50 keep working; once some close, new connections are served again."""
    roomy.ensure()
    ep = roomy.ep
    roomy.close_clients()  # the cap counts every connection: start from none of ours
    port = int(urlsplit(ep.base_url).port)
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    held: list[socket.socket] = []

    def one_more() -> bool:
        """Open a connection and make a request on it; keep it when served."""
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        with contextlib.suppress(OSError):
            s.sendall(request)
        reply = read_response(s, b"", time.monotonic() + ANSWER_TIMEOUT)
        if reply.status == 200:
            held.append(s)
            return True
        s.close()
        return False

    try:
        for i in range(MAX_CONNECTIONS):
            # (a connection of ours closed just before may still count for a moment)
            wait_until(one_more, 5, f"connection {i + 1} of {MAX_CONNECTIONS} to be served")

        for extra in range(3):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                readable, _, _ = select.select([s], [], [], 1.0)
                if not readable:  # nothing volunteered: ask
                    with contextlib.suppress(OSError):
                        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                reply = read_response(s, b"", time.monotonic() + 3)
                closed, _ = wait_closed(s, 3)
            finally:
                s.close()
            assert reply.status == 503, f"connection {MAX_CONNECTIONS + extra + 1} got {reply.status} {reply.text!r}"
            assert closed, "the refused connection was left open"

        # The connections inside the cap still work.
        held[0].sendall(request)
        assert read_response(held[0], b"", time.monotonic() + ANSWER_TIMEOUT).status == 200

        for s in held[:10]:
            s.close()
        del held[:10]

        def served() -> bool:
            with httpx.Client(base_url=ep.base_url, timeout=5) as c:
                return c.get("/healthz").status_code == 200

        wait_until(served, 5, "a new connection to be served once connections were closed")
    finally:
        for s in held:
            s.close()

    roomy.http = httpx.Client(base_url=ep.base_url, timeout=ANSWER_TIMEOUT,
                              limits=httpx.Limits(max_keepalive_connections=0))
    roomy.check_mcp(LATEST)  # a fresh session, initialize and all
    roomy.legacy(LATEST).ping()

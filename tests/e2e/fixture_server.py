#!/usr/bin/env python3
"""A tiny, dependency-free MCP server over stdio (newline-delimited JSON-RPC).

It exists for the behaviours a reference server cannot show from the outside:

* ``slow``  - runs until cancelled (or ``seconds`` elapse) and records in the event log
              which request id it was started under and which id a ``notifications/cancelled``
              named, so a test can prove that a client's cancellation reached the backend.
* ``crash`` - the process exits in the middle of the call, without answering.
* ``echo``  - answers ``fixture <FIXTURE_ID>: <message>``.
* ``whoami``- answers with FIXTURE_ID.
* ``stray_replies`` - first sends two responses that answer nothing (one to an id never
              used, one without an id, as some servers answer requests they cannot parse),
              then answers the call itself.
* ``stall_stdin`` - (listed only with ``--stall-tool``) answers, then never reads stdin again
              while staying alive, so whoever writes to it ends up with a full pipe.

Options:
  --stall-tool        list ``stall_stdin``
  --ignore-set-level  declare the ``logging`` capability but never answer ``logging/setLevel``

Environment:
  FIXTURE_LOG  path of a JSON-lines event log (appended to; optional)
  FIXTURE_ID   identity reported by ``echo`` / ``whoami`` (default "fixture")
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

LOG_PATH = os.environ.get("FIXTURE_LOG")
IDENT = os.environ.get("FIXTURE_ID", "fixture")
PROTOCOL_FALLBACK = "2025-06-18"
STALL_TOOL = "--stall-tool" in sys.argv[1:]
IGNORE_SET_LEVEL = "--ignore-set-level" in sys.argv[1:]

_out_lock = threading.Lock()
_log_lock = threading.Lock()
_cancel_events: dict[str, threading.Event] = {}
_cancel_lock = threading.Lock()
_stall = threading.Event()  # set by stall_stdin: the main loop stops reading stdin


def log_event(event: str, **fields) -> None:
    if not LOG_PATH:
        return
    rec = {"event": event, "pid": os.getpid(), "t": time.time(), **fields}
    with _log_lock, open(LOG_PATH, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
        fh.flush()


def send(msg: dict) -> None:
    line = json.dumps(msg, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def result(rid, res: dict) -> None:
    send({"jsonrpc": "2.0", "id": rid, "result": res})


def error(rid, code: int, message: str) -> None:
    send({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})


def text(s: str, is_error: bool = False) -> dict:
    return {"content": [{"type": "text", "text": s}], "isError": is_error}


TOOLS = [
    {
        "name": "echo",
        "description": "Echoes the message, prefixed with the fixture's identity",
        "inputSchema": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "required": ["message"],
        },
    },
    {
        "name": "whoami",
        "description": "Returns FIXTURE_ID",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "slow",
        "description": "Runs until cancelled or until `seconds` elapse",
        "inputSchema": {
            "type": "object",
            "properties": {"seconds": {"type": "number"}},
        },
    },
    {
        "name": "stray_replies",
        "description": "Sends two responses that match no request, then answers",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "crash",
        "description": "Exits the server process in the middle of the call",
        "inputSchema": {"type": "object", "properties": {}},
    },
]

STALL_TOOL_SPEC = {
    "name": "stall_stdin",
    "description": "Answers, then never reads stdin again (the process stays alive)",
    "inputSchema": {"type": "object", "properties": {}},
}


def key(rid) -> str:
    return json.dumps(rid)


def run_slow(rid, seconds: float, progress_token) -> None:
    ev = threading.Event()
    with _cancel_lock:
        _cancel_events[key(rid)] = ev
    log_event("started", tool="slow", requestId=rid)
    deadline = time.monotonic() + seconds
    step = 0
    while not ev.is_set() and time.monotonic() < deadline:
        if progress_token is not None:
            step += 1
            send(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {"progressToken": progress_token, "progress": step},
                }
            )
        ev.wait(0.2)
    with _cancel_lock:
        _cancel_events.pop(key(rid), None)
    if ev.is_set():
        log_event("aborted", tool="slow", requestId=rid)
        return  # a cancelled request gets no response
    log_event("finished", tool="slow", requestId=rid)
    result(rid, text(f"slow finished after {seconds} s"))


def handle_call(rid, params: dict) -> None:
    name = params.get("name")
    args = params.get("arguments") or {}
    meta = params.get("_meta") or {}
    log_event("call", tool=name, requestId=rid)
    if name == "echo":
        result(rid, text(f"fixture {IDENT}: {args.get('message', '')}"))
    elif name == "whoami":
        result(rid, text(IDENT))
    elif name == "slow":
        seconds = float(args.get("seconds", 30))
        threading.Thread(
            target=run_slow, args=(rid, seconds, meta.get("progressToken")), daemon=True
        ).start()
    elif name == "stray_replies":
        send({"jsonrpc": "2.0", "id": 987654321, "result": {}})
        send({"jsonrpc": "2.0", "error": {"code": -32600, "message": "no id"}})
        result(rid, text(f"fixture {IDENT}: sent two stray replies"))
    elif name == "stall_stdin" and STALL_TOOL:
        log_event("stalling", tool="stall_stdin", requestId=rid)
        result(rid, text(f"fixture {IDENT}: no longer reading stdin"))
        _stall.set()
    elif name == "crash":
        log_event("crashing", tool="crash", requestId=rid)
        sys.stdout.flush()
        os._exit(3)
    else:
        error(rid, -32602, f"Unknown tool: {name}")


def main() -> None:
    log_event("spawned", argv=sys.argv)
    for raw in sys.stdin:
        raw = raw.strip()
        if not raw:
            continue
        try:
            msg = json.loads(raw)
        except ValueError:
            error(None, -32700, "Parse error")
            continue
        if not isinstance(msg, dict):
            error(None, -32600, "Invalid Request")
            continue
        method = msg.get("method")
        rid = msg.get("id")
        params = msg.get("params") or {}
        if method is None:
            continue  # a response to something we never asked; ignore
        if rid is None:  # notification
            if method == "notifications/cancelled":
                target = params.get("requestId")
                log_event("cancelled", requestId=target, reason=params.get("reason"))
                with _cancel_lock:
                    ev = _cancel_events.get(key(target))
                if ev is not None:
                    ev.set()
            elif method == "notifications/initialized":
                log_event("initialized")
            continue
        if method == "initialize":
            log_event("initialize", requestId=rid, params=params)
            result(
                rid,
                {
                    "protocolVersion": params.get("protocolVersion") or PROTOCOL_FALLBACK,
                    "capabilities": {"tools": {"listChanged": False},
                                     **({"logging": {}} if IGNORE_SET_LEVEL else {})},
                    "serverInfo": {"name": "e2e-fixture", "version": "1.0.0"},
                },
            )
        elif method == "ping":
            result(rid, {})
        elif method == "tools/list":
            result(rid, {"tools": TOOLS + ([STALL_TOOL_SPEC] if STALL_TOOL else [])})
        elif method == "tools/call":
            handle_call(rid, params)
        elif method in ("prompts/list",):
            result(rid, {"prompts": []})
        elif method in ("resources/list",):
            result(rid, {"resources": []})
        elif method in ("resources/templates/list",):
            result(rid, {"resourceTemplates": []})
        elif method == "logging/setLevel":
            if IGNORE_SET_LEVEL:  # never answered
                log_event("setLevel-ignored", requestId=rid, level=params.get("level"))
            else:
                result(rid, {})
        else:
            error(rid, -32601, f"Method not found: {method}")
        if _stall.is_set():
            log_event("stdin-stalled")
            while True:  # alive, but never reading stdin again
                time.sleep(3600)
    log_event("stdin-closed")


if __name__ == "__main__":
    main()

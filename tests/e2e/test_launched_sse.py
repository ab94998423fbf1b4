"""An `sse` backend with both `command` and `url` (the older gateways' format): the gateway starts
the server, polls the URL until it answers, serves it, and stops the server on shutdown."""

from __future__ import annotations

import psutil
import pytest
from conftest import EVERYTHING_ENV, free_port, node_bin, port_open, text_of, wait_until

pytestmark = pytest.mark.gateway_only


async def test_gateway_launches_and_stops_an_sse_server(peers, gateway):
    port = free_port()
    cfg = {
        "mcpServers": {
            "launched": {
                "type": "sse",
                "command": node_bin(),
                "args": [str(peers.everything_js), "sse"],
                "env": {**EVERYTHING_ENV, "PORT": str(port)},
                "url": f"http://127.0.0.1:{port}/sse",
            }
        }
    }
    ep = gateway(cfg, probe={"launched": ["echo"]})
    backend = {b["name"]: b for b in ep.backends()}["launched"]
    assert (backend["transport"], backend["state"]) == ("sse", "ready"), backend
    children = psutil.Process(ep.process.pid).children(recursive=True)
    assert any(str(peers.everything_js) in " ".join(c.cmdline()) for c in children), \
        [c.cmdline() for c in children]
    async with ep.connect("mcp") as c:
        r = await c.call_tool("launched__echo", {"message": "launched"})
        assert text_of(r) == "Echo: launched"

    problems = gateway.stop(ep)
    assert not problems, "\n".join(problems)
    wait_until(lambda: not port_open(port), 10, "the launched server to stop listening")

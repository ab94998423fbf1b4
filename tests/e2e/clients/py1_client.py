"""Compatibility client: the Python `mcp` 1.x SDK (run with the .peers/py1 interpreter).

usage: py1_client.py {mcp|sse} URL ECHO_TOOL [MESSAGE]

Connects, initializes, lists tools and calls ECHO_TOOL; prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version

import anyio
from mcp import ClientSession
from mcp.client.sse import sse_client

try:  # 1.2x+: streamable_http_client; older: streamablehttp_client
    from mcp.client.streamable_http import streamable_http_client as _http_client
except ImportError:  # pragma: no cover - older 1.x
    from mcp.client.streamable_http import streamablehttp_client as _http_client


async def run(transport: str, url: str, echo_tool: str, message: str) -> dict:
    cm = sse_client(url) if transport == "sse" else _http_client(url)
    with anyio.fail_after(60):
        async with cm as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = await session.list_tools()
                res = await session.call_tool(echo_tool, {"message": message})
                texts = [c.text for c in res.content if getattr(c, "type", None) == "text"]
                return {
                    "sdk": "python-mcp",
                    "sdkVersion": version("mcp"),
                    "protocolVersion": init.protocolVersion,
                    "serverName": init.serverInfo.name,
                    "tools": [t.name for t in tools.tools],
                    "isError": bool(res.isError),
                    "echo": "\n".join(texts),
                }


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    transport, url, tool = sys.argv[1:4]
    message = sys.argv[4] if len(sys.argv) > 4 else "hello from mcp 1.x"
    out = anyio.run(run, transport, url, tool, message)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

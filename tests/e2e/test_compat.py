"""Other SDK generations as clients: the Python mcp 1.x SDK and the TypeScript SDK,
each over /mcp (streamable HTTP) and /sse (legacy SSE)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import Endpoint, direct_backend_for, node_bin

BACKEND = "ev"


@pytest.fixture(scope="module")
def compat_gateways(everything, module_gateway):
    """frontend -> Endpoint. Through the gateway one stdio backend serves both frontends;
    directly, each frontend needs the server-everything instance of its own transport."""
    cache: dict[str, Endpoint] = {}

    def get(frontend: str) -> Endpoint:
        kind = direct_backend_for(frontend)
        if kind not in cache:
            cache[kind] = module_gateway({"mcpServers": {BACKEND: everything.spec(kind)}})
        return cache[kind]

    return get


def run_client(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{cmd[:2]} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON on stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1])


def check(out: dict, ep: Endpoint) -> None:
    assert ep.name("echo") in out["tools"] and ep.name("get-sum") in out["tools"], out["tools"]
    assert not out["isError"]
    assert out["echo"] == "Echo: compat ✓"


@pytest.mark.parametrize("fe", ["mcp", "sse"])
def test_python_mcp1_client(peers, compat_gateways, fe: str):
    ep = compat_gateways(fe)
    out = run_client([str(peers.py1), str(peers.py1_client), fe, ep.frontend_url(fe), ep.name("echo"), "compat ✓"])
    assert out["sdkVersion"].startswith("1."), out
    check(out, ep)


@pytest.mark.parametrize("fe", ["mcp", "sse"])
def test_typescript_client(peers, compat_gateways, fe: str):
    ep = compat_gateways(fe)
    env = {**os.environ, "PEERS_NODE_DIR": str(peers.node_dir)}
    out = run_client([node_bin(), str(peers.ts_client), fe, ep.frontend_url(fe), ep.name("echo"), "compat ✓"], env)
    check(out, ep)

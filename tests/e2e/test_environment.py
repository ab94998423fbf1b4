"""What a stdio backend sees of the gateway's environment.

A backend gets a minimal environment (PATH, HOME, locale, proxies, CA bundles, npm/uv/pip
settings), its own `env`, and only the gateway variables its `inheritEnv` names; KUBERNETES_*
never. server-everything's `get-env` tool hands a backend's whole environment to any client, so
it shows through the gateway exactly what a client could read. And `npx` and `uvx`, the
launchers most configs use, still start their servers with the minimal set.
"""

from __future__ import annotations

import importlib.metadata
import json
import uuid
from pathlib import Path

import pytest
from conftest import NODE_DIR, PY2, RUN_TAG_VAR, Endpoint, text_of

pytestmark = pytest.mark.gateway_only

SECRET = f"planted-{uuid.uuid4().hex}"

# Set in the gateway's environment; the gateway is started with a copy of os.environ.
PLANTED = {
    "MCP_E2E_PLANTED_SECRET": SECRET,
    "AWS_SECRET_ACCESS_KEY": f"aws-{SECRET}",
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443",
    "MCP_E2E_OPTED_IN": "opted-in-value",
    "MCP_E2E_PREFIXED_ONE": "prefixed-one",
    "MCP_E2E_PREFIXED_TWO": "prefixed-two",
}

# A configured value: the gateway may mask configured values in what it relays (they are
# secrets to it), so either spelling shows that the variable reached the backend.
BACKEND_SETTING = "set-in-the-config"
MASK = "***"

NPM_MEMORY = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "server-memory" / "package.json"
UVX = PY2.parent / "uvx"


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    return PLANTED


async def env_of(client, ep: Endpoint, backend: str) -> tuple[dict[str, str], str]:
    """The backend's environment as `get-env` returns it, and the raw text."""
    result = await client.call_tool(ep.name("get-env", backend), {})
    text = text_of(result)
    assert not result.is_error, text
    return json.loads(text), text


@pytest.mark.parametrize("fe", ["mcp", "stdio"])
async def test_a_backend_sees_only_what_it_is_given(everything, gateway, planted, fe: str):
    config = {"mcpServers": {
        "minimal": everything.stdio_spec({"MCP_E2E_BACKEND_SETTING": BACKEND_SETTING}),
        "named": {**everything.stdio_spec(), "inheritEnv": ["MCP_E2E_OPTED_IN", "MCP_E2E_PREFIXED_*"]},
        "all": {**everything.stdio_spec(), "inheritEnv": True},
    }}
    probe = {name: ["get-env"] for name in config["mcpServers"]}
    ep = gateway(config, transport="stdio" if fe == "stdio" else "http", probe=probe)
    async with ep.connect(fe) as c:
        env, text = await env_of(c, ep, "minimal")
        assert SECRET not in text, "a planted secret of the gateway reached a backend"
        leaked = sorted(set(env) & set(PLANTED))
        assert leaked == [], f"gateway variables passed without inheritEnv: {leaked}"
        assert env.get("MCP_E2E_BACKEND_SETTING") in (BACKEND_SETTING, MASK), env
        assert env.get("GZIP_ALLOWED_DOMAINS") in ("localhost", MASK), env
        assert env.get("PATH") and env.get("HOME"), env
        # (The harness's run tag is there: conftest hands it to every backend through `env`.)

        env, text = await env_of(c, ep, "named")
        assert SECRET not in text
        assert env.get("MCP_E2E_OPTED_IN") == "opted-in-value"
        assert env.get("MCP_E2E_PREFIXED_ONE") == "prefixed-one"
        assert env.get("MCP_E2E_PREFIXED_TWO") == "prefixed-two"
        assert not any(k.startswith("KUBERNETES_") or k.startswith("AWS_") for k in env), env

        env, _ = await env_of(c, ep, "all")
        assert env.get("MCP_E2E_PLANTED_SECRET") == SECRET
        assert env.get("AWS_SECRET_ACCESS_KEY") == f"aws-{SECRET}"
        kubernetes = sorted(k for k in env if k.startswith("KUBERNETES_"))
        assert kubernetes == [], f"KUBERNETES_* passed with inheritEnv: true: {kubernetes}"


async def test_npx_starts_a_server_with_the_minimal_env(gateway, planted, tmp_path: Path):
    """`npx` (found on the child's PATH) runs server-memory; from .peers/node it needs no network."""
    version = json.loads(NPM_MEMORY.read_text())["version"]
    config = {"mcpServers": {"memory": {
        "command": "npx",
        "args": ["-y", f"@modelcontextprotocol/server-memory@{version}"],
        "cwd": str(NODE_DIR),
        "env": {"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl")},
        # Only so the harness finds the processes it must clean up (they carry its tag).
        "inheritEnv": [RUN_TAG_VAR],
    }}}
    ep = gateway(config, probe={"memory": ["create_entities"]})
    async with ep.connect("mcp") as c:
        await c.call_tool(ep.name("create_entities"), {"entities": [
            {"name": "env-check", "entityType": "test", "observations": ["started by npx"]}]})
        r = await c.call_tool(ep.name("search_nodes"), {"query": "env-check"})
        graph = r.structured_content or json.loads(text_of(r))
        assert [e["name"] for e in graph["entities"]] == ["env-check"]


async def test_uvx_starts_a_server_with_the_minimal_env(gateway, planted, monkeypatch: pytest.MonkeyPatch):
    """`uvx` fetches mcp-server-time from PyPI (or its cache) and runs it: behind a
    TLS-intercepting proxy this needs SSL_CERT_FILE, and UV_* settings reach it."""
    if not UVX.exists():
        pytest.fail(f"{UVX} missing: run scripts/install-peers.sh")
    # uv must use a Python that is here rather than download one.
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    version = importlib.metadata.version("mcp-server-time")
    config = {"mcpServers": {"time": {
        "command": str(UVX),
        "args": [f"mcp-server-time@{version}", "--local-timezone", "UTC"],
        "inheritEnv": [RUN_TAG_VAR],
    }}}
    ep = gateway(config, probe={"time": ["get_current_time"]})
    async with ep.connect("mcp") as c:
        r = await c.call_tool(ep.name("get_current_time"), {"timezone": "UTC"})
        assert json.loads(text_of(r))["timezone"] == "UTC"

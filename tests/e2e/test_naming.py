"""Public names: prefixes, clashes, separators and tool filters (gateway only).

Two server-everything stdio backends `a` and `b` expose identical tools; each gets a marker in
its environment (E2E_IDENT) that its `get-env` tool reveals, so a test can tell which backend
actually answered a call.
"""

from __future__ import annotations

import json

import pytest
from conftest import Endpoint, text_of
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.gateway_only


def ident_of(result) -> str:
    return json.loads(text_of(result)).get("E2E_IDENT")


@pytest.fixture(scope="module")
def prefixed(everything, module_gateway) -> Endpoint:
    cfg = {"mcpServers": {"a": everything.stdio_spec({"E2E_IDENT": "a"}),
                          "b": everything.stdio_spec({"E2E_IDENT": "b"})}}
    return module_gateway(cfg, probe={"a": ["echo"], "b": ["echo"]})


@pytest.fixture(scope="module")
def unprefixed(everything, module_gateway) -> Endpoint:
    cfg = {"mcpServers": {"a": {**everything.stdio_spec({"E2E_IDENT": "a"}), "prefix": ""},
                          "b": {**everything.stdio_spec({"E2E_IDENT": "b"}), "prefix": ""}}}
    return module_gateway(cfg)


@pytest.fixture(scope="module")
def custom(everything, module_gateway) -> Endpoint:
    cfg = {
        "gateway": {"separator": "-"},
        "mcpServers": {
            "first": {**everything.stdio_spec({"E2E_IDENT": "first"}), "prefix": "one"},
            "second": {**everything.stdio_spec({"E2E_IDENT": "second"}),
                       "tools": {"include": ["echo", "get-*"], "exclude": ["get-env"]}},
        },
    }
    return module_gateway(cfg, probe={"first": ["echo"], "second": ["echo"]})


async def test_same_tools_under_two_prefixes(prefixed: Endpoint, frontend: str):
    ep = prefixed
    async with ep.connect(frontend) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        for b in ("a", "b"):
            for t in ("echo", "get-sum", "get-env", "trigger-long-running-operation"):
                assert ep.name(t, b) in names, f"{ep.name(t, b)} missing from {sorted(names)}"
        assert "echo" not in names
        assert text_of(await c.call_tool("a__echo", {"message": "x"})) == "Echo: x"
        assert text_of(await c.call_tool("b__echo", {"message": "y"})) == "Echo: y"
        # each call reached its own backend
        assert ident_of(await c.call_tool("a__get-env", {})) == "a"
        assert ident_of(await c.call_tool("b__get-env", {})) == "b"
        # prompts are namespaced the same way
        prompts = {p.name for p in (await c.list_prompts()).prompts}
        assert {"a__args-prompt", "b__args-prompt"} <= prompts
        r = await c.get_prompt("b__args-prompt", {"city": "Oslo"})
        assert r.messages[0].content.text == "What's weather in Oslo?"


def test_api_tools_lists_origin(prefixed: Endpoint):
    tools = {t["name"]: t for t in prefixed.api_tools()}
    for b in ("a", "b"):
        entry = tools[f"{b}__echo"]
        assert entry["backend"] == b
        assert entry["upstreamName"] == "echo"
        assert entry["description"] == "Echoes back the input string"


async def test_unknown_tool_error_names_the_tool(prefixed: Endpoint):
    async with prefixed.connect("mcp") as c:
        with pytest.raises(MCPError) as exc:
            await c.call_tool("a__no-such-tool-e2e", {})
        assert "a__no-such-tool-e2e" in exc.value.error.message
        with pytest.raises(MCPError) as exc:
            await c.call_tool("zz__echo", {"message": "x"})
        assert "zz__echo" in exc.value.error.message


async def test_clashing_names_without_prefix(unprefixed: Endpoint, frontend: str):
    """Both backends publish `echo` under prefix "": the gateway keeps both callable under
    distinct public names (the loser is renamed deterministically) and says so in /api/v1/tools."""
    ep = unprefixed
    api = unprefixed.api_tools()
    for upstream in ("echo", "get-env"):
        entries = [t for t in api if t["upstreamName"] == upstream]
        assert sorted(t["backend"] for t in entries) == ["a", "b"], entries
        public = [t["name"] for t in entries]
        assert len(set(public)) == 2, f"two backends' {upstream} share a public name: {public}"
        assert upstream in public, f"neither {upstream} kept its own name: {public}"

    by_backend = {t["backend"]: t["name"] for t in api if t["upstreamName"] == "get-env"}
    async with ep.connect(frontend) as c:
        listed = {t.name for t in (await c.list_tools()).tools}
        assert {t["name"] for t in api} == listed, "tools/list and /api/v1/tools disagree"
        for b, public in by_backend.items():
            assert ident_of(await c.call_tool(public, {})) == b, f"{public} did not reach backend {b}"
        for t in api:
            if t["upstreamName"] == "echo":
                assert text_of(await c.call_tool(t["name"], {"message": t["backend"]})) == f"Echo: {t['backend']}"


def test_clash_resolution_is_deterministic(unprefixed: Endpoint, gateway):
    """A second gateway with the same config publishes the same names."""
    again = gateway(unprefixed.config)
    first = sorted((t["name"], t["backend"], t["upstreamName"]) for t in unprefixed.api_tools())
    second = sorted((t["name"], t["backend"], t["upstreamName"]) for t in again.api_tools())
    assert first == second


async def test_custom_prefix_separator_and_filter(custom: Endpoint):
    ep = custom
    async with ep.connect("mcp") as c:
        names = {t.name for t in (await c.list_tools()).tools}
        # custom prefix + separator
        assert "one-echo" in names and "one-get-env" in names
        assert ident_of(await c.call_tool("one-get-env", {})) == "first"
        # include/exclude globs over upstream names
        second = {n for n in names if n.startswith("second-")}
        expected = {"second-echo", "second-get-annotated-message", "second-get-resource-links",
                    "second-get-resource-reference", "second-get-structured-content", "second-get-sum",
                    "second-get-tiny-image"}
        # (get-roots-list exists only when the gateway tells the backend it supports roots)
        assert expected <= second and second - expected <= {"second-get-roots-list"}, \
            f"filtered tools: {sorted(second)}"
        with pytest.raises(MCPError) as exc:
            await c.call_tool("second-get-env", {})
        assert "second-get-env" in exc.value.error.message
        assert text_of(await c.call_tool("second-echo", {"message": "filtered"})) == "Echo: filtered"

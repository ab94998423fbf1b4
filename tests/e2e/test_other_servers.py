"""More real backends: mcp-server-time and mcp-server-git (Python SDK servers), server-memory and
server-filesystem (TypeScript SDK servers). Each alone over every frontend, and all of them behind one gateway."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import Endpoint, node_bin, text_of

NODE_MODULES = Path(__file__).resolve().parents[2] / ".peers" / "node" / "node_modules" / "@modelcontextprotocol"


@pytest.fixture(scope="module")
def specs(peers, tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("servers")
    files = tmp / "files"
    files.mkdir()
    (files / "hello.txt").write_text("hello filesystem\n")
    repo = tmp / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=e2e", "-c", "user.email=e2e@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README").write_text("through the gateway\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first commit via e2e"], check=True)
    (repo / "README").write_text("changed\n")
    return {
        "time": {"command": str(peers.py2), "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
        "memory": {"command": node_bin(), "args": [str(NODE_MODULES / "server-memory" / "dist" / "index.js")],
                   "env": {"MEMORY_FILE_PATH": str(tmp / "memory.jsonl")}},
        "files": {"command": node_bin(),
                  "args": [str(NODE_MODULES / "server-filesystem" / "dist" / "index.js"), str(files)],
                  "_root": str(files)},
        "git": {"command": str(peers.py2), "args": ["-m", "mcp_server_git", "--repository", str(repo)],
                "_root": str(repo)},
    }


def clean(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if not k.startswith("_")}


PROBE = {"time": "get_current_time", "memory": "create_entities", "files": "read_text_file", "git": "git_status"}


@pytest.fixture(scope="module")
def single(specs, module_gateway):
    cache: dict[str, Endpoint] = {}

    def get(server: str) -> Endpoint:
        if server not in cache:
            cache[server] = module_gateway({"mcpServers": {server: clean(specs[server])}},
                                           probe={server: [PROBE[server]]})
        return cache[server]

    return get


async def check_time(c, ep: Endpoint, backend: str = "time") -> None:
    names = {t.name for t in (await c.list_tools()).tools}
    assert {ep.name("get_current_time", backend), ep.name("convert_time", backend)} <= names
    r = await c.call_tool(ep.name("get_current_time", backend), {"timezone": "UTC"})
    assert json.loads(text_of(r))["timezone"] == "UTC"
    r = await c.call_tool(ep.name("convert_time", backend),
                          {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
    assert json.loads(text_of(r))["target"]["datetime"].endswith("T21:00:00+09:00")


async def check_memory(c, ep: Endpoint, backend: str = "memory") -> None:
    await c.call_tool(ep.name("create_entities", backend), {"entities": [
        {"name": "e2e-node", "entityType": "test", "observations": ["seen through the gateway"]}]})
    r = await c.call_tool(ep.name("search_nodes", backend), {"query": "e2e-node"})
    graph = r.structured_content or json.loads(text_of(r))
    assert [e["name"] for e in graph["entities"]] == ["e2e-node"]


async def check_files(c, ep: Endpoint, root: str, backend: str = "files") -> None:
    r = await c.call_tool(ep.name("read_text_file", backend), {"path": f"{root}/hello.txt"})
    assert text_of(r) == "hello filesystem\n"
    r = await c.call_tool(ep.name("list_directory", backend), {"path": root})
    assert "[FILE] hello.txt" in text_of(r)
    r = await c.call_tool(ep.name("read_text_file", backend), {"path": "/etc/hostname"})
    assert r.is_error, "the filesystem server let a read escape its root"


async def check_git(c, ep: Endpoint, repo: str, backend: str = "git") -> None:
    status = text_of(await c.call_tool(ep.name("git_status", backend), {"repo_path": repo}))
    assert "modified:" in status and "README" in status, status
    log = text_of(await c.call_tool(ep.name("git_log", backend), {"repo_path": repo}))
    assert "first commit via e2e" in log, log


@pytest.mark.parametrize("server", ["time", "memory", "files", "git"])
async def test_single_server(single, specs, frontend: str, server: str):
    ep = single(server)
    if frontend not in ep.frontends:
        pytest.skip("direct mode: a stdio server is only reachable over stdio")
    async with ep.connect(frontend) as c:
        if server == "time":
            await check_time(c, ep)
        elif server == "memory":
            await check_memory(c, ep)
        elif server == "git":
            await check_git(c, ep, specs["git"]["_root"])
        else:
            await check_files(c, ep, specs["files"]["_root"])


@pytest.mark.gateway_only
async def test_all_servers_behind_one_gateway(specs, everything, gateway, frontend: str):
    cfg = {"mcpServers": {"ev": everything.stdio_spec(), **{k: clean(v) for k, v in specs.items()}}}
    ep = gateway(cfg, transport="stdio" if frontend == "stdio" else "http",
                 probe={"ev": ["echo"], **{k: [p] for k, p in PROBE.items()}})
    async with ep.connect(frontend) as c:
        tools = (await c.list_tools()).tools
        prefixes = {t.name.split("__", 1)[0] for t in tools}
        assert prefixes == {"ev", "time", "memory", "files", "git"}, prefixes
        assert text_of(await c.call_tool("ev__echo", {"message": "mix"})) == "Echo: mix"
        await check_time(c, ep)
        await check_memory(c, ep)
        await check_files(c, ep, specs["files"]["_root"])
        await check_git(c, ep, specs["git"]["_root"])
    if ep.base_url:
        states = {b["name"]: b["state"] for b in ep.backends()}
        assert states == dict.fromkeys(("ev", "time", "memory", "files", "git"), "ready")

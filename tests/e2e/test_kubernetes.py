"""Kubernetes mode end to end: the gateway binary watching McpBackends on a fake API server.

No cluster can run here, so `fake_kube.FakeKube` plays the API server (list + watch with
resourceVersions and bookmarks, 410 Gone after compaction, the status subresource, server-side
apply, Leases, Events), and is itself checked against kubectl and the official Python client in
`test_fake_kube.py`. The gateway reaches it through a kubeconfig, exactly as it would a cluster;
a real MCP client (the Python SDK) watches tools appear, change and disappear through `/mcp`.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import (FRONTENDS, GATEWAY_BIN, LISTENING_RE, Endpoint, ManagedProcess, Recorder,
                      text_of, wait_until)
from fake_kube import FakeKube

pytestmark = [pytest.mark.gateway_only, pytest.mark.anyio]

NS = "team-a"
WAIT = 30.0


def mcpb(name: str, ns: str = NS, labels: dict[str, str] | None = None, **spec: Any) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "mcpgateway.dev/v1alpha1", "kind": "McpBackend", "metadata": meta, "spec": spec}


def fixture_spec(name: str, **more: Any) -> dict:
    # A bare command: the gateway finds its sibling binary, as in the container image.
    return {"transport": "stdio", "command": "mcp-fixture", "args": ["--name", name], **more}


def kubeconfig(fake: FakeKube, path: Path, token: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: fake\n  cluster:\n    server: {fake.url}\n"
        f"users:\n- name: gw\n  user:\n    token: {token}\n"
        "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: gw\n    namespace: default\n"
        "current-context: fake\n"
    )
    return path


class Gateway:
    def __init__(self, fake: FakeKube, work: Path, identity: str, extra: tuple[str, ...] = (),
                 config: dict | None = None) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.identity = identity
        self.token = f"token-{identity}"
        cfg = work / "gateway.json"
        import json
        cfg.write_text(json.dumps(config or {"mcpServers": {}}))
        env = {**os.environ, "KUBECONFIG": str(kubeconfig(fake, work / "kubeconfig", self.token))}
        env.pop("POD_NAME", None)
        env.pop("POD_NAMESPACE", None)
        self.process = ManagedProcess(
            f"gateway {identity}",
            [str(GATEWAY_BIN), "serve", "--kubernetes", "--config", str(cfg), "--port", "0",
             "--host", "127.0.0.1", "--log-level", "debug", "--allow-command", "mcp-fixture",
             "--lease-namespace", "mcp", "--identity", identity,
             *(() if "--resync" in extra else ("--resync", "1")), *extra],
            work / "gateway.log", env=env, cwd=work,
        )

        def listening() -> str | None:
            self.process.ensure_alive("before listening")
            m = LISTENING_RE.search(Path(self.process.log_path).read_text(errors="replace"))
            return m.group(1) if m else None

        base_url = wait_until(listening, WAIT, "the gateway's listening line")
        self.endpoint = Endpoint(config=config or {"mcpServers": {}}, config_path=cfg, work_dir=work,
                                 direct=False, frontends=FRONTENDS, base_url=base_url,
                                 process=self.process)

    def log(self) -> str:
        return Path(self.process.log_path).read_text(errors="replace")

    def stop(self) -> None:
        code, in_time, leftovers = self.process.stop()
        assert in_time, f"{self.identity} did not stop in time"
        assert not leftovers, f"{self.identity} left processes behind: {leftovers}"


@pytest.fixture
def fake() -> Any:
    kube = FakeKube(bookmark_interval=None).start()
    yield kube
    kube.stop()


@pytest.fixture
def gateways(fake: FakeKube, tmp_path: Path) -> Any:
    started: list[Gateway] = []

    def start(identity: str = "gw-a", *extra: str, config: dict | None = None) -> Gateway:
        gw = Gateway(fake, tmp_path / identity, identity, extra, config)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        if gw.process.alive():
            gw.stop()


def ready_of(status: dict | None) -> dict | None:
    for c in (status or {}).get("conditions", []):
        if c.get("type") == "Ready":
            return c
    return None


def wait_status(fake: FakeKube, name: str, pred, what: str, ns: str = NS) -> dict:
    """Wait until the stored object's status satisfies `pred`; returns that status."""
    def check():
        obj = fake.get("mcpbackends", ns, name)
        status = (obj or {}).get("status")
        return status if status and pred(status) else None
    return fake.wait_for(check, WAIT, what)


def is_ready(status: dict, generation: int | None = None) -> bool:
    c = ready_of(status)
    return bool(c and c["status"] == "True" and (generation is None or status.get("observedGeneration") == generation))


def reason_is(reason: str):
    return lambda status: (ready_of(status) or {}).get("reason") == reason


async def tool_names(client) -> set[str]:
    return {t.name for t in (await client.list_tools()).tools}


async def test_create_change_delete_reach_a_connected_client(fake: FakeKube, gateways) -> None:
    gw = gateways("gw-a")
    fake.wait_for(lambda: fake.open_watches("mcpbackends"), WAIT, "the gateway's McpBackend watch")
    rec = Recorder()
    async with gw.endpoint.connect("mcp", rec, wait_for_tools=()) as client:
        assert not any(n.startswith("tools__") for n in await tool_names(client))

        # Create: the tools appear, the session is told, the status says so.
        fake.create(mcpb("tools", **fixture_spec("tools")))
        await rec.wait_for("notifications/tools/list_changed", timeout=WAIT)
        names = await _wait_names(client, lambda n: "tools__echo" in n)
        result = await client.call_tool("tools__echo", {"message": "from the cluster"})
        assert "from the cluster" in text_of(result)
        status = wait_status(fake, "tools", lambda s: is_ready(s, 1), "Ready=True for generation 1")
        assert status["tools"] == len([n for n in names if n.startswith("tools__")])
        assert status["serverInfo"]["name"] == "tools"
        assert ready_of(status)["reason"] == "Connected"

        # The write was a server-side apply of the status subresource by our field manager.
        patch = fake.requests_matching("PATCH", re.compile(r"/namespaces/team-a/mcpbackends/tools/status$"))[-1]
        assert patch["content_type"] == "application/apply-patch+yaml"
        assert patch["query"].get("fieldManager") in ("mcp-gateway", ["mcp-gateway"])
        managers = {m["manager"] for m in fake.get("mcpbackends", NS, "tools")["metadata"]["managedFields"]}
        assert "mcp-gateway" in managers
        # An Event marks the transition.
        events = fake.wait_for(lambda: [e for e in fake.events(NS)
                                        if e.get("regarding", {}).get("name") == "tools"], WAIT, "an Event")
        assert [e["reason"] for e in events] == ["Connected"], events
        assert events[0]["type"] == "Normal"

        # Change: generation 2 narrows the tools; the client sees the new list.
        rec.notifications.clear()
        obj = fake.get("mcpbackends", NS, "tools")
        obj["spec"]["tools"] = {"include": ["echo", "add"]}
        fake.update(obj)
        await rec.wait_for("notifications/tools/list_changed", timeout=WAIT)
        names = await _wait_names(client, lambda n: {x for x in n if x.startswith("tools__")} == {"tools__echo", "tools__add"})
        status = wait_status(fake, "tools", lambda s: is_ready(s, 2) and s.get("tools") == 2,
                             "Ready for generation 2 with 2 tools")
        assert ready_of(status)["observedGeneration"] == 2

        # Delete: the tools leave, the session is told.
        rec.notifications.clear()
        fake.delete("mcpbackends", NS, "tools")
        await rec.wait_for("notifications/tools/list_changed", timeout=WAIT)
        await _wait_names(client, lambda n: not any(x.startswith("tools__") for x in n))

    # The lease was taken by this replica.
    leases = fake.leases("mcp")
    assert [l.get("spec", {}).get("holderIdentity") for l in leases] == ["gw-a"], leases


async def _wait_names(client, pred, timeout: float = WAIT) -> set[str]:
    """Poll tools/list (with a deadline) until `pred` holds."""
    import anyio
    import time
    deadline = time.monotonic() + timeout
    while True:
        names = await tool_names(client)
        if pred(names):
            return names
        if time.monotonic() > deadline:
            raise TimeoutError(f"the expected tool list never came; last: {sorted(names)}")
        await anyio.sleep(0.05)


async def test_unresolvable_resources_get_a_reason(fake: FakeKube, gateways) -> None:
    gw = gateways("gw-a")
    secret_env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]
    fake.create(mcpb("needs-secret", **fixture_spec("needs-secret", env=secret_env)))
    fake.create(mcpb("shell", transport="stdio", command="/bin/sh", args=["-c", "true"]))

    status = wait_status(fake, "needs-secret", reason_is("SecretNotFound"), "SecretNotFound")
    assert ready_of(status)["status"] == "False"
    assert ready_of(status)["message"] == 'spec.env[TOKEN]: Secret "api" not found'
    status = wait_status(fake, "shell", reason_is("CommandNotAllowed"), "CommandNotAllowed")
    assert '"/bin/sh"' in ready_of(status)["message"]
    warnings = lambda: {e["reason"] for e in fake.events(NS) if e["type"] == "Warning"}  # noqa: E731
    fake.wait_for(lambda: {"SecretNotFound", "CommandNotAllowed"} <= warnings(), WAIT, "Warning Events")

    # The Secret appears later: the resync picks it up without an edit of the McpBackend.
    fake.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api", "namespace": NS},
                 "stringData": {"token": "s3cret-value"}})
    wait_status(fake, "needs-secret", lambda s: is_ready(s), "Ready once the Secret exists")
    backends = {b["name"]: b for b in gw.endpoint.backends()}
    assert backends["team-a/needs-secret"]["state"] == "ready"
    assert "team-a/shell" not in backends
    # The Secret is read with get, never listed or watched, and never logged.
    secret_reads = fake.requests_matching(path=re.compile(r"/secrets"))
    assert secret_reads and {r["method"] for r in secret_reads} == {"GET"}
    assert all("watch" not in r["query"] for r in secret_reads)
    assert "s3cret-value" not in gw.log()


async def test_watch_survives_bookmarks_restarts_and_410(fake: FakeKube, gateways) -> None:
    gw = gateways("gw-a")
    fake.create(mcpb("a", **fixture_spec("a")))
    fake.create(mcpb("b", **fixture_spec("b")))
    for name in ("a", "b"):
        wait_status(fake, name, is_ready, f"{name} ready")
    watch_path = re.compile(r"/apis/mcpgateway.dev/v1alpha1/mcpbackends$")

    def watches() -> list[dict]:
        return [r for r in fake.requests_matching("GET", watch_path) if r["query"].get("watch") in ("true", "1", ["true"], ["1"])]

    def lists() -> list[dict]:
        return [r for r in fake.requests_matching("GET", watch_path) if "watch" not in r["query"]]

    assert all(_q(w, "allowWatchBookmarks") == "true" for w in watches()), "bookmarks requested"

    # A bookmark, then the stream ends: the watch resumes from the bookmark, without a re-list.
    fake.wait_for(lambda: fake.open_watches("mcpbackends"), WAIT, "an open watch")
    lists_before = len(lists())
    # Something the watch does not see moves the resourceVersion on: only the bookmark tells.
    fake.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": NS}})
    rv = fake.resource_version
    sent = fake.bookmarks_sent
    assert fake.bookmark() >= 1
    fake.wait_for(lambda: fake.bookmarks_sent > sent, WAIT, "the bookmark written")
    n = len(watches())
    fake.close_watches()
    resumed = fake.wait_for(lambda: watches()[n:] or None, WAIT, "the watch to resume")
    # From the bookmark's resourceVersion: at least the ConfigMap's, which no event on this
    # watch carried. The bookmark may carry a later one (a Lease renewal or an Event the
    # gateway wrote meanwhile moves it on), and an McpBackend event after the bookmark (a
    # status write) later still.
    bookmarked = int(fake.last_bookmark_rv)
    assert bookmarked >= int(rv)
    assert int(_q(resumed[0], "resourceVersion")) >= bookmarked
    assert len(lists()) == lists_before

    # A deletion the gateway misses (its watch down, the history compacted): 410 → re-list →
    # the missing resource's tools are removed.
    fake.inject_error(503, method="GET", path_contains="/mcpbackends", times=10_000)
    fake.close_watches()
    fake.wait_for(lambda: fake.open_watches("mcpbackends") == 0, WAIT, "the watch down")
    fake.delete("mcpbackends", NS, "b")
    fake.compact()
    with fake._cond:  # the API server is back
        fake._faults.clear()
    fake.wait_for(lambda: len(lists()) > lists_before, WAIT, "a re-list after 410 Gone")
    wait_until(lambda: "team-a/b" not in {b["name"] for b in gw.endpoint.backends()}, WAIT,
               "b removed after the re-list")
    assert "team-a/a" in {b["name"] for b in gw.endpoint.backends()}

    # The operator sees it: interruptions and reconciles are counted.
    import httpx
    text = httpx.get(gw.endpoint.url("/metrics"), timeout=5).text
    restarts = re.search(r"^mcp_gateway_watch_restarts_total (\S+)$", text, re.M)
    assert restarts and float(restarts.group(1)) >= 1, text
    applied = re.search(r'^mcp_gateway_reconciles_total\{result="applied"\} (\S+)$', text, re.M)
    assert applied and float(applied.group(1)) == 2, text


def _q(request: dict, key: str) -> Any:
    v = request["query"].get(key)
    return v[0] if isinstance(v, list) else v


async def test_namespaces_and_selector_limit_what_is_served(fake: FakeKube, gateways) -> None:
    gw = gateways("gw-a", "--namespace", NS, "--selector", "gateway=main")
    fake.create(mcpb("picked", labels={"gateway": "main"}, **fixture_spec("picked")))
    fake.create(mcpb("other-label", labels={"gateway": "other"}, **fixture_spec("other-label")))
    fake.create(mcpb("other-ns", ns="team-b", labels={"gateway": "main"}, **fixture_spec("other-ns")))
    wait_status(fake, "picked", is_ready, "picked ready")
    assert {b["name"] for b in gw.endpoint.backends()} == {"team-a/picked"}
    # Unselected resources are not ours: no status written on them.
    assert fake.status_patches("other-label") == []
    assert fake.status_patches("other-ns", "team-b") == []
    # Relabelling out of the selector is a deletion for this gateway.
    obj = fake.get("mcpbackends", NS, "picked")
    obj["metadata"]["labels"] = {"gateway": "other"}
    fake.update(obj)
    wait_until(lambda: gw.endpoint.backends() == [], WAIT, "picked removed once unselected")


async def test_file_and_cluster_backends_are_served_together(fake: FakeKube, gateways, tmp_path: Path) -> None:
    config = {"mcpServers": {"local": {"command": str(GATEWAY_BIN.parent / "mcp-fixture"),
                                        "args": ["--name", "local"]}}}
    gw = gateways("gw-a", config=config)
    fake.create(mcpb("remote", **fixture_spec("remote")))
    wait_status(fake, "remote", is_ready, "remote ready")
    async with gw.endpoint.connect("mcp", wait_for_tools=()) as client:
        names = await _wait_names(client, lambda n: {"local__echo", "remote__echo"} <= n)
        assert {"local__echo", "remote__echo"} <= names


async def test_only_the_lease_holder_writes_status(fake: FakeKube, gateways) -> None:
    a = gateways("gw-a")
    fake.wait_for(lambda: [l for l in fake.leases("mcp") if l.get("spec", {}).get("holderIdentity") == "gw-a"],
                  WAIT, "gw-a holding the lease")
    b = gateways("gw-b")
    fake.create(mcpb("shared", **fixture_spec("shared")))
    wait_status(fake, "shared", is_ready, "shared ready")
    # Both replicas serve it …
    for gw in (a, b):
        wait_until(lambda gw=gw: any(x["name"] == "team-a/shared" and x["state"] == "ready"
                                      for x in gw.endpoint.backends()), WAIT, f"{gw.identity} serving")
    # … but every status write came from the holder.
    writers = {r["authorization"] for r in fake.requests_matching("PATCH", re.compile(r"/mcpbackends/shared/status$"))}
    assert writers == {f"Bearer {a.token}"}, writers
    events = fake.wait_for(lambda: [e for e in fake.events(NS)
                                    if e.get("regarding", {}).get("name") == "shared"], WAIT, "an Event")
    assert {e.get("reportingInstance") for e in events} == {"gw-a"}

    # The holder stops (and releases the lease): the other takes over and reports the next change.
    a.stop()
    fake.wait_for(lambda: [l for l in fake.leases("mcp") if l.get("spec", {}).get("holderIdentity") == "gw-b"],
                  WAIT, "gw-b taking the lease")
    obj = fake.get("mcpbackends", NS, "shared")
    obj["spec"]["tools"] = {"include": ["echo"]}
    fake.update(obj)
    wait_status(fake, "shared", lambda s: is_ready(s, 2) and s.get("tools") == 1, "gw-b reporting generation 2")
    writers = {r["authorization"] for r in fake.requests_matching("PATCH", re.compile(r"/mcpbackends/shared/status$"))}
    assert writers == {f"Bearer {a.token}", f"Bearer {b.token}"}


async def test_status_is_not_rewritten_when_nothing_changed(fake: FakeKube, gateways) -> None:
    gateways("gw-a")
    fake.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": NS},
                 "data": {"mode": "steady"}})
    env = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}}]
    fake.create(mcpb("steady", **fixture_spec("steady", env=env)))
    wait_status(fake, "steady", is_ready, "steady ready")
    writes = len(fake.status_patches("steady"))
    # Three resyncs (each reads the ConfigMap again) and a watch restart later, nothing new
    # was written.
    reads = lambda: len(fake.requests_matching("GET", "/configmaps/cfg"))  # noqa: E731
    seen = reads()
    fake.close_watches()
    fake.wait_for(lambda: reads() >= seen + 3, WAIT, "three more resyncs")
    fake.wait_for(lambda: fake.open_watches("mcpbackends"), WAIT, "the watch back")
    assert len(fake.status_patches("steady")) == writes


def test_the_crd_in_the_cluster_matches_the_binary(tmp_path: Path) -> None:
    import subprocess
    out = subprocess.run([str(GATEWAY_BIN), "crd"], capture_output=True, text=True, check=True).stdout
    committed = (Path(__file__).parents[2] / "crds" / "mcpbackends.yaml").read_text()
    assert out == committed


def test_not_ready_until_the_first_list_is_applied(fake: FakeKube, gateways) -> None:
    import httpx
    fake.create(mcpb("early", **fixture_spec("early")))
    # The API answers nothing for a while: the gateway listens but says it is not ready.
    fake.inject_error(503, method="GET", path_contains="/mcpbackends", times=10_000)
    gw = gateways("gw-a")
    fake.wait_for(lambda: fake.requests_matching("GET", "/mcpbackends"), WAIT, "a list attempt")
    r = httpx.get(gw.endpoint.url("/readyz"), timeout=5)
    assert r.status_code == 503 and "McpBackend" in r.json()["reason"], r.text
    assert httpx.get(gw.endpoint.url("/healthz"), timeout=5).status_code == 200
    with fake._cond:
        fake._faults.clear()
    wait_until(lambda: httpx.get(gw.endpoint.url("/readyz"), timeout=5).status_code == 200, WAIT, "ready")
    assert "team-a/early" in {b["name"] for b in gw.endpoint.backends()}


def test_status_writes_do_not_reread_references(fake: FakeKube, gateways) -> None:
    """Our own status write comes back on the watch; only a new spec (or the resync) reads
    Secrets again."""
    fake.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api", "namespace": NS},
                 "stringData": {"token": "t"}})
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]
    gateways("gw-a", "--resync", "3600")
    fake.create(mcpb("quiet", **fixture_spec("quiet", env=env)))
    wait_status(fake, "quiet", is_ready, "quiet ready")
    reads = lambda: len(fake.requests_matching("GET", "/secrets/api"))  # noqa: E731
    assert reads() == 1
    # A new spec is a new reconcile: the Secret is read again.
    obj = fake.get("mcpbackends", NS, "quiet")
    obj["spec"]["timeout"] = "45s"
    fake.update(obj)
    wait_status(fake, "quiet", lambda s: is_ready(s, 2), "generation 2 reported")
    assert reads() == 2


def test_the_charts_container_serves_the_example(fake: FakeKube, tmp_path: Path) -> None:
    """The Deployment's own args and env (default values), the example manifest as a user
    would apply it, and the Host guard set to the Service's names."""
    import httpx
    import yaml
    from k8s_packaging import container, env_of, objects

    c = container(objects())
    args = list(c["args"])
    for flag, value in (("--host", "127.0.0.1"), ("--port", "0")):
        args[args.index(flag) + 1] = value
    env = {k: v for k, v in env_of(c).items() if isinstance(v, str)}
    env.update(POD_NAME="mcp-gateway-0", POD_NAMESPACE="mcp")
    env.update(KUBECONFIG=str(kubeconfig(fake, tmp_path / "kubeconfig", "chart")))
    mp = ManagedProcess("chart gateway", [str(GATEWAY_BIN), *args], tmp_path / "gateway.log",
                        env={**os.environ, **env}, cwd=tmp_path)
    try:
        base = wait_until(lambda: (m := LISTENING_RE.search(Path(mp.log_path).read_text(errors="replace")))
                          and m.group(1), WAIT, "listening")
        example = yaml.safe_load((Path(__file__).parents[2] / "examples/kubernetes/fixture-stdio.yaml").read_text())
        fake.create(example, namespace="default")
        wait_status(fake, "fixture", is_ready, "the example ready", ns="default")
        lease = fake.wait_for(lambda: fake.leases("mcp"), WAIT, "the lease")
        assert lease[0]["spec"]["holderIdentity"] == "mcp-gateway-0"
        port = base.rsplit(":", 1)[1]
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "probe", "version": "0"}}}
        headers = {"Accept": "application/json, text/event-stream"}
        ok = httpx.post(f"{base}/mcp", json=init, timeout=5,
                        headers={**headers, "Host": f"mcp-gateway.mcp.svc.cluster.local:{port}"})
        assert ok.status_code == 200, ok.text
        foreign = httpx.post(f"{base}/mcp", json=init, timeout=5, headers={**headers, "Host": "evil.example"})
        assert foreign.status_code == 403
    finally:
        mp.stop()

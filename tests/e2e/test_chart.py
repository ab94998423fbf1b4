"""The Helm chart (charts/mcp-gateway) and the plain manifests generated from it (deploy/).

Rendered with Helm's own Go SDK (helm-python-sdk): `helm lint`, `helm template`, then every
object checked against the Kubernetes schemas and against what the gateway needs: hardened
pods, least-privilege RBAC, the Host allow-list, a static config the gateway accepts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from conftest import GATEWAY_BIN, PEERS
from k8s_packaging import (
    CHART, CRD_COPIES, CRD_SOURCE, DEPLOY, EXAMPLES, KUBE_VERSIONS, NAMESPACE, RELEASE, ROOT,
    TEST_VALUES, by_kind, container, env_of, is_foreign, kube_errors, load_values, load_yaml_docs,
    notes, objects, one,
)

VALUE_SETS = {
    "default": None,
    "test-values": TEST_VALUES,
    "values-example": EXAMPLES / "values-example.yaml",
}
# The only finding `helm lint` may report: the chart has no icon to point at.
ALLOWED_LINT = {("Chart.yaml", "icon is recommended")}


def values_for(which: str) -> dict[str, Any] | None:
    path = VALUE_SETS[which]
    return load_values(path) if path else None


@pytest.fixture(scope="module")
def default_objs() -> list[dict]:
    return objects()


@pytest.fixture(scope="module")
def test_objs() -> list[dict]:
    return objects(load_values(TEST_VALUES))


def rules_of(objs: list[dict], kind: str) -> list[tuple[str, dict]]:
    """(namespace, rule) for every rule of every `kind` (Role or ClusterRole)."""
    return [(o["metadata"].get("namespace", ""), r) for o in by_kind(objs, kind) for r in o["rules"]]


def rules_for(objs: list[dict], kind: str, resource: str) -> list[tuple[str, dict]]:
    return [(ns, r) for ns, r in rules_of(objs, kind) if resource in r["resources"]]


# ---- lint and schema ----------------------------------------------------------------------


@pytest.mark.parametrize("which", VALUE_SETS)
def test_helm_lint_is_clean(which: str) -> None:
    report = helm_python.lint(CHART, values_for(which), strict=True, namespace=NAMESPACE,
                              kube_version="v1.33.0")
    findings = [(m["path"], m["error"]) for m in report["messages"]
                if (m["path"], m["error"]) not in ALLOWED_LINT]
    assert report["total_charts_linted"] == 1
    assert not report["errors"] and not findings, (report["errors"], findings)


@pytest.mark.parametrize("bad", [
    {"logFormat": "xml"},
    {"replicas": 2},                       # a typo of replicaCount: unknown keys are refused
    {"stdio": {"allowCommands": "npx"}},   # a string, not a list
    {"service": {"port": 70000}},
    {"podDisruptionBudget": {"enabled": "yes"}},
    {"image": {"variant": "nodejs"}},      # renders a tag no build makes
    {"image": {"variant": "Node"}},
    {"rbac": {"referenceNamespaces": ["Team_A"]}},
])
def test_values_schema_refuses_mistakes(bad: dict) -> None:
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(None)  # the defaults themselves pass
        with pytest.raises(helm_python.HelmValuesError):
            chart.validate_schema(bad)


def test_image_variants_are_the_dockerfile_targets() -> None:
    """Each image.variant the schema allows is an image the Dockerfile builds: "" its default
    (last) stage, any other value the stage of that name, tagged <version>-<variant>."""
    import json
    import re

    schema = json.loads((CHART / "values.schema.json").read_text())
    variants = schema["properties"]["image"]["properties"]["variant"]["enum"]
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE | re.IGNORECASE)
    assert "" in variants
    for v in variants:
        if v:
            assert v in stages and v != stages[-1], f"variant {v!r} is no Dockerfile target: {stages}"
            assert container(objects({"image": {"variant": v}}))["image"].endswith(f":0.1.0-{v}")
    with helm_python.Chart.load(CHART) as chart:
        for v in variants:
            chart.validate_schema({"image": {"variant": v}})


def test_chart_metadata_matches_the_crate() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    crate = next(line.split('"')[1] for line in (ROOT / "Cargo.toml").read_text().splitlines()
                 if line.startswith("version = "))
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == crate
    assert meta["version"] == "0.1.0"


# ---- every rendered object is a valid Kubernetes object ---------------------------------


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("which", VALUE_SETS)
def test_rendered_objects_are_valid_kubernetes(which: str, version: str) -> None:
    objs = objects(values_for(which))
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "ServiceAccount"} <= kinds
    problems = [p for o in objs if not is_foreign(o) for p in kube_errors(o, version)]
    assert not problems, "\n".join(problems)
    for o in objs:
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"].get("namespace"), f"{o['kind']}/{o['metadata']['name']} has no namespace"


def test_chart_crd_is_the_generated_one() -> None:
    assert CRD_SOURCE.is_file(), f"{CRD_SOURCE.relative_to(ROOT)} missing: run scripts/sync-crd.sh"
    source = CRD_SOURCE.read_bytes()
    for copy in CRD_COPIES:
        assert copy.is_file(), f"{copy.relative_to(ROOT)} missing: run scripts/sync-crd.sh"
        assert copy.read_bytes() == source, f"{copy.relative_to(ROOT)} differs from crds/: run scripts/sync-crd.sh"
    with helm_python.Chart.load(CHART) as chart:
        assert [c["filename"] for c in chart.crds] == ["mcp-gateway/crds/mcpbackends.yaml"]


# ---- the pod ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", VALUE_SETS)
def test_pod_is_hardened(which: str) -> None:
    objs = objects(values_for(which))
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    c = container(objs)
    psc, sc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 65532 and psc["runAsGroup"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert pod["terminationGracePeriodSeconds"] >= 10
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    assert pod["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"]


def test_default_container_contract(default_objs: list[dict]) -> None:
    c = container(default_objs)
    assert c["image"] == "ghcr.io/mcp-gateway/mcp-gateway:0.1.0"
    assert c["args"] == ["serve", "--kubernetes", "--host", "0.0.0.0", "--port", "8900"]
    env = env_of(c)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["MCP_GATEWAY_NAMESPACES"] == ""          # all namespaces
    assert env["MCP_GATEWAY_SELECTOR"] == ""
    assert env["MCP_GATEWAY_ALLOW_COMMANDS"] == "mcp-fixture"
    assert env["MCP_GATEWAY_LEASE_NAME"] == RELEASE
    assert env["MCP_GATEWAY_LOG_FORMAT"] == "json"
    assert "HOME" not in env
    assert c["ports"] == [{"name": "http", "containerPort": 8900, "protocol": "TCP"}]
    assert not by_kind(default_objs, "ConfigMap")
    annotations = one(default_objs, "Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    assert "checksum/config" not in annotations


def test_values_reach_the_container(test_objs: list[dict]) -> None:
    c = container(test_objs)
    env = env_of(c)
    assert env["MCP_GATEWAY_NAMESPACES"] == "team-a,team-b"
    assert env["MCP_GATEWAY_SELECTOR"] == "gateway=public"
    assert env["MCP_GATEWAY_ALLOW_COMMANDS"] == "npx,uvx,mcp-fixture,/usr/local/bin/*"
    assert env["MCP_GATEWAY_LOG"] == "debug" and env["MCP_GATEWAY_LOG_FORMAT"] == "text"
    assert env["GITHUB_TOKEN"] == {"secretKeyRef": {"name": "github-token", "key": "token"}}
    pod = one(test_objs, "Deployment")["spec"]["template"]["spec"]
    assert one(test_objs, "Deployment")["spec"]["replicas"] == 2
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"


def test_node_variant_gets_its_image_and_a_writable_home(test_objs: list[dict]) -> None:
    c = container(test_objs)
    assert c["image"].endswith(":0.1.0-node")
    assert env_of(c)["HOME"] == "/home/mcp"
    pod = one(test_objs, "Deployment")["spec"]["template"]["spec"]
    (home,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/home/mcp"]
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[home["name"]]


def test_image_digest_wins_over_tag() -> None:
    digest = "sha256:" + "a" * 64
    c = container(objects({"image": {"digest": digest, "variant": "node"}}))
    assert c["image"] == f"ghcr.io/mcp-gateway/mcp-gateway@{digest}"


@pytest.mark.parametrize("which", ["default", "test-values"])
def test_allowed_hosts_are_the_service_names(which: str) -> None:
    vals = values_for(which) or {}
    objs = objects(vals, name="gw", namespace="agents")
    svc = one(objs, "Service")["metadata"]["name"]
    hosts = env_of(container(objs))["MCP_GATEWAY_ALLOWED_HOSTS"].split(",")
    domain = vals.get("clusterDomain", "cluster.local")
    assert hosts[:4] == [svc, f"{svc}.agents", f"{svc}.agents.svc", f"{svc}.agents.svc.{domain}"]
    assert set(vals.get("allowedHosts", ["localhost", "127.0.0.1"])) <= set(hosts)
    assert "*" not in hosts


def test_service_exposes_the_gateway(default_objs: list[dict]) -> None:
    svc = one(default_objs, "Service")
    assert svc["metadata"]["name"] == RELEASE
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8900, "targetPort": "http",
                                     "protocol": "TCP", "appProtocol": "http"}]
    pod_labels = one(default_objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    other = one(objects({"service": {"type": "LoadBalancer", "port": 80}}), "Service")
    assert other["spec"]["type"] == "LoadBalancer" and other["spec"]["ports"][0]["port"] == 80


def test_notes_give_the_urls() -> None:
    text = notes()
    assert "http://mcp-gateway.mcp.svc:8900/mcp" in text
    assert "http://mcp-gateway.mcp.svc:8900/sse" in text
    assert "WARNING" not in text
    warned = notes({"stdio": {"allowCommands": ["npx"]}})
    assert "WARNING" in warned and "image.variant=node" in warned


# ---- static config ------------------------------------------------------------------------


def _config_file(objs: list[dict], tmp_path: Path) -> Path:
    cm = one(objs, "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    return path


def test_static_config_is_mounted_and_passed(test_objs: list[dict]) -> None:
    c = container(test_objs)
    assert c["args"][-2:] == ["--config", "/etc/mcp-gateway/config.yaml"]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/mcp-gateway"]
    pod = one(test_objs, "Deployment")["spec"]["template"]["spec"]
    volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    cm = one(test_objs, "ConfigMap")
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    assert yaml.safe_load(cm["data"]["config.yaml"]) == load_values(TEST_VALUES)["config"]


def test_config_change_rolls_the_pods() -> None:
    def checksum(cfg: dict) -> str:
        dep = one(objects({"config": cfg}), "Deployment")
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    a = checksum({"mcpServers": {"fixture": {"command": "mcp-fixture"}}})
    b = checksum({"mcpServers": {"fixture": {"command": "mcp-fixture", "args": ["--name", "x"]}}})
    assert a != b and len(a) == 64
    assert a == checksum({"mcpServers": {"fixture": {"command": "mcp-fixture"}}})


def _gateway_check(path: Path) -> subprocess.CompletedProcess:
    if not GATEWAY_BIN.exists():
        pytest.skip(f"{GATEWAY_BIN} not built")
    return subprocess.run([str(GATEWAY_BIN), "check", "-c", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_static_config_is_accepted_by_the_gateway(test_objs: list[dict], tmp_path: Path) -> None:
    r = _gateway_check(_config_file(test_objs, tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    # ...and the check is a real one: a misspelt key in the same values is refused.
    bad = load_values(TEST_VALUES)
    bad["config"]["mcpServers"]["fixture"]["comand"] = bad["config"]["mcpServers"]["fixture"].pop("command")
    r = _gateway_check(_config_file(objects(bad), tmp_path))
    assert r.returncode != 0 and "comand" in r.stdout + r.stderr


# ---- RBAC ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", VALUE_SETS)
def test_rbac_is_least_privilege(which: str) -> None:
    """Exactly the verbs the gateway's code uses (README.md, RBAC): kube's watcher lists and
    watches McpBackends, status is server-side applied (patch), kube's event Recorder creates
    and patches events.k8s.io Events, kube-lease-manager gets, creates and patches its Lease,
    and the controller reads referenced Secrets and ConfigMaps one by one (get_opt)."""
    objs = objects(values_for(which))
    rules = rules_of(objs, "Role") + rules_of(objs, "ClusterRole")
    assert rules
    for _, r in rules:
        for field in ("verbs", "resources", "apiGroups", "resourceNames"):
            assert "*" not in r.get(field, []), r
        assert not set(r["verbs"]) & {"delete", "deletecollection", "escalate", "bind", "impersonate"}, r
    for resource in ("secrets", "configmaps"):
        found = [r for _, r in rules if resource in r["resources"]]
        assert found and all(r["verbs"] == ["get"] for r in found), found
    verbs = lambda res: {v for _, r in rules if res in r["resources"] for v in r["verbs"]}  # noqa: E731
    assert verbs("mcpbackends") == {"list", "watch"}
    assert verbs("mcpbackends/status") == {"patch"}
    assert verbs("events") == {"create", "patch"}
    assert {g for _, r in rules if "events" in r["resources"] for g in r["apiGroups"]} == {"events.k8s.io"}
    assert verbs("leases") == {"get", "create", "patch"}
    # The Lease is only ever touched in the release namespace, by a Role.
    assert {ns for ns, _ in rules_for(objs, "Role", "leases")} == {NAMESPACE}
    assert not rules_for(objs, "ClusterRole", "leases")
    every_resource = {res for _, r in rules for res in r["resources"]}
    assert every_resource == {"mcpbackends", "mcpbackends/status", "events", "secrets", "configmaps", "leases"}


RBAC_CASES = {
    "default": {},
    "watched": {"watchNamespaces": ["team-a", "team-b"]},
    "references": {"rbac": {"referenceNamespaces": ["team-a", "team-b"]}},
    "named": {"rbac": {"secretNames": ["github-token"], "configMapNames": ["mcp-settings"]}},
}


@pytest.mark.parametrize("case", RBAC_CASES)
def test_rbac_reads_no_secret_cluster_wide(case: str) -> None:
    """Whatever the values, Secrets and ConfigMaps are only ever readable through Roles, in the
    namespaces the gateway serves, bound to the gateway's own service account."""
    vals = RBAC_CASES[case]
    objs = objects(vals)
    for o in by_kind(objs, "ClusterRole"):
        for r in o["rules"]:
            assert r.get("apiGroups") != [""] and not {"secrets", "configmaps"} & set(r["resources"]), \
                f"ClusterRole {o['metadata']['name']} grants {r}"
    for b in by_kind(objs, "ClusterRoleBinding"):
        assert b["roleRef"]["kind"] == "ClusterRole"
        assert b["roleRef"]["name"] in {o["metadata"]["name"] for o in by_kind(objs, "ClusterRole")}
    expected = set(vals.get("watchNamespaces") or vals.get("rbac", {}).get("referenceNamespaces") or [NAMESPACE])
    for resource in ("secrets", "configmaps"):
        assert {ns for ns, _ in rules_for(objs, "Role", resource)} == expected, resource
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in by_kind(objs, "Role")}
    bound = {(b["metadata"]["namespace"], b["roleRef"]["name"]): b for b in by_kind(objs, "RoleBinding")}
    for key, role in roles.items():
        assert key in bound, f"Role {key} is not bound"
        assert bound[key]["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]


def test_rbac_names_narrow_every_reference_rule() -> None:
    """resourceNames narrows get exactly (it cannot narrow list or watch, which the gateway
    never asks for on Secrets and ConfigMaps)."""
    for vals in ({}, {"watchNamespaces": ["team-a"]}):
        objs = objects({**vals, "rbac": {"secretNames": ["a", "b"], "configMapNames": ["c"]}})
        for resource, names in (("secrets", ["a", "b"]), ("configmaps", ["c"])):
            found = rules_for(objs, "Role", resource) + rules_for(objs, "ClusterRole", resource)
            assert found
            for _, r in found:
                assert r["verbs"] == ["get"] and r["resourceNames"] == names, r


def test_rbac_reference_namespaces_only_apply_when_watching_all() -> None:
    objs = objects({"watchNamespaces": ["team-a"], "rbac": {"referenceNamespaces": ["other"]}})
    assert {ns for ns, _ in rules_for(objs, "Role", "secrets")} == {"team-a"}
    assert not [o for o in objs if o["metadata"].get("namespace") == "other"]


def test_rbac_all_namespaces_uses_a_cluster_role(default_objs: list[dict]) -> None:
    assert rules_for(default_objs, "ClusterRole", "mcpbackends")
    assert not rules_for(default_objs, "Role", "mcpbackends")
    assert not any("resourceNames" in r for _, r in rules_of(default_objs, "ClusterRole"))
    # References are read in the release namespace only, by a Role of their own.
    assert {ns for ns, _ in rules_for(default_objs, "Role", "secrets")} == {NAMESPACE}
    assert not rules_for(default_objs, "ClusterRole", "secrets")
    (binding,) = by_kind(default_objs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(default_objs, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]


def test_rbac_watched_namespaces_use_roles(test_objs: list[dict]) -> None:
    assert not by_kind(test_objs, "ClusterRole") and not by_kind(test_objs, "ClusterRoleBinding")
    assert {ns for ns, _ in rules_for(test_objs, "Role", "mcpbackends")} == {"team-a", "team-b"}
    for ns, r in rules_for(test_objs, "Role", "secrets"):
        assert r["resourceNames"] == ["github-token"], (ns, r)
    for ns, r in rules_for(test_objs, "Role", "configmaps"):
        assert r["resourceNames"] == ["mcp-settings"], (ns, r)
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in by_kind(test_objs, "Role")}
    for b in by_kind(test_objs, "RoleBinding"):
        assert (b["metadata"]["namespace"], b["roleRef"]["name"]) in roles
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]
    assert len(by_kind(test_objs, "RoleBinding")) == 3  # team-a, team-b, leader election


def test_rbac_can_be_left_to_the_user() -> None:
    objs = objects({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mine"}})
    assert not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ServiceAccount"} & {o["kind"] for o in objs}
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


# ---- PodDisruptionBudget and ServiceMonitor ----------------------------------------------


@pytest.mark.parametrize(("values", "expected"), [
    ({}, False),
    ({"replicaCount": 2}, True),
    ({"replicaCount": 2, "podDisruptionBudget": {"enabled": False}}, False),
    ({"replicaCount": 1, "podDisruptionBudget": {"enabled": True}}, True),
])
def test_pod_disruption_budget(values: dict, expected: bool) -> None:
    objs = objects(values)
    pdbs = by_kind(objs, "PodDisruptionBudget")
    assert bool(pdbs) == expected
    if pdbs:
        pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert pdbs[0]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert pdbs[0]["spec"]["minAvailable"] == 1


def test_service_monitor_scrapes_metrics(default_objs: list[dict], test_objs: list[dict]) -> None:
    assert not by_kind(default_objs, "ServiceMonitor")
    sm = one(test_objs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    svc = one(test_objs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["path"] == "/metrics"
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}


# ---- deploy/: the chart's default render as plain manifests -------------------------------


def test_deploy_is_the_current_render() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "render-deploy.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def _deploy_objects() -> list[dict]:
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kust["namespace"] == NAMESPACE
    objs: list[dict] = []
    for res in kust["resources"]:
        path = DEPLOY / res
        assert path.is_file(), f"deploy/kustomization.yaml lists {res}, which does not exist"
        objs += load_yaml_docs(path)
    return objs


def _key(o: dict) -> tuple[str, str, str]:
    return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]


def test_deploy_matches_the_chart(default_objs: list[dict]) -> None:
    deployed = _deploy_objects()
    extra = {_key(o) for o in deployed} - {_key(o) for o in default_objs}
    assert extra == {("Namespace", "", NAMESPACE), ("CustomResourceDefinition", "", "mcpbackends.mcpgateway.dev")}
    plain = {_key(o): o for o in deployed}
    for o in default_objs:
        assert _key(o) in plain, f"{_key(o)} rendered by the chart but missing from deploy/"
    for kind in ("Role", "ClusterRole"):
        assert rules_of(deployed, kind) == rules_of(default_objs, kind)
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for o in by_kind(default_objs, kind):
            assert plain[_key(o)]["roleRef"] == o["roleRef"] and plain[_key(o)]["subjects"] == o["subjects"]
    c, d = container(default_objs), container(deployed)
    for field in ("image", "args", "env", "ports", "securityContext", "livenessProbe", "readinessProbe",
                  "volumeMounts", "resources"):
        assert d[field] == c[field], field
    pod_c = one(default_objs, "Deployment")["spec"]["template"]["spec"]
    pod_d = one(deployed, "Deployment")["spec"]["template"]["spec"]
    assert pod_d["securityContext"] == pod_c["securityContext"]
    assert pod_d["volumes"] == pod_c["volumes"]
    assert one(deployed, "Service")["spec"] == one(default_objs, "Service")["spec"]
    for o in deployed:
        labels = o["metadata"].get("labels", {})
        assert "helm.sh/chart" not in labels and labels.get("app.kubernetes.io/managed-by") != "Helm"


def _kubectl() -> str:
    venv = PEERS / "py2" / "bin" / "kubectl"
    found = str(venv) if venv.exists() else shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl not installed (scripts/install-peers.sh puts one in .peers/py2)")
    return found


def test_deploy_builds_with_kustomize() -> None:
    r = subprocess.run([_kubectl(), "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    built = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert {o["kind"] for o in built} >= {"Namespace", "CustomResourceDefinition", "Deployment", "Service",
                                          "ServiceAccount", "ClusterRole", "Role"}
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for o in built:
        if o["kind"] not in cluster_scoped:
            assert o["metadata"]["namespace"] == NAMESPACE, _key(o)
    problems = [p for o in built for p in kube_errors(o, KUBE_VERSIONS[0])]
    assert not problems, "\n".join(problems)

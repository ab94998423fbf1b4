"""The McpBackend CRD (crds/mcpbackends.yaml, generated from the Rust types) and the example
manifests in examples/kubernetes/: every example is admitted by the CRD (its structural
schema and CEL rules, as the API server applies them), and specs the gateway cannot serve are
refused before they reach it."""

from __future__ import annotations

from pathlib import Path

import pytest
from k8s_packaging import (
    EXAMPLES, KUBE_VERSIONS, admit, cel_errors, crd, crd_schema, has_cel_rules, kube_errors,
    load_yaml_docs,
)

API_VERSION = "mcpgateway.dev/v1alpha1"
MANIFESTS = sorted(p for p in EXAMPLES.glob("*.yaml") if p.name != "values-example.yaml")


def backends() -> list[tuple[Path, dict]]:
    return [(p, d) for p in MANIFESTS for d in load_yaml_docs(p) if d["kind"] == "McpBackend"]


def backend(**spec: object) -> dict:
    return {"apiVersion": API_VERSION, "kind": "McpBackend", "metadata": {"name": "t"}, "spec": spec}


# ---- the CRD ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_crd_is_a_valid_custom_resource_definition(version: str) -> None:
    problems = kube_errors(crd(), version)
    assert not problems, "\n".join(problems)


def test_crd_names_and_shape() -> None:
    c = crd()
    spec = c["spec"]
    assert c["metadata"]["name"] == "mcpbackends.mcpgateway.dev"
    assert spec["group"] == "mcpgateway.dev" and spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"]) == ("McpBackend", "mcpbackends")
    assert "mcpb" in names.get("shortNames", [])
    (v,) = [v for v in spec["versions"] if v["name"] == "v1alpha1"]
    assert v["served"] and v["storage"]
    assert "status" in v.get("subresources", {})
    columns = {col["name"].upper() for col in v.get("additionalPrinterColumns", [])}
    assert {"TRANSPORT", "READY", "TOOLS", "AGE"} <= columns
    props = crd_schema()["properties"]["spec"]["properties"]
    assert {"transport", "command", "args", "env", "url", "service", "headers", "prefix", "tools",
            "timeout", "disabled"} <= set(props)
    assert "transport" in crd_schema()["properties"]["spec"].get("required", [])


# ---- the examples -------------------------------------------------------------------------


def test_examples_cover_every_transport_and_reference_kind() -> None:
    found = backends()
    assert found, f"no McpBackend in {EXAMPLES}"
    specs = [d["spec"] for _, d in found]
    assert {s["transport"] for s in specs} == {"stdio", "sse", "streamable-http"}
    assert any(s["transport"] == "sse" and "service" in s for s in specs)
    assert any(s["transport"] == "streamable-http" and "url" in s for s in specs)
    assert any(s.get("command") == "mcp-fixture" for s in specs)
    assert any(s.get("command") == "npx" and "@modelcontextprotocol/server-everything" in " ".join(s["args"])
               for s in specs)
    from_secret = lambda key: any(  # noqa: E731
        "secretKeyRef" in (e.get("valueFrom") or {}) for s in specs for e in s.get(key, []))
    assert from_secret("env") and from_secret("headers")
    for path, d in found:
        assert d["apiVersion"] == API_VERSION, path.name


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_example_is_admitted(path: Path) -> None:
    docs = load_yaml_docs(path)
    assert docs
    for d in docs:
        if d["kind"] == "McpBackend":
            problems = admit(d)
        else:  # the Secrets, Deployments and Services that go with the backends
            problems = kube_errors(d, KUBE_VERSIONS[0])
        assert not problems, f"{path.name}: {d['kind']}/{d['metadata']['name']}:\n" + "\n".join(problems)


def test_secret_references_point_into_the_example() -> None:
    """A Secret named by an example backend ships in the same file, with the key it names."""
    for path, d in backends():
        secrets = {s["metadata"]["name"]: s for s in load_yaml_docs(path) if s["kind"] == "Secret"}
        for key in ("env", "headers"):
            for e in d["spec"].get(key, []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    secret = secrets.get(ref["name"])
                    assert secret, f"{path.name}: {ref['name']} not in the file"
                    assert ref["key"] in secret.get("stringData", secret.get("data", {}))
                    assert "REPLACE" in str(secret.get("stringData")), "placeholder must be marked"


# ---- what the CRD refuses -----------------------------------------------------------------


BAD_SPECS = {
    "no transport": {"command": "mcp-fixture"},
    "unknown transport": {"transport": "websocket", "url": "http://x:1/mcp"},
    "stdio without command": {"transport": "stdio", "args": ["--name", "x"]},
    "sse without url or service": {"transport": "sse", "prefix": "x"},
    "streamable-http without url or service": {"transport": "streamable-http"},
    "args not a list": {"transport": "stdio", "command": "npx", "args": "-y server"},
    "misspelt field": {"transport": "stdio", "comand": "npx"},
    "env without name": {"transport": "stdio", "command": "npx", "env": [{"value": "x"}]},
    "service without port": {"transport": "sse", "service": {"name": "svc"}},
    "url and service both": {"transport": "sse", "url": "http://a:1/sse", "service": {"name": "a", "port": 1}},
    "value and valueFrom both": {"transport": "stdio", "command": "npx", "env": [
        {"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
}
TRANSPORT_MISTAKES = ("stdio without command", "sse without url or service",
                      "streamable-http without url or service")


@pytest.mark.parametrize("name", BAD_SPECS)
def test_crd_refuses_bad_spec(name: str) -> None:
    assert admit(backend(**BAD_SPECS[name])), f"{name}: admitted {BAD_SPECS[name]}"


def test_minimal_good_specs_are_admitted() -> None:
    """The refusals above are about the defect, not about anything else in the object."""
    good = [
        {"transport": "stdio", "command": "mcp-fixture"},
        {"transport": "sse", "url": "http://svc.ns.svc:3001/sse"},
        {"transport": "sse", "service": {"name": "svc", "port": 3001}},
        {"transport": "streamable-http", "url": "https://example.com/mcp"},
        {"transport": "streamable-http", "service": {"name": "svc", "namespace": "other", "port": 80, "path": "/mcp"}},
    ]
    for spec in good:
        assert admit(backend(**spec)) == [], spec


def test_cel_rules_hold_for_examples_and_refuse_transport_mistakes() -> None:
    """When the CRD carries x-kubernetes-validations rules, every example satisfies them, and
    they catch a transport without what it needs (evaluated on their own, whether or not the
    structural schema already refuses the spec)."""
    if not has_cel_rules(crd_schema()):
        pytest.skip("the CRD has no x-kubernetes-validations rules")
    for path, d in backends():
        assert cel_errors(d) == [], path.name
    missed = [name for name in TRANSPORT_MISTAKES if not cel_errors(backend(**BAD_SPECS[name]))]
    assert not missed, f"no CEL rule refuses: {missed}"

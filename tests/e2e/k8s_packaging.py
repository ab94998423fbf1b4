"""Helpers for the Kubernetes packaging tests: rendering the chart with Helm's own Go SDK,
checking objects against the Kubernetes schemas, and admitting McpBackends the way the API
server would (the CRD's structural schema, then its CEL rules)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import celpy
import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mcp-gateway"
DEPLOY = ROOT / "deploy"
EXAMPLES = ROOT / "examples" / "kubernetes"
TEST_VALUES = Path(__file__).resolve().parent / "data" / "values-test.yaml"
CRD_SOURCE = ROOT / "crds" / "mcpbackends.yaml"
CRD_COPIES = (CHART / "crds" / "mcpbackends.yaml", DEPLOY / "crds" / "mcpbackends.yaml")

RELEASE = "mcp-gateway"
NAMESPACE = "mcp"
KUBE_VERSIONS = ("1.33.0", "1.37.0")  # oldest supported and newest known schemas
# Kinds from other projects' CRDs: kubernetes-validate has no schema for them.
FOREIGN_API_GROUPS = ("monitoring.coreos.com/",)

Obj = dict[str, Any]


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE,
           namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text (`helm template`), through the Helm Go SDK."""
    with helm_python.Chart.load(CHART) as chart:
        return chart.render(values, name=name, namespace=namespace, is_install=True)


def objects(values: dict[str, Any] | None = None, **kw: Any) -> list[Obj]:
    """Every object the chart renders (templates only; Helm installs crds/ separately)."""
    out: list[Obj] = []
    for path, text in sorted(render(values, **kw).items()):
        if path.endswith((".yaml", ".yml")):
            out += [d for d in yaml.safe_load_all(text) if d]
    return out


def notes(values: dict[str, Any] | None = None) -> str:
    return next(t for p, t in render(values).items() if p.endswith("NOTES.txt"))


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str) -> Obj:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(objs: list[Obj]) -> Obj:
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "gateway"]
    return c


def env_of(c: Obj) -> dict[str, Any]:
    """Container env as name -> value (or the valueFrom mapping)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def load_yaml_docs(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ---- Kubernetes schemas -------------------------------------------------------------------


def kube_errors(obj: Obj, version: str) -> list[str]:
    """Problems kubernetes-validate (strict: unknown fields are errors) finds in `obj`."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = "/".join(str(p) for p in e.path) or "<root>"
        return [f"{obj['kind']}/{obj['metadata'].get('name')}: {where}: {e.message}"]
    return []


def is_foreign(obj: Obj) -> bool:
    return obj["apiVersion"].startswith(FOREIGN_API_GROUPS)


# ---- the CRD ------------------------------------------------------------------------------


def crd() -> Obj:
    if not CRD_SOURCE.is_file():
        pytest.fail(f"{CRD_SOURCE.relative_to(ROOT)} does not exist yet: generate it with "
                    f"scripts/sync-crd.sh (`mcp-gateway crd`)")
    (doc,) = load_yaml_docs(CRD_SOURCE)
    return doc


def crd_schema() -> Obj:
    (version,) = [v for v in crd()["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


def _closed(schema: Any) -> Any:
    """The schema as the API server applies it with strict field validation (kubectl's
    default): an object schema with `properties` rejects fields it does not list, unless it
    preserves unknown fields."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=1)
def _cel_env() -> celpy.Environment:
    return celpy.Environment()


def _cel_rules(schema: Obj, value: Any, where: str) -> list[str]:
    """Evaluate every x-kubernetes-validations rule that applies to `value` (transition
    rules, which need oldSelf, do not apply on create)."""
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        expr = rule["rule"]
        if "oldSelf" in expr:
            continue
        env = _cel_env()
        try:
            result = env.program(env.compile(expr)).evaluate({"self": celpy.json_to_cel(value)})
        except Exception as e:  # noqa: BLE001 - a rule that cannot run is a finding too
            errors.append(f"{where}: rule {expr!r} could not be evaluated: {e}")
            continue
        if isinstance(result, Exception):
            errors.append(f"{where}: rule {expr!r} failed to evaluate: {result}")
        elif not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            errors.append(f"{where}: {rule.get('message') or expr}")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                errors += _cel_rules(sub, value[key], f"{where}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, v in value.items():
                if key not in (schema.get("properties") or {}):
                    errors += _cel_rules(extra, v, f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errors += _cel_rules(schema["items"], v, f"{where}[{i}]")
    return errors


def has_cel_rules(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "x-kubernetes-validations" in schema or any(has_cel_rules(v) for v in schema.values())
    if isinstance(schema, list):
        return any(has_cel_rules(v) for v in schema)
    return False


def schema_errors(obj: Obj) -> list[str]:
    """What the CRD's openAPIV3Schema (unknown fields rejected) finds wrong with `obj`."""
    schema = copy.deepcopy(crd_schema())
    # The API server handles these itself, whether or not the generated schema lists them.
    implicit = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    schema["properties"] = {**implicit, **schema.get("properties", {})}
    validator = jsonschema.Draft7Validator(_closed(schema))
    return [f"schema: {'/'.join(map(str, e.path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)]


def cel_errors(obj: Obj) -> list[str]:
    """The CRD's x-kubernetes-validations rules that `obj` breaks."""
    return [f"cel: {e}" for e in _cel_rules(crd_schema(), obj, "self")]


def admit(obj: Obj) -> list[str]:
    """Why the API server would refuse to create this McpBackend ([] = accepted): the
    structural schema first, then (on a structurally valid object) the CEL rules."""
    return schema_errors(obj) or cel_errors(obj)

"""The Dockerfile: hadolint-clean, and its images agree with what the chart and the workspace
expect (stage names, non-root UID, port, entrypoint, the binaries the workspace builds)."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import PEERS
from k8s_packaging import CHART, ROOT

DOCKERFILE = ROOT / "Dockerfile"
BINARIES = {"mcp-gateway", "mcp-fixture", "mcp-shell"}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]

    def last(self, op: str) -> str | None:
        found = self.all(op)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, line
            base = re.sub(r"\$\{(\w+)\}", lambda v: args.get(v.group(1), v.group(0)), m.group(1))
            stages.append(Stage(base=base, name=m.group(2) or str(len(stages))))
        elif op == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
        elif stages:
            stages[-1].instructions.append((op, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    _, parsed = parse_dockerfile(DOCKERFILE.read_text())
    return {s.name: s for s in parsed}


def final_stages(stages: dict[str, Stage]) -> list[Stage]:
    """Stages that are images people run: the default (last) one and the node variant."""
    return [stages["node"], list(stages.values())[-1]]


def test_hadolint_finds_nothing() -> None:
    hadolint = PEERS / "py2" / "bin" / "hadolint"
    if not hadolint.exists():
        pytest.fail("hadolint missing: run scripts/install-peers.sh")
    r = subprocess.run([str(hadolint), "--format", "json", str(DOCKERFILE)],
                       capture_output=True, text=True, timeout=60)
    findings = json.loads(r.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert r.returncode == 0, r.stderr
    # An inline `# hadolint ignore=` must say why, on the same or the previous line.
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert re.search(r"ignore=\S+\s+\S", line) or lines[i - 1].lstrip().startswith("#"), line


def test_builder_is_a_locked_release_build(stages: dict[str, Stage]) -> None:
    builder = stages["builder"]
    assert builder.base == "rust:1.95-bookworm"
    (run,) = [r for r in builder.all("RUN") if "cargo build" in r]
    assert "--release" in run and "--locked" in run
    assert "--mount=type=cache" in run and "target=/usr/local/cargo/registry" in run


def test_images_carry_every_workspace_binary(stages: dict[str, Stage]) -> None:
    """The workspace's binaries are exactly the ones the images copy."""
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    names = {b["name"] for b in workspace.get("bin", [])}
    for member in workspace["workspace"]["members"]:
        if member != ".":
            names.add(tomllib.loads((ROOT / member / "Cargo.toml").read_text())["package"]["name"])
    assert names == BINARIES
    (run,) = [r for r in stages["builder"].all("RUN") if "cargo build" in r]
    assert all(f"target/release/{b}" in run for b in BINARIES)
    for stage in final_stages(stages):
        assert any("--from=builder" in c and "/usr/local/bin/" in c for c in stage.all("COPY")), stage.name


def test_runtime_images_are_non_root_and_serve(stages: dict[str, Stage]) -> None:
    runtime = list(stages.values())[-1]
    assert runtime.base.startswith("gcr.io/distroless/cc-debian12") and runtime.base.endswith(":nonroot")
    pod_uid = yaml.safe_load((CHART / "values.yaml").read_text())["podSecurityContext"]["runAsUser"]
    for stage in final_stages(stages):
        assert stage.last("USER") == f"{pod_uid}:{pod_uid}", stage.name
        assert stage.last("EXPOSE") == "8900", stage.name
        assert json.loads(stage.last("ENTRYPOINT")) == ["mcp-gateway"], stage.name
        assert json.loads(stage.last("CMD")) == ["serve", "--host", "0.0.0.0"], stage.name


def test_node_variant_has_node_python_and_uv(stages: dict[str, Stage]) -> None:
    node = stages["node"]
    assert node.base.startswith("python:3") and "bookworm" in node.base
    assert stages["nodejs"].base.startswith("node:22-")
    copies = " ".join(node.all("COPY"))
    assert "--from=nodejs /usr/local/bin/node" in copies
    run = " ".join(node.all("RUN"))
    assert re.search(r'uv==\$\{UV_VERSION\}', run) and "npx-cli.js /usr/local/bin/npx" in run
    assert "--uid 65532" in run
    # the chart mounts its writable HOME where the image expects it
    home = yaml.safe_load((CHART / "values.yaml").read_text())["home"]["path"]
    assert f"HOME={home}" in " ".join(node.all("ENV"))


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {"target", ".peers", ".git"} <= patterns
    # ...but never what the build needs: the embedded default config and the workspace
    for needed in ("src", "servers", "examples", "Cargo.toml", "Cargo.lock"):
        assert needed not in patterns
    assert Path(ROOT / "examples" / "gateway.yaml").is_file()

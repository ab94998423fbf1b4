"""The release workflow (.github/workflows/release.yml): actionlint-clean (with shellcheck over
its `run:` scripts), and it publishes what the chart pulls: every image.variant the chart
accepts, for amd64 and arm64, tagged <version>[-<variant>] under the chart's repository name,
with an SBOM and provenance. The workflow itself only runs on GitHub; this is what can be
checked of it here."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PEERS
from k8s_packaging import CHART, ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"


def _peer(name: str) -> Path:
    path = PEERS / "py2" / "bin" / name
    if not path.exists():
        pytest.fail(f"{name} is not installed (scripts/install-peers.sh puts it in .peers/py2)")
    return path


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    doc = yaml.safe_load(RELEASE.read_text())
    # YAML 1.1 reads the key `on` as a boolean.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def _step(job: dict[str, Any], uses: str) -> dict[str, Any]:
    (step,) = [s for s in job["steps"] if s.get("uses", "").startswith(uses + "@")]
    return step


def test_workflows_pass_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert RELEASE in files
    r = subprocess.run(
        [str(_peer("actionlint")), "-color=false", "-oneline", f"-shellcheck={_peer('shellcheck')}",
         *map(str, files)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert r.returncode == 0, f"actionlint (exit {r.returncode}):\n{r.stdout}{r.stderr}"


def test_actionlint_is_a_real_check(tmp_path: Path) -> None:
    """The same run refuses a mistake in an action's inputs and one in a `run:` script."""
    bad = RELEASE.read_text().replace("sbom: true", "sbmo: true").replace(
        'touch "$RUNNER_TEMP', 'for f in $(ls $RUNNER_TEMP); do echo "$f"; done; touch "$RUNNER_TEMP')
    (tmp_path / "release.yml").write_text(bad)
    r = subprocess.run(
        [str(_peer("actionlint")), "-color=false", "-oneline", f"-shellcheck={_peer('shellcheck')}",
         str(tmp_path / "release.yml")],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode != 0
    assert '"sbmo" is not defined' in r.stdout and "SC2045" in r.stdout, r.stdout


def test_release_runs_on_version_tags_only(release: dict[str, Any]) -> None:
    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert release["permissions"] == {"contents": "read"}
    check = release["jobs"]["version"]["steps"][-1]["run"]
    for source in ("Cargo.toml", "charts/mcp-gateway/Chart.yaml"):
        assert source in check


def test_release_builds_every_chart_variant_for_both_architectures(release: dict[str, Any]) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    variants = schema["properties"]["image"]["properties"]["variant"]["enum"]
    build = release["jobs"]["build"]
    matrix = build["strategy"]["matrix"]
    assert set(matrix["platform"]) == {"linux/amd64", "linux/arm64"}
    assert matrix["variant"] == variants
    # Each platform on a native runner of its own.
    runners = {i["platform"]: i["runner"] for i in matrix["include"]}
    assert runners == {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}
    assert build["runs-on"] == "${{ matrix.runner }}"

    step = _step(build, "docker/build-push-action")["with"]
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (ROOT / "Dockerfile").read_text(),
                        re.MULTILINE | re.IGNORECASE)
    # "" builds the Dockerfile's default (last) stage, named here; any other variant its stage.
    assert step["target"] == "${{ matrix.variant || '" + stages[-1] + "' }}"
    assert all(v in stages for v in variants if v)
    assert step["platforms"] == "${{ matrix.platform }}"
    assert step["sbom"] is True
    assert step["provenance"] == "mode=max"
    assert "push-by-digest=true" in step["outputs"] and "push=true" in step["outputs"]


def test_release_tags_what_the_chart_pulls(release: dict[str, Any]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    owner, name = re.fullmatch(r"ghcr\.io/([^/]+)/([^/]+)", values["image"]["repository"]).groups()
    version_step = release["jobs"]["version"]["steps"][-1]["run"]
    assert f'image=ghcr.io/${{GITHUB_REPOSITORY_OWNER,,}}/{name}"' in version_step
    assert owner == owner.lower()

    merge = release["jobs"]["merge"]
    assert merge["strategy"]["matrix"]["variant"] == release["jobs"]["build"]["strategy"]["matrix"]["variant"]
    meta = _step(merge, "docker/metadata-action")["with"]
    # The chart's tag: <appVersion>, plus "-<variant>" when a variant is set.
    assert "suffix=${{ matrix.variant && format('-{0}', matrix.variant) || '' }}" in meta["flavor"]
    assert "latest=false" in meta["flavor"]
    assert "type=semver,pattern={{version}}" in meta["tags"]
    assert merge["env"]["TAG"] == (
        "${{ needs.version.outputs.version }}${{ matrix.variant && format('-{0}', matrix.variant) || '' }}")
    assert "docker buildx imagetools create" in "\n".join(s.get("run", "") for s in merge["steps"])
    assert _step(merge, "actions/attest-build-provenance")["with"]["push-to-registry"] is True
    assert merge["permissions"]["packages"] == "write"

"""What an operator sees at /metrics after real traffic to server-everything behind the gateway.

Every check compares a scrape taken before some traffic with one taken after, so the numbers
asserted are exactly the traffic the test made. The scraped text must also pass
`promtool check metrics` (unpacked into .peers/bin by scripts/install-peers.sh).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx
import psutil
import pytest
from conftest import PEERS, Endpoint, Recorder, fixture_spec, wait_until
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.gateway_only

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Scrape:
    """One scrape of /metrics, parsed into samples."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = SAMPLE_RE.match(line)
            assert m, f"unparseable sample line: {line!r}"
            labels = dict(LABEL_RE.findall(m.group(2) or ""))
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def value(self, name: str, **labels: str) -> float:
        """The sample `name` whose labels include `labels`; 0 when there is none (yet)."""
        found = [v for n, ls, v in self.samples if n == name and all(ls.get(k) == w for k, w in labels.items())]
        assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
        return found[0] if found else 0.0

    def total(self, name: str, **labels: str) -> float:
        return sum(v for n, ls, v in self.samples if n == name and all(ls.get(k) == w for k, w in labels.items()))

    def label_values(self, name: str, label: str) -> set[str]:
        return {ls[label] for n, ls, _ in self.samples if n == name and label in ls}


def scrape(ep: Endpoint, accept: str | None = None) -> Scrape:
    headers = {"accept": accept} if accept else {}
    r = httpx.get(ep.url("/metrics"), headers=headers, timeout=10)
    r.raise_for_status()
    return Scrape(r.text)


@pytest.fixture(scope="module")
def gw(everything, module_gateway) -> Endpoint:
    config = {
        "mcpServers": {
            "ev": everything.stdio_spec(),
            "broken": {"command": "/nonexistent/e2e-observability-missing"},
        }
    }
    return module_gateway(config, expect_down=("broken",), probe={"ev": ["echo"]})


async def test_tool_calls_are_counted_exactly(gw: Endpoint):
    series = dict(method="tools/call", backend="ev", tool="ev__echo", outcome="ok")
    before = scrape(gw)
    async with gw.connect("mcp") as c:
        for i in range(3):
            await c.call_tool("ev__echo", {"message": f"m{i}"})
    after = scrape(gw)
    assert after.value("mcp_gateway_requests_total", **series) - before.value("mcp_gateway_requests_total", **series) == 3
    hist = "mcp_gateway_request_duration_seconds_count"
    assert after.value(hist, **series) - before.value(hist, **series) == 3
    # Every call landed in a finite bucket below the 10 s bound, and the +Inf bucket holds all.
    bucket = "mcp_gateway_request_duration_seconds_bucket"
    assert after.value(bucket, le="+Inf", **series) == after.value(hist, **series)
    assert after.value(bucket, le="10.0", **series) == after.value(hist, **series)
    upstream = "mcp_gateway_backend_request_duration_seconds_count"
    assert after.value(upstream, backend="ev", method="tools/call") - before.value(
        upstream, backend="ev", method="tools/call") == 3
    # The gateway answered initialize and the lists itself: no backend label.
    assert after.value("mcp_gateway_requests_total", method="initialize", backend="", tool="", outcome="ok") >= 1


async def test_failures_are_counted_by_outcome(gw: Endpoint):
    before = scrape(gw)
    async with gw.connect("mcp") as c:
        with pytest.raises(MCPError):
            await c.call_tool("ev__no-such-tool-e2e", {})
        with pytest.raises(MCPError):
            await c.call_tool("broken__echo", {"message": "x"})
        try:
            r = await c.call_tool("ev__get-sum", {"a": "not a number", "b": 1})
            assert r.is_error
        except MCPError:
            pass
    after = scrape(gw)
    unknown = dict(method="tools/call", backend="", tool="(unknown)", outcome="error")
    assert after.value("mcp_gateway_requests_total", **unknown) - before.value(
        "mcp_gateway_requests_total", **unknown) == 2, "made-up names fold into one series"
    assert "ev__no-such-tool-e2e" not in after.text and "broken__echo" not in after.text
    failed = sum(
        after.value("mcp_gateway_requests_total", method="tools/call", backend="ev", tool="ev__get-sum", outcome=o)
        - before.value("mcp_gateway_requests_total", method="tools/call", backend="ev", tool="ev__get-sum", outcome=o)
        for o in ("error", "tool_error")
    )
    assert failed == 1
    assert after.value("mcp_gateway_requests_total", method="tools/call", backend="ev", tool="ev__get-sum",
                       outcome="ok") == before.value("mcp_gateway_requests_total", method="tools/call",
                                                     backend="ev", tool="ev__get-sum", outcome="ok")


async def test_sessions_go_up_and_down(gw: Endpoint):
    def open_now(transport: str) -> float:
        return scrape(gw).value("mcp_gateway_sessions_open", transport=transport)

    for frontend, transport in (("mcp", "streamable-http"), ("sse", "sse")):
        before = scrape(gw)
        async with gw.connect(frontend) as c:
            await c.list_tools()
            during = scrape(gw)
            assert during.value("mcp_gateway_sessions_open", transport=transport) == \
                before.value("mcp_gateway_sessions_open", transport=transport) + 1
            assert during.value("mcp_gateway_sessions_opened_total", transport=transport) == \
                before.value("mcp_gateway_sessions_opened_total", transport=transport) + 1
        base = before.value("mcp_gateway_sessions_open", transport=transport)
        wait_until(lambda: open_now(transport) == base, 15, f"the {transport} session to be counted closed")
        after = scrape(gw)
        assert after.value("mcp_gateway_sessions_closed_total", transport=transport) == \
            before.value("mcp_gateway_sessions_closed_total", transport=transport) + 1


async def test_backend_state_and_catalog_sizes(gw: Endpoint):
    async with gw.connect("mcp") as c:
        tools = [t.name for t in (await c.list_tools()).tools]
        prompts = [p.name for p in (await c.list_prompts()).prompts]
    s = scrape(gw)
    assert s.value("mcp_gateway_backend_up", backend="ev", transport="stdio") == 1
    assert s.value("mcp_gateway_backend_up", backend="broken", transport="stdio") == 0
    assert s.value("mcp_gateway_backend_state", backend="ev", state="ready") == 1
    assert s.value("mcp_gateway_backend_state", backend="broken", state="down") == 1
    assert s.total("mcp_gateway_backend_state", backend="broken") == 1, "exactly one state is 1"
    ev_tools = [t for t in tools if t.startswith("ev__")]
    assert s.value("mcp_gateway_backend_entries", backend="ev", kind="tools") == len(ev_tools) > 0
    assert s.value("mcp_gateway_backend_entries", backend="ev", kind="prompts") == len(prompts)
    assert s.value("mcp_gateway_catalog_entries", kind="tools") == len(tools)
    assert s.value("mcp_gateway_build_info") == 1


async def test_progress_notifications_are_counted(gw: Endpoint):
    before = scrape(gw)
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with gw.connect("mcp", Recorder()) as c:
        await c.call_tool("ev__trigger-long-running-operation", {"duration": 0.4, "steps": 2},
                          progress_callback=on_progress)
    after = scrape(gw)
    sent = after.value("mcp_gateway_notifications_sent_total", kind="progress") - before.value(
        "mcp_gateway_notifications_sent_total", kind="progress")
    assert sent == len(seen) == 2


def test_restarts_are_counted(everything, gateway):
    ep = gateway({"mcpServers": {"ev": everything.stdio_spec()}}, probe={"ev": ["echo"]})
    assert scrape(ep).value("mcp_gateway_backend_restarts_total", backend="ev") == 0
    gw_proc = psutil.Process(ep.process.pid)
    backend = [p for p in gw_proc.children(recursive=True) if "index.js" in " ".join(p.cmdline())]
    assert backend, "the stdio backend runs as the gateway's child"
    for p in backend:
        p.kill()
    wait_until(lambda: scrape(ep).value("mcp_gateway_backend_restarts_total", backend="ev") == 1, 30,
               "the restart to be counted")
    wait_until(lambda: scrape(ep).value("mcp_gateway_backend_up", backend="ev", transport="stdio") == 1, 60,
               "the backend to be up again")


async def test_a_backend_dying_mid_call_is_counted_as_down(peers, gateway):
    ep = gateway({"mcpServers": {"fx": fixture_spec(peers)}}, probe={"fx": ["crash"]})
    async with ep.connect("mcp") as c:
        with pytest.raises(MCPError):
            await c.call_tool("fx__crash", {})
    s = scrape(ep)
    assert s.value("mcp_gateway_requests_total", method="tools/call", backend="fx", tool="fx__crash",
                   outcome="backend_down") == 1
    assert s.value("mcp_gateway_backend_requests_in_flight", backend="fx") == 0
    wait_until(lambda: scrape(ep).value("mcp_gateway_backend_restarts_total", backend="fx") == 1, 30,
               "the restart to be counted")


def test_metrics_skip_the_host_guard_and_speak_both_formats(gw: Endpoint):
    evil = {"host": "evil.example:1234"}
    assert httpx.get(gw.url("/metrics"), headers=evil, timeout=10).status_code == 200
    assert httpx.post(gw.url("/mcp"), headers=evil, json={}, timeout=10).status_code == 403

    plain = httpx.get(gw.url("/metrics"), timeout=10)
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in plain.text
    om = httpx.get(gw.url("/metrics"), headers={"accept": "application/openmetrics-text; version=1.0.0"},
                   timeout=10)
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    assert "# TYPE mcp_gateway_requests counter" in om.text


async def test_labels_stay_bounded(gw: Endpoint):
    async with gw.connect("mcp") as c:
        await c.list_tools()
    s = scrape(gw)
    methods = s.label_values("mcp_gateway_requests_total", "method")
    assert methods <= {"initialize", "ping", "tools/list", "tools/call", "prompts/list", "prompts/get",
                       "resources/list", "resources/templates/list", "resources/read", "resources/subscribe",
                       "resources/unsubscribe", "completion/complete", "logging/setLevel", "server/discover",
                       "(other)"}, methods
    for name, labels, _ in s.samples:
        assert "session" not in " ".join(labels), f"{name} has a session label: {labels}"
        for value in labels.values():
            assert len(value) <= 128, f"{name} carries a long label value: {value[:60]}..."


async def test_promtool_accepts_the_exposition(gw: Endpoint):
    async with gw.connect("mcp") as c:
        await c.call_tool("ev__echo", {"message": "for promtool"})
    text = scrape(gw).text
    peer = PEERS / "bin" / "promtool"
    promtool = str(peer) if peer.exists() else shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (scripts/install-peers.sh puts it in .peers/bin)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", \
        f"promtool check metrics (exit {r.returncode}):\n{r.stdout}{r.stderr}"

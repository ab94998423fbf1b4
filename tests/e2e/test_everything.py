"""server-everything behind the gateway: backend transport x frontend transport.

Backends: stdio (the gateway spawns it), sse, streamable-http (one shared server-everything
process each). Frontends: /mcp (streamable HTTP), /sse (legacy SSE), stdio (the gateway launched
as a stdio server by the client). With E2E_DIRECT=1 only the combinations where the client can
speak the backend's own transport run (stdio-stdio, sse-sse, streamable-http-mcp).
"""

from __future__ import annotations

import base64
import time
import uuid
import warnings

import anyio
import mcp_types as types
import pytest
from conftest import (
    BACKEND_TRANSPORTS,
    SAMPLE_TEXT,
    Endpoint,
    Recorder,
    elicitation_callback_for,
    sampling_callback_for,
    text_of,
)
from mcp.shared.exceptions import MCPError

BACKEND = "ev"

# Tools server-everything always registers, and those it adds when the client can
# sample / elicit (registered after initialize, announced with tools/list_changed).
EVERYTHING_TOOLS = {
    "echo", "get-annotated-message", "get-env", "get-resource-links", "get-resource-reference",
    "get-structured-content", "get-sum", "get-tiny-image", "gzip-file-as-resource",
    "toggle-simulated-logging", "toggle-subscriber-updates", "trigger-long-running-operation",
}
EVERYTHING_PROMPTS = {"simple-prompt", "args-prompt", "completable-prompt", "resource-prompt"}
STATIC_DOC = "demo://resource/static/document/features.md"
TEXT_TEMPLATE = "demo://resource/dynamic/text/{resourceId}"


@pytest.fixture(scope="module", params=BACKEND_TRANSPORTS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def ev(backend: str, everything, module_gateway) -> Endpoint:
    """One gateway per backend transport, shared by every frontend and test of this module."""
    config = {"mcpServers": {BACKEND: everything.spec(backend)}}
    return module_gateway(config, probe={BACKEND: ["echo"]})


@pytest.fixture
def target(ev: Endpoint, frontend: str) -> tuple[Endpoint, str]:
    if frontend not in ev.frontends:
        pytest.skip(f"direct mode: a {ev.frontends[0]} peer cannot be reached over {frontend}")
    return ev, frontend


# ---------------------------------------------------------------------------------------------


async def test_list_tools(target):
    ep, fe = target
    async with ep.connect(fe) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    expected = {ep.name(t) for t in EVERYTHING_TOOLS}
    assert expected <= set(tools), f"missing: {sorted(expected - set(tools))}"
    if not ep.direct:
        stray = [n for n in tools if not n.startswith(ep.name(""))]
        assert not stray, f"tools without the backend prefix: {stray}"
    echo = tools[ep.name("echo")]
    assert echo.description == "Echoes back the input string"
    assert echo.input_schema["properties"]["message"]["type"] == "string"
    assert echo.input_schema.get("required") == ["message"]


async def test_call_echo_and_sum(target):
    ep, fe = target
    async with ep.connect(fe) as c:
        r = await c.call_tool(ep.name("echo"), {"message": "hello gateway ✓"})
        assert not r.is_error
        assert text_of(r) == "Echo: hello gateway ✓"
        r = await c.call_tool(ep.name("get-sum"), {"a": 19, "b": 23.5})
        assert text_of(r) == "The sum of 19 and 23.5 is 42.5."
        # structuredContent and annotations must pass through untouched
        r = await c.call_tool(ep.name("get-structured-content"), {"location": "New York"})
        assert r.structured_content is not None and "temperature" in r.structured_content
        # binary content
        r = await c.call_tool(ep.name("get-tiny-image"), {})
        images = [x for x in r.content if x.type == "image"]
        assert images and images[0].mime_type == "image/png" and base64.b64decode(images[0].data)[:4] == b"\x89PNG"


async def test_tool_error_is_a_result(target):
    """A tool that rejects its arguments answers with isError (or an error): never a hang."""
    ep, fe = target
    async with ep.connect(fe) as c:
        try:
            r = await c.call_tool(ep.name("get-sum"), {"a": "not a number", "b": 1})
        except MCPError as e:  # some servers reject invalid params as a JSON-RPC error
            assert e.code in (-32602, -32603)
        else:
            assert r.is_error


async def test_prompts(target):
    ep, fe = target
    async with ep.connect(fe) as c:
        prompts = {p.name: p for p in (await c.list_prompts()).prompts}
        assert {ep.name(p) for p in EVERYTHING_PROMPTS} <= set(prompts)
        args = {a.name: a for a in prompts[ep.name("args-prompt")].arguments}
        assert args["city"].required and not args["state"].required

        r = await c.get_prompt(ep.name("args-prompt"), {"city": "Paris", "state": "TX"})
        assert r.messages[0].role == "user"
        assert r.messages[0].content.text == "What's weather in Paris, TX?"

        r = await c.get_prompt(ep.name("simple-prompt"))
        assert r.messages[0].content.text == "This is a simple prompt without arguments."

        # a prompt embedding a resource: the URI inside is the backend's, not renamed
        r = await c.get_prompt(ep.name("resource-prompt"), {"resourceType": "Text", "resourceId": "3"})
        embedded = [m.content for m in r.messages if m.content.type == "resource"]
        assert embedded and embedded[0].resource.uri == "demo://resource/dynamic/text/3"


async def test_resources_and_templates(target):
    ep, fe = target
    async with ep.connect(fe) as c:
        resources = {str(r.uri): r for r in (await c.list_resources()).resources}
        assert STATIC_DOC in resources, sorted(resources)
        assert resources[STATIC_DOC].mime_type == "text/markdown"
        r = await c.read_resource(STATIC_DOC)
        assert r.contents[0].uri == STATIC_DOC and len(r.contents[0].text) > 100

        templates = {t.uri_template: t for t in (await c.list_resource_templates()).resource_templates}
        assert TEXT_TEMPLATE in templates, sorted(templates)
        r = await c.read_resource("demo://resource/dynamic/text/5")
        assert r.contents[0].text.startswith("Resource 5: This is a plaintext resource")
        r = await c.read_resource("demo://resource/dynamic/blob/6")
        assert base64.b64decode(r.contents[0].blob).startswith(b"Resource 6: This is a base64 blob")

        with pytest.raises(MCPError):
            await c.read_resource("demo://resource/dynamic/text/not-a-number")


async def test_completion(target):
    ep, fe = target
    async with ep.connect(fe) as c:
        ref = types.PromptReference(type="ref/prompt", name=ep.name("completable-prompt"))
        r = await c.complete(ref, {"name": "department", "value": "Eng"})
        assert r.completion.values == ["Engineering"]
        # the second argument depends on the first, passed as context
        r = await c.complete(ref, {"name": "name", "value": "A"}, context_arguments={"department": "Engineering"})
        assert r.completion.values == ["Alice"]

        tref = types.ResourceTemplateReference(type="ref/resource", uri=TEXT_TEMPLATE)
        r = await c.complete(tref, {"name": "resourceId", "value": "42"})
        assert r.completion.values == ["42"]


async def test_progress(target):
    ep, fe = target
    rec = Recorder()
    events: list[tuple[str, float]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append(("progress", progress, total))

    async with ep.connect(fe, rec) as c:
        r = await c.call_tool(ep.name("trigger-long-running-operation"), {"duration": 1.2, "steps": 3},
                              progress_callback=on_progress)
        events.append(("result", text_of(r), None))
        assert "Long running operation completed" in text_of(r)
        # callbacks fire only for notifications whose token is this request's token
        progress = [e for e in events if e[0] == "progress"]
        assert progress, f"no progress notification reached the client: {rec.notifications}"
        assert events.index(progress[0]) < events.index(events[-1])
        assert progress[0][2] == 3.0
        assert sorted(p[1] for p in progress) == [p[1] for p in progress], "progress went backwards"

        # an explicit, client-chosen token must come back verbatim
        token = f"e2e-token-{uuid.uuid4().hex[:8]}"
        r = await c.call_tool(ep.name("trigger-long-running-operation"), {"duration": 0.6, "steps": 2},
                              meta={"progressToken": token})
        assert "completed" in text_of(r)
        await rec.wait_for("notifications/progress", lambda n: n.params.progress_token == token, timeout=5)
        tokens = {n.params.progress_token for n in rec.of_method("notifications/progress")}
        assert token in tokens


async def test_cancel_keeps_serving(target):
    ep, fe = target
    async with ep.connect(fe) as c:
        started = time.monotonic()
        with anyio.move_on_after(0.8) as scope:
            await c.call_tool(ep.name("trigger-long-running-operation"), {"duration": 2, "steps": 2})
        assert scope.cancelled_caught, "the long call finished before it could be cancelled"
        assert time.monotonic() - started < 2

        with anyio.fail_after(10):
            r = await c.call_tool(ep.name("echo"), {"message": "still here"})
        assert text_of(r) == "Echo: still here"
        # Outlive the cancelled operation: its late response (if the backend sends one) must be
        # dropped, not delivered as the answer to another request.
        r = await c.call_tool(ep.name("trigger-long-running-operation"), {"duration": 1.6, "steps": 1})
        assert text_of(r) == "Long running operation completed. Duration: 1.6 seconds, Steps: 1."
        r = await c.call_tool(ep.name("echo"), {"message": "after"})
        assert text_of(r) == "Echo: after"

    # and a brand-new session works too
    async with ep.connect(fe) as c:
        r = await c.call_tool(ep.name("get-sum"), {"a": 1, "b": 2})
        assert text_of(r) == "The sum of 1 and 2 is 3."


async def test_sampling_round_trip(target):
    ep, fe = target
    rec = Recorder()
    async with ep.connect(fe, rec, sampling_callback=sampling_callback_for(rec)) as c:
        name = ep.name("trigger-sampling-request")
        await _wait_listed(c, name)
        r = await c.call_tool(name, {"prompt": "capital of France?", "maxTokens": 33})
    assert not r.is_error, text_of(r)
    assert SAMPLE_TEXT in text_of(r)
    assert len(rec.sampling) == 1
    req = rec.sampling[0]
    assert req.max_tokens == 33
    assert "capital of France?" in req.messages[0].content.text


async def test_elicitation_round_trip(target):
    ep, fe = target
    rec = Recorder()
    answer = {"name": "Ada Lovelace", "check": True, "integer": 7}
    async with ep.connect(fe, rec, elicitation_callback=elicitation_callback_for(rec, answer)) as c:
        name = ep.name("trigger-elicitation-request")
        await _wait_listed(c, name)
        r = await c.call_tool(name, {})
    out = text_of(r)
    assert "User provided the requested information" in out, out
    assert "- Name: Ada Lovelace" in out and "- Favorite Integer: 7" in out
    assert len(rec.elicitation) == 1
    assert rec.elicitation[0].message.startswith("Please provide inputs")


@pytest.mark.notifications
async def test_logging_notifications(target):
    ep, fe = target
    rec = Recorder()
    async with ep.connect(fe, rec) as c:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await c.set_logging_level("debug")
        await _toggle(c, ep.name("toggle-simulated-logging"), on=True)
        try:
            await _await(lambda: rec.logs, 10, "a notifications/message log entry")
        finally:
            await _toggle(c, ep.name("toggle-simulated-logging"), on=False)
    entry = rec.logs[0]
    assert entry.level in ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
    assert "message" in str(entry.data).lower()


@pytest.mark.notifications
async def test_resource_subscription_updates(target):
    ep, fe = target
    rec = Recorder()
    async with ep.connect(fe, rec) as c:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await c.subscribe_resource(STATIC_DOC)
        await _toggle(c, ep.name("toggle-subscriber-updates"), on=True)
        try:
            n = await rec.wait_for("notifications/resources/updated", lambda n: str(n.params.uri) == STATIC_DOC,
                                   timeout=10)
            assert str(n.params.uri) == STATIC_DOC
        finally:
            await _toggle(c, ep.name("toggle-subscriber-updates"), on=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await c.unsubscribe_resource(STATIC_DOC)


@pytest.mark.notifications
async def test_resource_list_changed(target):
    """A tool that registers a new resource: the client hears resources/list_changed and the new
    resource is listed and readable (through the gateway: its catalog refreshed)."""
    ep, fe = target
    rec = Recorder()
    fname = f"e2e-{uuid.uuid4().hex[:8]}.txt.gz"
    payload = base64.b64encode(b"hello from the e2e suite\n" * 20).decode()
    uri = f"demo://resource/session/{fname}"
    async with ep.connect(fe, rec) as c:
        r = await c.call_tool(ep.name("gzip-file-as-resource"),
                              {"name": fname, "data": f"data:text/plain;base64,{payload}",
                               "outputType": "resourceLink"})
        assert not r.is_error, text_of(r)
        links = [x for x in r.content if x.type == "resource_link"]
        assert links and str(links[0].uri) == uri
        await rec.wait_for("notifications/resources/list_changed", timeout=10)

        async def listed() -> bool:
            return uri in {str(x.uri) for x in (await c.list_resources()).resources}

        deadline = time.monotonic() + 10
        while not await listed():
            assert time.monotonic() < deadline, f"{uri} never appeared in resources/list"
            await anyio.sleep(0.1)
        r = await c.read_resource(uri)
        assert r.contents[0].mime_type == "application/gzip"


# ---------------------------------------------------------------------------------------------


async def _await(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(0.05)


async def _wait_listed(c, name: str, timeout: float = 10) -> None:
    """Capability-dependent tools are registered right after initialize; wait until listed."""
    deadline = time.monotonic() + timeout
    while True:
        names = [t.name for t in (await c.list_tools()).tools]
        if name in names:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{name} never listed (the client's sampling/elicitation capability must "
                                 f"reach the backend); listed: {names}")
        await anyio.sleep(0.1)


async def _toggle(c, tool: str, *, on: bool) -> None:
    """server-everything's toggles flip per-session state; drive them to a known position."""
    for _ in range(2):
        text = text_of(await c.call_tool(tool, {}))
        if text.startswith("Started" if on else "Stopped"):
            return
    raise AssertionError(f"{tool} did not switch {'on' if on else 'off'}: {text}")

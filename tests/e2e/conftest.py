"""Fixtures for the end-to-end suite: real MCP peers in front of and behind the gateway.

Two targets, chosen with E2E_DIRECT:

* default        - tests talk to target/debug/mcp-gateway, which fronts real backends
                   (server-everything over stdio / SSE / streamable HTTP, and our fixture server).
* E2E_DIRECT=1   - the "gateway" fixture hands back the single configured backend itself, so the
                   same tests run straight against the peer (names then carry no prefix). Tests
                   that only make sense with a gateway are marked ``gateway_only`` and skipped.

Other knobs:
  E2E_GATEWAY_BIN        gateway binary (default $CARGO_TARGET_DIR/debug/mcp-gateway, else
                         <repo>/target/debug/mcp-gateway)
  E2E_GATEWAY_LOG_LEVEL  --log-level passed to the gateway (default debug)
  E2E_CLIENT_MODE        mcp 2.x Client(mode=...): auto (default) or legacy
  E2E_READY_TIMEOUT      seconds to wait for a gateway's backends (default 60)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import psutil
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client

# --------------------------------------------------------------------------------------------
# Paths and switches
# --------------------------------------------------------------------------------------------

E2E_DIR = Path(__file__).resolve().parent
ROOT = E2E_DIR.parents[1]
PEERS = ROOT / ".peers"
NODE_DIR = PEERS / "node"
EVERYTHING_JS = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
PY1 = PEERS / "py1" / "bin" / "python"
PY2 = PEERS / "py2" / "bin" / "python"
FIXTURE_SERVER = E2E_DIR / "fixture_server.py"
PY1_CLIENT = E2E_DIR / "clients" / "py1_client.py"
TS_CLIENT = E2E_DIR / "clients" / "ts_client.mjs"

DIRECT = os.environ.get("E2E_DIRECT", "") not in ("", "0", "false", "no")
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
GATEWAY_BIN = Path(os.environ.get("E2E_GATEWAY_BIN", TARGET_DIR / "debug" / "mcp-gateway"))
GATEWAY_LOG_LEVEL = os.environ.get("E2E_GATEWAY_LOG_LEVEL", "debug")
CLIENT_MODE = os.environ.get("E2E_CLIENT_MODE", "auto")
READY_TIMEOUT = float(os.environ.get("E2E_READY_TIMEOUT", "60"))
RUN_TAG_VAR = "E2E_RUN_TAG"

BACKEND_TRANSPORTS = ("stdio", "sse", "streamable-http")
FRONTENDS = ("mcp", "sse", "stdio")

LISTENING_RE = re.compile(r"listening on (http://[0-9A-Za-z.\-\[\]:]+?:(\d+))\b")

# Every live gateway / peer log, so a failing test report can show their tails.
_LIVE_LOGS: dict[str, Path] = {}


def node_bin() -> str:
    node = shutil.which("node")
    if not node:
        pytest.fail("node is not on PATH (needed for server-everything and the TypeScript client)")
    return node


# --------------------------------------------------------------------------------------------
# pytest plumbing
# --------------------------------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> list[str]:
    target = "DIRECT (peers without the gateway)" if DIRECT else f"gateway {GATEWAY_BIN}"
    return [f"e2e target: {target}; client mode: {CLIENT_MODE}"]


DIRECT_PAIRS = {("stdio", "stdio"), ("sse", "sse"), ("streamable-http", "mcp")}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_direct = pytest.mark.skip(reason="needs the gateway (E2E_DIRECT=1 runs against peers directly)")
    if DIRECT:
        # Without a gateway a client can only speak the backend's own transport: drop the
        # backend x frontend combinations that cannot exist.
        keep, drop = [], []
        for item in items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            if "backend" in params and "frontend" in params and (params["backend"], params["frontend"]) not in DIRECT_PAIRS:
                drop.append(item)
            else:
                keep.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    for item in items:
        if DIRECT and "gateway_only" in item.keywords:
            item.add_marker(skip_direct)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _LIVE_LOGS:
        for title, path in list(_LIVE_LOGS.items()):
            rep.sections.append((f"{title} (last 80 lines of {path})", tail(path, 80)))


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `pred` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep polling, report the last one
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


async def await_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await anyio.sleep(interval)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def kill_tagged(tag: str) -> list[str]:
    """Kill every process whose environment carries RUN_TAG_VAR=tag; return what was killed."""
    killed: list[str] = []
    me = os.getpid()
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.pid == me:
            continue
        try:
            if p.environ().get(RUN_TAG_VAR) != tag:
                continue
            killed.append(f"{p.pid}: {' '.join(p.info.get('cmdline') or [])[:200]}")
            p.kill()
        except (psutil.Error, OSError):
            continue
    return killed


def tagged_alive(tag: str) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.environ().get(RUN_TAG_VAR) == tag and p.info.get("status") != psutil.STATUS_ZOMBIE:
                found.append(f"{p.pid}: {' '.join(p.info.get('cmdline') or [])[:200]}")
        except (psutil.Error, OSError):
            continue
    return found


class ManagedProcess:
    """A subprocess in its own process group, with output in a log file."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, report: bool = True) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self.tag = uuid.uuid4().hex
        full_env = dict(os.environ if env is None else env)
        full_env[RUN_TAG_VAR] = self.tag
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=full_env, cwd=cwd, start_new_session=True,
        )
        if report:
            _LIVE_LOGS[name] = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return tail(self.log_path, 80)

    def ensure_alive(self, what: str = "") -> None:
        if not self.alive():
            raise RuntimeError(
                f"{self.name} exited with code {self.proc.returncode}{' ' + what if what else ''}; "
                f"output:\n{self.output()}"
            )

    def stop(self, grace: float = 10.0) -> tuple[int | None, bool, list[str]]:
        """SIGTERM the process, SIGKILL its group after `grace`. Returns (exit code, exited in time, leftovers)."""
        in_time = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                in_time = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        leftovers = tagged_alive(self.tag)
        kill_tagged(self.tag)
        self._log.close()
        _LIVE_LOGS.pop(self.name, None)
        return self.proc.returncode, in_time, leftovers


# --------------------------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peers:
    root: Path = ROOT
    node_dir: Path = NODE_DIR
    everything_js: Path = EVERYTHING_JS
    py1: Path = PY1
    py2: Path = PY2
    fixture_server: Path = FIXTURE_SERVER
    py1_client: Path = PY1_CLIENT
    ts_client: Path = TS_CLIENT


@pytest.fixture(scope="session")
def peers() -> Peers:
    missing = [p for p in (EVERYTHING_JS, PY1, PY2) if not p.exists()]
    if missing:
        pytest.fail(f"peers missing ({', '.join(map(str, missing))}); run scripts/install-peers.sh")
    return Peers()


EVERYTHING_ENV = {
    # The gzip tool may fetch URLs; keep it off the network (tests only pass data: URIs).
    "GZIP_ALLOWED_DOMAINS": "localhost",
}


class Everything:
    """server-everything in its three modes. HTTP modes are started once per session and shared."""

    MODE_ARG = {"stdio": "stdio", "sse": "sse", "streamable-http": "streamableHttp"}
    PATH = {"sse": "/sse", "streamable-http": "/mcp"}

    def __init__(self, peers: Peers, log_dir: Path) -> None:
        self.peers = peers
        self.log_dir = log_dir
        self._http: dict[str, tuple[ManagedProcess, int]] = {}

    def stdio_spec(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "command": node_bin(),
            "args": [str(self.peers.everything_js), "stdio"],
            "env": {**EVERYTHING_ENV, **(env or {})},
        }

    def url(self, transport: str) -> str:
        _, port = self._start_http(transport)
        return f"http://127.0.0.1:{port}{self.PATH[transport]}"

    def spec(self, transport: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        """A gateway `mcpServers` entry reaching server-everything over `transport`."""
        if transport == "stdio":
            return self.stdio_spec(env)
        if env:
            raise ValueError("env only applies to stdio backends (HTTP instances are shared)")
        kind = "sse" if transport == "sse" else "streamable-http"
        return {"type": kind, "url": self.url(transport)}

    def _start_http(self, transport: str) -> tuple[ManagedProcess, int]:
        if transport in self._http and self._http[transport][0].alive():
            return self._http[transport]
        last_err = ""
        for attempt in range(3):  # a freshly picked free port can be taken before node binds it
            port = free_port()
            mp = ManagedProcess(
                f"server-everything {transport}",
                [node_bin(), str(self.peers.everything_js), self.MODE_ARG[transport]],
                self.log_dir / f"everything-{transport}-{attempt}.log",
                env={**os.environ, **EVERYTHING_ENV, "PORT": str(port)}, report=False,
            )
            try:
                wait_until(lambda: port_open(port) or (not mp.alive() and "exited"), 30,
                           f"server-everything {transport} on port {port}")
            except TimeoutError as e:
                last_err = str(e)
                mp.stop()
                continue
            if mp.alive() and port_open(port):
                self._http[transport] = (mp, port)
                return mp, port
            last_err = mp.output()
            mp.stop()
        pytest.fail(f"cannot start server-everything {transport}: {last_err}")

    def close(self) -> None:
        for mp, _ in self._http.values():
            mp.stop()
        self._http.clear()


@pytest.fixture(scope="session")
def everything(peers: Peers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Everything]:
    ev = Everything(peers, tmp_path_factory.mktemp("everything"))
    yield ev
    ev.close()


def fixture_spec(peers: Peers, log_path: Path | None = None, ident: str = "fixture") -> dict[str, Any]:
    env = {"FIXTURE_ID": ident, "PYTHONUNBUFFERED": "1"}
    if log_path is not None:
        env["FIXTURE_LOG"] = str(log_path)
    return {"command": str(peers.py2), "args": [str(peers.fixture_server)], "env": env}


def read_events(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------------------------
# Client-side recording
# --------------------------------------------------------------------------------------------


@dataclass
class Recorder:
    """Collects what a server pushes to one client session."""

    notifications: list[Any] = field(default_factory=list)
    logs: list[types.LoggingMessageNotificationParams] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    sampling: list[types.CreateMessageRequestParams] = field(default_factory=list)
    elicitation: list[types.ElicitRequestParams] = field(default_factory=list)

    async def message_handler(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.errors.append(message)
        else:
            self.notifications.append(message)

    async def logging_callback(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    def of_method(self, method: str) -> list[Any]:
        return [n for n in self.notifications if getattr(n, "method", None) == method]

    async def wait_for(self, method: str, pred: Callable[[Any], bool] = lambda n: True,
                       timeout: float = 15.0) -> Any:
        found = await await_until(lambda: [n for n in self.of_method(method) if pred(n)], timeout,
                                  f"a {method} notification (got: {[n.method for n in self.notifications]})")
        return found[0]


SAMPLE_TEXT = "e2e-fixed-sampling-answer-7f3a"


def sampling_callback_for(rec: Recorder, text: str = SAMPLE_TEXT):
    async def cb(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        rec.sampling.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=text),
            model="e2e-test-model",
            stop_reason="endTurn",
        )

    return cb


def elicitation_callback_for(rec: Recorder, content: dict[str, Any]):
    async def cb(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        rec.elicitation.append(params)
        return types.ElicitResult(action="accept", content=content)

    return cb


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


# --------------------------------------------------------------------------------------------
# The target: a gateway (or, in direct mode, the backend itself)
# --------------------------------------------------------------------------------------------


class Endpoint:
    """What the `gateway` fixture yields: where clients connect, and how names look there."""

    def __init__(self, *, config: dict[str, Any], config_path: Path, work_dir: Path, direct: bool,
                 frontends: tuple[str, ...], base_url: str | None = None,
                 backend: dict[str, Any] | None = None, process: ManagedProcess | None = None,
                 probe_tools: tuple[str, ...] = ()) -> None:
        self.config = config
        self.config_path = config_path
        self.work_dir = work_dir
        self.direct = direct
        self.frontends = frontends
        self.base_url = base_url
        self.backend = backend  # direct mode: the single backend spec served as-is
        self.process = process
        self.probe_tools = probe_tools
        self._stdio_logs = 0

    # ---- names -------------------------------------------------------------------------

    @property
    def separator(self) -> str:
        return (self.config.get("gateway") or {}).get("separator", "__")

    def name(self, upstream: str, backend: str | None = None) -> str:
        """Public name of an upstream tool/prompt of `backend` (default: the only backend)."""
        if self.direct:
            return upstream
        servers = self.config["mcpServers"]
        if backend is None:
            if len(servers) != 1:
                raise ValueError("name(): say which backend")
            backend = next(iter(servers))
        prefix = servers[backend].get("prefix", backend)
        return upstream if prefix == "" else f"{prefix}{self.separator}{upstream}"

    # ---- HTTP --------------------------------------------------------------------------

    def url(self, path: str) -> str:
        assert self.base_url, "this endpoint has no HTTP side"
        return self.base_url + path

    def get_json(self, path: str, timeout: float = 10.0) -> Any:
        r = httpx.get(self.url(path), timeout=timeout)
        r.raise_for_status()
        return r.json()

    def backends(self) -> list[dict[str, Any]]:
        data = self.get_json("/api/v1/backends")
        return data["backends"] if isinstance(data, dict) and "backends" in data else data

    def api_tools(self) -> list[dict[str, Any]]:
        data = self.get_json("/api/v1/tools")
        return data["tools"] if isinstance(data, dict) and "tools" in data else data

    # ---- MCP clients -------------------------------------------------------------------

    def frontend_url(self, frontend: str) -> str:
        if self.direct:
            return self.backend["url"]
        return self.url("/mcp" if frontend == "mcp" else "/sse")

    def _stdio_params(self) -> tuple[StdioServerParameters, Path, str]:
        self._stdio_logs += 1
        log = self.work_dir / f"stdio-{self._stdio_logs}.log"
        tag = uuid.uuid4().hex
        if self.direct:
            spec = self.backend
            params = StdioServerParameters(
                command=spec["command"], args=list(spec.get("args", [])),
                env={**os.environ, **(spec.get("env") or {}), RUN_TAG_VAR: tag}, cwd=spec.get("cwd"),
            )
        else:
            params = StdioServerParameters(
                command=str(GATEWAY_BIN),
                args=["serve", "--config", str(self.config_path), "--transport", "stdio",
                      "--log-level", GATEWAY_LOG_LEVEL],
                env={**os.environ, RUN_TAG_VAR: tag},
                cwd=str(self.work_dir),
            )
        return params, log, tag

    @contextlib.asynccontextmanager
    async def connect(self, frontend: str, recorder: Recorder | None = None, *,
                      wait_for_tools: tuple[str, ...] | None = None, **kwargs: Any) -> AsyncIterator[Client]:
        """An initialized mcp 2.x Client over `frontend` ("mcp", "sse" or "stdio")."""
        if frontend not in self.frontends:
            pytest.skip(f"frontend {frontend!r} not available here (available: {self.frontends})")
        if recorder is not None:
            kwargs.setdefault("message_handler", recorder.message_handler)
            kwargs.setdefault("logging_callback", recorder.logging_callback)
        kwargs.setdefault("cache", None)  # every call must reach the wire
        kwargs.setdefault("read_timeout_seconds", 60)
        kwargs.setdefault("mode", CLIENT_MODE)
        try:
            async with self._connect(frontend, wait_for_tools, kwargs) as client:
                yield client
        except BaseExceptionGroup as eg:
            # The SDK's task groups wrap whatever the test body raised; surface a lone
            # failure as itself so the report reads like a plain assertion.
            leaves = _leaves(eg)
            if len(leaves) == 1:
                raise leaves[0] from None
            raise

    @contextlib.asynccontextmanager
    async def _connect(self, frontend: str, wait_for_tools: tuple[str, ...] | None,
                       kwargs: dict[str, Any]) -> AsyncIterator[Client]:
        async with contextlib.AsyncExitStack() as stack:
            if frontend == "stdio":
                params, log, tag = self._stdio_params()
                # runs last: whatever the stdio server left behind once the client has closed
                stack.callback(kill_tagged, tag)
                errlog = stack.enter_context(open(log, "w"))
                title = f"stdio {'backend' if self.direct else 'gateway'} {log.name}"
                _LIVE_LOGS[title] = log
                stack.callback(_LIVE_LOGS.pop, title, None)
                transport: Any = stdio_client(params, errlog=errlog)
            elif frontend == "sse":
                transport = sse_client(self.frontend_url("sse"), sse_read_timeout=120)
            else:
                transport = self.frontend_url("mcp")
            # (no cancel scope around this: the client's task group outlives the enter)
            client = await stack.enter_async_context(Client(transport, **kwargs))
            wanted = self.probe_tools if wait_for_tools is None else wait_for_tools
            if wanted:
                await wait_for_tool_names(client, wanted, READY_TIMEOUT)
            yield client


def _leaves(eg: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            out += _leaves(e)
        elif not isinstance(e, anyio.get_cancelled_exc_class()):
            out.append(e)
    return out


async def wait_for_tool_names(client: Client, names: tuple[str, ...], timeout: float) -> list[str]:
    """A stdio gateway may answer before its backends are up: poll tools/list until `names` show."""
    deadline = time.monotonic() + timeout
    while True:
        listed = [t.name for t in (await client.list_tools()).tools]
        if all(n in listed for n in names):
            return listed
        if time.monotonic() >= deadline:
            raise TimeoutError(f"tools {sorted(set(names) - set(listed))} not listed after {timeout:.0f} s; "
                               f"listed: {listed}")
        await anyio.sleep(0.2)


def probe_names(ep: Endpoint, probe: dict[str, list[str]] | None) -> tuple[str, ...]:
    if not probe:
        return ()
    if ep.direct:
        return tuple(t for tools in probe.values() for t in tools)
    return tuple(ep.name(t, b) for b, tools in probe.items() for t in tools)


def backend_kind(spec: dict[str, Any]) -> str:
    return spec.get("type", "stdio") if "command" not in spec else "stdio"


def with_run_tag(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with the run tag in the `env` of every backend the gateway starts.

    Backends get a minimal environment, so the tag that marks a gateway's processes for the
    leftover check is handed on explicitly: the gateway expands it from its own environment.
    """
    config = json.loads(json.dumps(config))
    for spec in config.get("mcpServers", {}).values():
        if isinstance(spec, dict) and spec.get("command"):
            env = spec.setdefault("env", {})
            if isinstance(env, dict):
                env.setdefault(RUN_TAG_VAR, "${" + RUN_TAG_VAR + ":-}")
    return config


class GatewayFactory:
    """Starts gateways (or direct endpoints) and tears them down."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.started: list[Endpoint] = []
        self.count = 0

    def __call__(self, config: dict[str, Any], transport: str = "http", *,
                 expect_down: tuple[str, ...] = (), probe: dict[str, list[str]] | None = None,
                 extra_args: tuple[str, ...] = ()) -> Endpoint:
        """Start a gateway for `config` and wait until it is ready.

        `probe` maps backend names to upstream tool names that every client connection waits
        for (a stdio gateway may answer before its backends are up); `expect_down` names
        backends that must reach state "down" instead of "ready".
        """
        self.count += 1
        work = self.tmp_dir / f"gw{self.count}"
        work.mkdir(parents=True, exist_ok=True)
        cfg_path = work / "gateway.json"
        if not DIRECT:
            config = with_run_tag(config)
        cfg_path.write_text(json.dumps(config, indent=2))

        if DIRECT:
            enabled = {k: v for k, v in config["mcpServers"].items() if not v.get("disabled")}
            if len(enabled) != 1 or expect_down:
                pytest.skip("direct mode serves exactly one healthy backend; this needs the gateway")
            (name, spec), = enabled.items()
            kind = backend_kind(spec)
            frontends = {"stdio": ("stdio",), "sse": ("sse",), "streamable-http": ("mcp",)}[kind]
            ep = Endpoint(config=config, config_path=cfg_path, work_dir=work, direct=True,
                          frontends=frontends, backend=spec)
            ep.probe_tools = probe_names(ep, probe)
            self.started.append(ep)
            return ep

        if not GATEWAY_BIN.exists():
            pytest.fail(f"gateway binary {GATEWAY_BIN} not found: run `cargo build` "
                        f"(or set E2E_DIRECT=1 to test the peers alone)")

        if transport == "stdio":
            ep = Endpoint(config=config, config_path=cfg_path, work_dir=work, direct=False,
                          frontends=("stdio",))
            ep.probe_tools = probe_names(ep, probe)
            self.started.append(ep)
            return ep

        mp = ManagedProcess(
            f"gateway #{self.count}",
            [str(GATEWAY_BIN), "serve", "--config", str(cfg_path), "--port", "0", "--host", "127.0.0.1",
             "--transport", "http", "--log-level", GATEWAY_LOG_LEVEL, *extra_args],
            work / "gateway.log", cwd=work,
        )
        ep = Endpoint(config=config, config_path=cfg_path, work_dir=work, direct=False,
                      frontends=FRONTENDS, process=mp)
        ep.probe_tools = probe_names(ep, probe)
        self.started.append(ep)

        def listening() -> str | None:
            mp.ensure_alive("before it started listening")
            m = LISTENING_RE.search(Path(mp.log_path).read_text(errors="replace"))
            return m.group(1) if m else None

        ep.base_url = wait_until(listening, 30, "the gateway's `listening on http://...` line")
        wait_gateway_ready(ep, expect_down=expect_down)
        return ep

    def stop(self, ep: Endpoint) -> list[str]:
        """Stop one endpoint; return problems found (unexpected exit, slow exit, leaked children)."""
        problems: list[str] = []
        if ep in self.started:
            self.started.remove(ep)
        mp = ep.process
        if mp is None:
            return problems
        died_early = not mp.alive()
        early_code = mp.proc.returncode
        log = mp.output()
        code, in_time, leftovers = mp.stop()
        if died_early:
            problems.append(f"{mp.name} had exited on its own (code {early_code}) before teardown")
        elif not in_time:
            problems.append(f"{mp.name} did not exit within 10 s of SIGTERM")
        if leftovers:
            problems.append(f"{mp.name} left processes running after exit: {leftovers}")
        if problems:
            problems.append(f"{mp.name} log tail:\n{log}")
        return problems

    def close(self) -> list[str]:
        problems: list[str] = []
        for ep in list(self.started):
            problems += self.stop(ep)
        return problems


def wait_gateway_ready(ep: Endpoint, expect_down: tuple[str, ...] = (), timeout: float = READY_TIMEOUT) -> dict:
    """Poll /readyz until every enabled backend is ready (and each `expect_down` one is down)."""
    servers = ep.config["mcpServers"]
    want_ready = {n for n, s in servers.items() if not s.get("disabled") and n not in expect_down}
    last: Any = None

    def check() -> Any:
        nonlocal last
        ep.process.ensure_alive("while waiting for readiness")
        r = httpx.get(ep.url("/readyz"), timeout=5)
        last = r.text
        data = r.json()
        states = {b["name"]: b.get("state") for b in data.get("backends", [])}
        if all(states.get(n) == "ready" for n in want_ready) and all(states.get(n) == "down" for n in expect_down):
            return data
        return None

    try:
        return wait_until(check, timeout, f"gateway backends ready={sorted(want_ready)} down={sorted(expect_down)}",
                          interval=0.1)
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last /readyz: {last}\ngateway log:\n{ep.process.output()}") from None


def _gateway_fixture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    factory = GatewayFactory(tmp_path_factory.mktemp("gateway"))
    yield factory
    problems = factory.close()
    if problems:
        pytest.fail("gateway teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFactory]:
    """`gateway(config_dict, transport="http")` -> Endpoint; stopped after the test."""
    yield from _gateway_fixture(request, tmp_path_factory)


@pytest.fixture(scope="module")
def module_gateway(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayFactory]:
    """Like `gateway`, but the endpoints live for the whole module."""
    yield from _gateway_fixture(request, tmp_path_factory)


@pytest.fixture(params=FRONTENDS)
def frontend(request: pytest.FixtureRequest) -> str:
    return request.param


def direct_backend_for(frontend: str) -> str:
    """The backend transport that a frontend maps to: in direct mode the client speaks the
    backend's own transport, through the gateway any backend works (stdio is the cheapest)."""
    if DIRECT:
        return {"mcp": "streamable-http", "sse": "sse", "stdio": "stdio"}[frontend]
    return "stdio"

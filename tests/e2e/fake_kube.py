"""A fake Kubernetes API server for the e2e suite (stdlib only; PyYAML used when present).

CI has no cluster, so the Kubernetes mode of the gateway (`serve --kubernetes`) is tested
against this server. It follows the real kube-apiserver's observable semantics as far as a
client (kube-rs, client-go/kubectl, the Python client) can see them:

* one global, monotonically increasing ``resourceVersion``; ``uid``, ``creationTimestamp``,
  ``generation`` (custom resources only: bumped when anything but metadata/status changes),
  ``managedFields`` (FieldsV1, per manager/operation/subresource), finalizers and
  ``deletionTimestamp``; no-op writes are not written (no resourceVersion bump, no event);
* the status subresource (main writes ignore ``.status``, ``/status`` writes change only it);
* PUT, merge / JSON / strategic-merge patches (strategic is refused with 415 on custom
  resources, like the real server) and server-side apply with field ownership, conflicts
  (409 unless ``force=true``) and removal of fields a manager stops applying;
* optimistic concurrency (409 Conflict), AlreadyExists, NotFound, Invalid as ``Status`` objects;
* list with label/field selectors, ``limit``/``continue`` (consistent snapshots, 410 once
  compacted), ``resourceVersion``/``resourceVersionMatch``;
* watch (chunked, newline-delimited JSON): replay after a resourceVersion, selector
  transitions (ADDED/DELETED), bookmarks, ``timeoutSeconds``, 410 ``Expired`` ERROR events after
  ``compact()``, streaming lists (``sendInitialEvents``);
* discovery (``/api``, ``/apis``, ``/version``, minimal OpenAPI v3) so the real kubectl works.

Use it from tests::

    fk = FakeKube().start()
    fk.write_kubeconfig(tmp_path / "kubeconfig")
    fk.apply({...McpBackend...})
    fk.wait_for(lambda: fk.status_patches("name"), timeout=10)
    fk.stop()

or by hand: ``python fake_kube.py --port 8001 --kubeconfig /tmp/kubeconfig``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import dataclasses
import datetime as _dt
import json
import random
import re
import select
import socket
import string
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable

try:  # PyYAML is optional: apply bodies may be JSON, which needs no YAML parser
    import yaml as _yaml
except ImportError:  # pragma: no cover
    _yaml = None

MISSING = object()
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
PATCH_TYPES = {"merge": MERGE, "json": JSONPATCH, "strategic": STRATEGIC, "apply": APPLY}


# ------------------------------------------------------------------------------------------
# Resource types
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    custom: bool = False  # a CustomResourceDefinition-backed type
    allow_create_on_update: bool = False
    allow_unconditional_update: bool = True
    field_selectors: tuple[str, ...] = ()  # beyond metadata.name / metadata.namespace
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @property
    def resource(self) -> str:  # "mcpbackends.mcpgateway.dev" / "secrets"
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:  # "McpBackend.mcpgateway.dev" / "Secret"
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def verbs(self) -> list[str]:
        return ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


MCP_BACKEND = ResourceType(
    "mcpgateway.dev", "v1alpha1", "mcpbackends", "McpBackend", short_names=("mcpb",),
    status_subresource=True, custom=True, allow_unconditional_update=False, categories=("all",),
)
DEFAULT_RESOURCES: tuple[ResourceType, ...] = (
    MCP_BACKEND,
    ResourceType("", "v1", "secrets", "Secret", field_selectors=("type",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceType("", "v1", "events", "Event", short_names=("ev",), allow_create_on_update=True,
                 field_selectors=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                                  "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                                  "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")),
    ResourceType("events.k8s.io", "v1", "events", "Event", short_names=("ev",), allow_create_on_update=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", allow_create_on_update=True),
)


# ------------------------------------------------------------------------------------------
# Errors (Status objects)
# ------------------------------------------------------------------------------------------

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           406: "NotAcceptable", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid",
           429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


class KubeError(Exception):
    """An API error; ``status`` is the ``Status`` object the server sends."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None):
        super().__init__(f"{code} {reason or REASONS.get(code, '')}: {message}")
        self.code = code
        self.reason = reason or REASONS.get(code, "Unknown")
        self.message = message
        self.details = details

    @property
    def status(self) -> dict:
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            s["details"] = self.details
        return s


def _details(rt: ResourceType, name: str | None, kind: str | None = None, **extra: Any) -> dict:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if rt.group:
        d["group"] = rt.group
    d["kind"] = kind or rt.plural
    d.update(extra)
    return d


def not_found(rt: ResourceType, name: str) -> KubeError:
    return KubeError(404, f'{rt.resource} "{name}" not found', "NotFound", _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> KubeError:
    return KubeError(409, f'{rt.resource} "{name}" already exists', "AlreadyExists", _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str = "the object has been modified; please apply your changes "
             "to the latest version and try again", causes: list | None = None) -> KubeError:
    d = _details(rt, name)
    if causes:
        d["causes"] = causes
    return KubeError(409, f'Operation cannot be fulfilled on {rt.resource} "{name}": {why}', "Conflict", d)


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str]]) -> KubeError:
    """causes: (field, message) pairs, e.g. ("metadata.name", "Required value: ...")."""
    texts = [f"{f}: {m}" for f, m in causes]
    msg = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    det = _details(rt, name, kind=rt.kind,
                   causes=[{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes])
    return KubeError(422, f'{rt.qualified_kind} "{name}" is invalid: {msg}', "Invalid", det)


def bad_request(msg: str) -> KubeError:
    return KubeError(400, msg, "BadRequest")


def gone(msg: str) -> KubeError:
    return KubeError(410, msg, "Expired")


# ------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _age(ts: str | None) -> str:
    """kube's duration.HumanDuration, as the server renders the Age cell of a Table."""
    if not ts:
        return "<unknown>"
    then = _dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)
    s = max(0, int((_dt.datetime.now(_dt.timezone.utc) - then).total_seconds()))
    m, h, d = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if h < 3:
        return f"{m}m"
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d" if d < 730 else f"{d // 365}y"


DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        if "yaml" in content_type and _yaml is not None:
            try:
                return _yaml.safe_load(text)
            except _yaml.YAMLError as e:
                raise bad_request(f"error decoding YAML: {e}") from None
        raise bad_request(f"couldn't get version/kind; json parse error: {text[:80]!r} is not JSON") from None


# ---- paths inside objects (for managedFields) ------------------------------------------------

Path_ = tuple  # tuple[str, ...]


def get_path(obj: Any, path: Path_) -> Any:
    for k in path:
        if not isinstance(obj, dict) or k not in obj:
            return MISSING
        obj = obj[k]
    return obj


def del_path(obj: dict, path: Path_) -> None:
    parents = []
    cur = obj
    for k in path[:-1]:
        if not isinstance(cur, dict) or k not in cur:
            return
        parents.append((cur, k))
        cur = cur[k]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)
    # prune maps this removal left empty (but never top-level fields such as spec)
    for parent, k in reversed(parents[1:]):
        if parent[k] == {}:
            del parent[k]
        else:
            break


TRACKED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def leaves(obj: Any, prefix: Path_ = ()) -> set[Path_]:
    """Leaf field paths; maps recurse, lists and scalars are atomic, empty maps are leaves."""
    out: set[Path_] = set()
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out |= leaves(v, prefix + (k,))
    elif prefix:
        out.add(prefix)
    return out


def scoped_leaves(obj: dict, rt: ResourceType, subresource: str | None) -> set[Path_]:
    """The paths a write to (rt, subresource) may own."""
    out: set[Path_] = set()
    for k, v in obj.items():
        if k in ("apiVersion", "kind"):
            continue
        if k == "metadata":
            if subresource:
                continue
            for mk in TRACKED_METADATA:
                if isinstance(v, dict) and mk in v:
                    out |= leaves(v[mk], ("metadata", mk))
            continue
        if rt.status_subresource and (k == "status") != (subresource == "status"):
            continue
        out |= leaves(v, (k,))
    return out


def fields_v1(paths: Iterable[Path_]) -> dict:
    root: dict = {}
    for p in sorted(paths):
        cur = root
        for k in p:
            cur = cur.setdefault("f:" + k, {})
        if cur:
            cur["."] = {}
    # a path that is also a prefix of another is marked with ".": {}
    def fix(node: dict, path: Path_, own: set) -> None:
        for k, v in node.items():
            if k == ".":
                continue
            sub = path + (k[2:],)
            if sub in own and v and "." not in v:
                v["."] = {}
            fix(v, sub, own)
    fix(root, (), set(paths))
    return root


def paths_from_fields_v1(fields: dict, prefix: Path_ = ()) -> set[Path_]:
    out: set[Path_] = set()
    if not fields:
        if prefix:
            out.add(prefix)
        return out
    for k, v in fields.items():
        if k == ".":
            out.add(prefix)
        elif k.startswith("f:"):
            out |= paths_from_fields_v1(v, prefix + (k[2:],))
        # k:/v:/i: (keyed list items) are not produced by this fake; lists are atomic here
    return out


def overlaps(a: Path_, b: Path_) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def path_str(p: Path_) -> str:
    return "." + ".".join(p)


# ---- patches ------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def strategic_merge_patch(target: Any, patch: Any, key: str | None = None) -> Any:
    """Approximation of a strategic merge patch for built-in types: a merge patch, except that
    ``metadata.finalizers`` is a merged set, lists of objects carrying ``name`` (or ``uid`` for
    ownerReferences) are merged by that key, and ``$patch``/``$retainKeys``/``$setElementOrder``
    directives are understood or dropped."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    deletes: dict[str, list] = {}
    for k, v in patch.items():
        if k.startswith("$deleteFromPrimitiveList/"):
            deletes[k.split("/", 1)[1]] = v or []
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            merged = strategic_merge_patch(result.get(k), v, k)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list) and k == "finalizers" and isinstance(result.get(k), list):
            result[k] = result[k] + [x for x in v if x not in result[k]]
        elif isinstance(v, list) and isinstance(result.get(k), list) and v and all(isinstance(x, dict) for x in v):
            mk = "uid" if k == "ownerReferences" else "name"
            if all(mk in x for x in v) and all(isinstance(x, dict) and mk in x for x in result[k]):
                cur = [copy.deepcopy(x) for x in result[k]]
                for item in v:
                    idx = next((i for i, x in enumerate(cur) if x[mk] == item[mk]), None)
                    if item.get("$patch") == "delete":
                        if idx is not None:
                            cur.pop(idx)
                    elif idx is None:
                        cur.append({a: b for a, b in item.items() if not a.startswith("$")})
                    else:
                        cur[idx] = strategic_merge_patch(cur[idx], item)
                result[k] = cur
            else:
                result[k] = copy.deepcopy(v)
        else:
            result[k] = copy.deepcopy(v)
    for k, vals in deletes.items():
        if isinstance(result.get(k), list):
            result[k] = [x for x in result[k] if x not in vals]
    return result


def _ptr(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 (add, remove, replace, move, copy, test). Raises ValueError on failure."""
    if not isinstance(ops, list):
        raise ValueError("json patch must be a list of operations")
    doc = copy.deepcopy(doc)

    def parent(path: str) -> tuple[Any, str]:
        parts = _ptr(path)
        if not parts:
            raise ValueError("cannot operate on the root")
        cur = doc
        for p in parts[:-1]:
            if isinstance(cur, list):
                cur = cur[int(p)]
            elif isinstance(cur, dict) and p in cur:
                cur = cur[p]
            else:
                raise ValueError(f"doc is missing path: {path!r}")
        return cur, parts[-1]

    def get(path: str) -> Any:
        cur = doc
        for p in _ptr(path):
            if isinstance(cur, list):
                i = int(p)
                if not 0 <= i < len(cur):
                    raise ValueError(f"doc is missing path: {path!r}")
                cur = cur[i]
            elif isinstance(cur, dict) and p in cur:
                cur = cur[p]
            else:
                raise ValueError(f"doc is missing path: {path!r}")
        return cur

    def add(path: str, value: Any) -> None:
        nonlocal doc
        if path == "":
            doc = value
            return
        cont, last = parent(path)
        if isinstance(cont, list):
            if last == "-":
                cont.append(value)
            else:
                i = int(last)
                if not 0 <= i <= len(cont):
                    raise ValueError(f"add operation index out of bounds: {i}")
                cont.insert(i, value)
        elif isinstance(cont, dict):
            cont[last] = value
        else:
            raise ValueError(f"doc is missing path: {path!r}")

    def remove(path: str) -> Any:
        cont, last = parent(path)
        try:
            if isinstance(cont, list):
                return cont.pop(int(last))
            return cont.pop(last)
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"remove operation does not apply: doc is missing path: {path!r}") from None

    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ValueError(f"invalid operation {op!r}")
        kind, path = op["op"], op["path"]
        try:
            if kind == "add":
                add(path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                get(path)
                remove(path)
                add(path, copy.deepcopy(op["value"]))
            elif kind == "move":
                v = get(op["from"])
                remove(op["from"])
                add(path, v)
            elif kind == "copy":
                add(path, copy.deepcopy(get(op["from"])))
            elif kind == "test":
                if get(path) != op.get("value"):
                    raise ValueError(f"testing value {path} failed: test failed")
            else:
                raise ValueError(f"unexpected operation kind {kind!r}")
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"{kind} operation failed at {path!r}: {e}") from None
    return doc


# ---- selectors ----------------------------------------------------------------------------------

_LABEL_RE = re.compile(r"^\s*(!)?\s*([A-Za-z0-9_./-]+)\s*(?:(==|=|!=|\s+in\s+|\s+notin\s+|>|<)\s*(.*?))?\s*$")


def _split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in (x.strip() for x in parts) if p]


def parse_label_selector(sel: str | None) -> Callable[[dict], bool]:
    if not sel:
        return lambda labels: True
    reqs = []
    for part in _split_top(sel):
        m = _LABEL_RE.match(part)
        if not m:
            raise bad_request(f'unable to parse requirement: found \'{part}\', expected: valid label selector')
        neg, key, op, val = m.group(1), m.group(2), (m.group(3) or "").strip(), (m.group(4) or "").strip()
        if neg:
            if op:
                raise bad_request(f"unable to parse requirement: {part!r}")
            reqs.append(lambda L, k=key: k not in L)
        elif not op:
            reqs.append(lambda L, k=key: k in L)
        elif op in ("in", "notin"):
            if not (val.startswith("(") and val.endswith(")")):
                raise bad_request(f"unable to parse requirement: found '{val}', expected: '('")
            vals = {v.strip() for v in val[1:-1].split(",") if v.strip()}
            if op == "in":
                reqs.append(lambda L, k=key, vs=vals: k in L and L[k] in vs)
            else:
                reqs.append(lambda L, k=key, vs=vals: k not in L or L[k] not in vs)
        elif op in ("=", "=="):
            reqs.append(lambda L, k=key, v=val: L.get(k) == v)
        elif op == "!=":
            reqs.append(lambda L, k=key, v=val: L.get(k) != v)
        else:  # > <
            try:
                num = int(val)
            except ValueError:
                raise bad_request(f"unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer") from None
            if op == ">":
                reqs.append(lambda L, k=key, n=num: k in L and L[k].lstrip("-").isdigit() and int(L[k]) > n)
            else:
                reqs.append(lambda L, k=key, n=num: k in L and L[k].lstrip("-").isdigit() and int(L[k]) < n)
    return lambda labels: all(r(labels) for r in reqs)


def parse_field_selector(sel: str | None, rt: ResourceType) -> Callable[[dict], bool]:
    if not sel:
        return lambda obj: True
    reqs = []
    for part in _split_top(sel):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{sel}'; can't understand '{part}'")
        field, op, val = m.groups()
        if field not in ("metadata.name", "metadata.namespace") + rt.field_selectors:
            raise bad_request(f'field label not supported: {field}')

        def getter(obj: dict, f: str = field) -> str:
            v = get_path(obj, tuple(f.split(".")))
            if f == "source" and isinstance(obj.get("source"), dict):
                v = obj["source"].get("component", "")
            return "" if v is MISSING or v is None else str(v)

        if op == "!=":
            reqs.append(lambda o, g=getter, v=val: g(o) != v)
        else:
            reqs.append(lambda o, g=getter, v=val: g(o) == v)
    return lambda obj: all(r(obj) for r in reqs)


# ------------------------------------------------------------------------------------------
# The store
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Change:
    rv: int
    type: str  # ADDED / MODIFIED / DELETED
    rt: ResourceType
    namespace: str
    name: str
    obj: dict
    prev: dict | None


class Watch:
    def __init__(self, rt: ResourceType, namespace: str | None, matches: Callable[[dict], bool],
                 bookmarks: bool, query: dict):
        self.rt = rt
        self.namespace = namespace
        self.matches = matches
        self.bookmarks = bookmarks
        self.query = query
        self.queue: list[Change] = []
        self.closed = False
        self.bookmark_requests = 0


class FakeKube:
    """A fake kube-apiserver. All public methods are thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, bookmark_interval: float | None = 1.0,
                 token: str | None = "fake-kube-token", require_token: bool = False,
                 resources: Iterable[ResourceType] = DEFAULT_RESOURCES,
                 version: tuple[str, str] = ("1", "37")):
        self.host, self.port = host, port
        self.bookmark_interval = bookmark_interval
        self.token = token
        # client-go (kubectl) does not send bearer tokens over plain http, so enforcing the token is
        # opt-in; every request's Authorization header is recorded either way
        self.require_token = require_token
        self.version = version
        self.resources: list[ResourceType] = list(resources)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._rv = 0
        self._compacted_rv = 0
        self._objects: dict[tuple, dict] = {}
        self._created_rv: dict[str, int] = {}  # uid -> resourceVersion of its creation
        self._history: list[Change] = []
        self._watches: list[Watch] = []
        self._faults: list[dict] = []
        self.requests: list[dict] = []
        self.bookmarks_sent = 0  # BOOKMARK events written to watch streams
        self.last_bookmark_rv = "0"  # the resourceVersion the latest BOOKMARK carried
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._rnd = random.Random()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FakeKube":
        fake = self

        class Handler(_Handler):
            kube = fake

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fake-kube", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            for w in self._watches:
                w.closed = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeKube":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def write_kubeconfig(self, path: str | Path, namespace: str = "default", context: str = "fake") -> Path:
        path = Path(path)
        user = f"    token: {self.token}\n" if self.token else "    {}\n"
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: {context}\n  cluster:\n    server: {self.url}\n"
            f"users:\n- name: {context}-user\n  user:\n{user}"
            f"contexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: {context}-user\n"
            f"    namespace: {namespace}\n"
            f"current-context: {context}\n"
        )
        return path

    # ---- resource lookup -----------------------------------------------------------------------

    def resource_for(self, what: str) -> ResourceType:
        """'mcpbackends', 'McpBackend', 'mcpb', 'mcpbackends.mcpgateway.dev', 'events.events.k8s.io',
        'Lease'... Core types win on ambiguity (like kubectl)."""
        name, _, group = what.partition(".")
        cands = [rt for rt in self.resources
                 if what in (rt.plural, rt.kind, rt.singular, *rt.short_names)
                 or (group and name in (rt.plural, rt.kind, rt.singular, *rt.short_names) and group == rt.group)]
        if not cands:
            raise KeyError(f"unknown resource {what!r}")
        cands.sort(key=lambda rt: (rt.group != "" and not group, rt.group))
        return cands[0]

    def _resource(self, group: str, version: str, plural: str) -> ResourceType | None:
        for rt in self.resources:
            if rt.key == (group, version, plural):
                return rt
        return None

    def _resource_for_obj(self, obj: dict) -> ResourceType:
        av, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        group, _, version = av.rpartition("/")
        for rt in self.resources:
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        raise KeyError(f"no resource for apiVersion={av!r} kind={kind!r}")

    # ---- internal write machinery (caller holds the lock) -----------------------------------------

    def _key(self, rt: ResourceType, ns: str | None, name: str) -> tuple:
        return (rt.key, ns or "", name)

    def _commit(self, rt: ResourceType, ns: str, name: str, typ: str, obj: dict, prev: dict | None) -> dict:
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = self._key(rt, ns, name)
        if typ == "DELETED":
            self._objects.pop(key, None)
            self._created_rv.pop(obj["metadata"].get("uid"), None)
        else:
            if typ == "ADDED":
                self._created_rv[obj["metadata"]["uid"]] = self._rv
            self._objects[key] = obj
        ch = Change(self._rv, typ, rt, ns or "", name, obj, copy.deepcopy(prev) if prev is not None else None)
        self._history.append(ch)
        for w in self._watches:
            if w.rt.key == rt.key:
                w.queue.append(ch)
        self._cond.notify_all()
        return copy.deepcopy(obj)

    def _managed_entry(self, mf: list, manager: str, operation: str, subresource: str | None,
                       api_version: str) -> dict:
        for e in mf:
            if e.get("manager") == manager and e.get("operation") == operation and e.get("subresource") == subresource:
                return e
        e = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": now_rfc3339(),
             "fieldsType": "FieldsV1", "fieldsV1": {}}
        if subresource:
            e["subresource"] = subresource
        mf.append(e)
        return e

    @staticmethod
    def _entry_id(e: dict) -> tuple:
        return (e.get("manager"), e.get("operation"), e.get("subresource"))

    def _set_paths(self, entries: list, e: dict, paths: set, api_version: str) -> None:
        new = fields_v1(paths)
        if new != e.get("fieldsV1"):
            e["fieldsV1"] = new
            e["time"] = now_rfc3339()
            e["apiVersion"] = api_version

    def _track_update(self, rt: ResourceType, old: dict | None, new: dict, manager: str,
                      subresource: str | None) -> None:
        """managedFields for a non-apply write: the writer owns what it changed."""
        mf = copy.deepcopy((old or {}).get("metadata", {}).get("managedFields") or [])
        old_leaves = scoped_leaves(old, rt, subresource) if old else set()
        new_leaves = scoped_leaves(new, rt, subresource)
        changed = {p for p in new_leaves if old is None or get_path(old, p) != get_path(new, p)}
        removed = old_leaves - new_leaves
        touched = changed | removed
        for e in mf:
            paths = paths_from_fields_v1(e.get("fieldsV1") or {})
            keep = {p for p in paths if not any(p[:len(t)] == t for t in touched) and p not in removed}
            if keep != paths:
                self._set_paths(mf, e, keep, e.get("apiVersion", rt.api_version))
        if changed:
            e = self._managed_entry(mf, manager, "Update", subresource, rt.api_version)
            self._set_paths(mf, e, paths_from_fields_v1(e["fieldsV1"]) | changed, rt.api_version)
        new["metadata"]["managedFields"] = [e for e in mf if e.get("fieldsV1")]
        if not new["metadata"]["managedFields"]:
            del new["metadata"]["managedFields"]

    def _prepare_common(self, rt: ResourceType, obj: dict, name: str) -> None:
        """Type-specific conversion and validation shared by create and update."""
        md = obj["metadata"]
        if rt.kind == "Secret":
            sd = obj.pop("stringData", None)
            if sd:
                data = obj.setdefault("data", {}) or {}
                obj["data"] = data
                for k, v in sd.items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
            for k, v in (obj.get("data") or {}).items():
                try:
                    base64.b64decode(v, validate=True)
                except (ValueError, TypeError):
                    raise bad_request(f"Secret in version \"v1\" cannot be handled as a Secret: illegal base64 "
                                      f"data at input byte 0 (key {k!r})") from None
            obj.setdefault("type", "Opaque")
        if rt.group == "events.k8s.io" and rt.kind == "Event":
            causes = []
            for f in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
                if not obj.get(f):
                    causes.append((f, "Required value"))
            if obj.get("type") not in ("Normal", "Warning"):
                causes.append(("type", f'Unsupported value: "{obj.get("type", "")}": supported values: "Normal", "Warning"'))
            for f, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128), ("note", 1024)):
                if len(str(obj.get(f) or "")) > limit:
                    causes.append((f, f"Too long: may not be more than {limit} bytes"))
            if obj.get("reportingController") and not re.match(
                    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
                    obj["reportingController"]):
                causes.append(("reportingController", f'Invalid value: "{obj["reportingController"]}": must be a '
                               "qualified name"))
            rns = (obj.get("regarding") or {}).get("namespace")
            if rns and rns != obj["metadata"].get("namespace"):
                causes.append(("regarding.namespace", f'Invalid value: "{rns}": does not match event.namespace'))
            series = obj.get("series")
            if series is not None:
                if int(series.get("count", 0)) < 2:
                    causes.append(("series.count", "Invalid value: should be at least 2"))
                if not series.get("lastObservedTime"):
                    causes.append(("series.lastObservedTime", "Required value"))
            if causes:
                raise invalid(rt, name, causes)
        if rt.kind == "Lease":
            spec = obj.get("spec") or {}
            if spec.get("leaseDurationSeconds") is not None and spec["leaseDurationSeconds"] <= 0:
                raise invalid(rt, name, [("spec.leaseDurationSeconds", "Invalid value: must be greater than 0")])
            if spec.get("leaseTransitions") is not None and spec["leaseTransitions"] < 0:
                raise invalid(rt, name, [("spec.leaseTransitions", "Invalid value: must be greater than or equal to 0")])
        for f in ("labels", "annotations"):
            v = md.get(f)
            if v is not None and (not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values())):
                raise bad_request(f"{rt.kind} in version \"{rt.version}\" cannot be handled as a {rt.kind}: "
                                  f"metadata.{f} values must be strings")
            if v == {}:
                del md[f]
        if md.get("finalizers") == []:
            del md["finalizers"]

    def _check_body_type(self, rt: ResourceType, body: Any) -> dict:
        if not isinstance(body, dict):
            raise bad_request("the body of the request is not a JSON object")
        body = copy.deepcopy(body)
        av, kind = body.get("apiVersion"), body.get("kind")
        if rt.custom and (not av or not kind):
            raise bad_request(f"Object 'Kind' is missing in '{json.dumps(body)[:200]}'")
        if av and av != rt.api_version:
            raise bad_request(f"the API version in the data ({av}) does not match the expected API version "
                              f"({rt.api_version})")
        if kind and kind != rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        body["apiVersion"], body["kind"] = rt.api_version, rt.kind
        if not isinstance(body.get("metadata") or {}, dict):
            raise bad_request("metadata must be an object")
        body["metadata"] = body.get("metadata") or {}
        return body

    def _do_create(self, rt: ResourceType, ns: str | None, body: Any, manager: str, dry_run: bool = False,
                   operation: str = "Update", apply_paths: set | None = None) -> dict:
        obj = self._check_body_type(rt, body)
        md = obj["metadata"]
        if rt.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on "
                                  "the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + "".join(self._rnd.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        name = md.get("name") or ""
        if not name:
            raise invalid(rt, "", [("metadata.name", "Required value: name or generateName is required")])
        if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
            raise invalid(rt, name, [("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                                      "must consist of lower case alphanumeric characters, '-' or '.', and must "
                                      "start and end with an alphanumeric character")])
        if self._key(rt, ns, name) in self._objects:
            raise already_exists(rt, name)
        for f in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation", "managedFields", "selfLink"):
            md.pop(f, None)
        if rt.status_subresource:
            obj.pop("status", None)
        self._prepare_common(rt, obj, name)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        if rt.custom:
            md["generation"] = 1
        if operation == "Apply":
            mf: list = []
            e = self._managed_entry(mf, manager, "Apply", None, rt.api_version)
            e["fieldsV1"] = fields_v1(apply_paths or set())
            if e["fieldsV1"]:
                md["managedFields"] = mf
        else:
            self._track_update(rt, None, obj, manager, None)
        if dry_run:
            return obj
        return self._commit(rt, ns or "", name, "ADDED", obj, None)

    def _finish_update(self, rt: ResourceType, old: dict, new: dict, manager: str, subresource: str | None,
                       *, unconditional_ok: bool, dry_run: bool, apply_managed: list | None = None) -> dict:
        """Common tail of PUT / PATCH / apply on an existing object."""
        name = old["metadata"]["name"]
        new = self._check_body_type(rt, new)
        md, omd = new["metadata"], old["metadata"]
        if md.get("name", name) != name:
            raise bad_request(f"the name of the object ({md.get('name')}) does not match the name on the URL ({name})")
        if rt.namespaced and md.get("namespace", omd.get("namespace")) != omd.get("namespace"):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        req_rv = md.get("resourceVersion")
        if req_rv:
            if str(req_rv) != omd["resourceVersion"]:
                raise conflict(rt, name)
        elif not unconditional_ok:
            raise invalid(rt, name, [("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")])
        if subresource == "status":
            status = new.get("status", MISSING)
            new = copy.deepcopy(old)
            if status is MISSING:
                new.pop("status", None)
            else:
                new["status"] = status
            if apply_managed:
                new["metadata"]["managedFields"] = apply_managed
            elif apply_managed is not None:
                new["metadata"].pop("managedFields", None)
            md = new["metadata"]
        else:
            for f in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "generation", "selfLink"):
                if f in omd:
                    md[f] = omd[f]
                else:
                    md.pop(f, None)
            if rt.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            if apply_managed is not None:
                md["managedFields"] = apply_managed
                if not apply_managed:
                    del md["managedFields"]
            else:
                md["managedFields"] = copy.deepcopy(omd.get("managedFields"))
                if md["managedFields"] is None:
                    del md["managedFields"]
            self._prepare_common(rt, new, name)
            if omd.get("deletionTimestamp"):
                added = set(md.get("finalizers") or []) - set(omd.get("finalizers") or [])
                if added:
                    raise invalid(rt, name, [("metadata.finalizers", "Forbidden: no new finalizers can be added "
                                              "if the object is being deleted, found new finalizers "
                                              + json.dumps(sorted(added)))])
        md["resourceVersion"] = omd["resourceVersion"]
        if apply_managed is None:
            self._track_update(rt, old, new, manager, subresource)
        if rt.custom:
            strip = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status", "apiVersion", "kind")}
            if strip(old) != strip(new):
                md["generation"] = int(omd.get("generation", 1)) + 1
        if self._same(old, new):
            return copy.deepcopy(old)  # a no-op: nothing is written, no event, no new resourceVersion
        if dry_run:
            return new
        ns = omd.get("namespace", "")
        if omd.get("deletionTimestamp") and not md.get("finalizers"):
            out = self._commit(rt, ns, name, "MODIFIED", new, old)
            self._really_delete(rt, ns, name, "Background")
            return out
        return self._commit(rt, ns, name, "MODIFIED", new, old)

    @staticmethod
    def _same(a: dict, b: dict) -> bool:
        def norm(o: dict) -> dict:
            o = copy.deepcopy(o)
            for e in o.get("metadata", {}).get("managedFields") or []:
                e.pop("time", None)
            o.get("metadata", {}).pop("resourceVersion", None)
            return o
        return norm(a) == norm(b)

    def _really_delete(self, rt: ResourceType, ns: str, name: str, propagation: str) -> dict:
        old = self._objects[self._key(rt, ns, name)]
        out = self._commit(rt, ns, name, "DELETED", old, old)
        if propagation != "Orphan":  # a minimal garbage collector: dependents go too
            uid = old["metadata"].get("uid")
            for (rkey, dns, dname), o in list(self._objects.items()):
                refs = o["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    drt = self._resource(*rkey)
                    if drt is not None:
                        self._do_delete(drt, dns, dname, {"propagationPolicy": "Background"})
        return out

    def _get_obj(self, rt: ResourceType, ns: str | None, name: str) -> dict:
        obj = self._objects.get(self._key(rt, ns, name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def _do_update(self, rt: ResourceType, ns: str | None, name: str, body: Any, manager: str,
                   subresource: str | None = None, dry_run: bool = False) -> tuple[int, dict]:
        body = self._check_body_type(rt, body)
        if body["metadata"].get("name", name) != name:
            raise bad_request(f"the name of the object ({body['metadata'].get('name')}) does not match the name "
                              f"on the URL ({name})")
        old = self._objects.get(self._key(rt, ns, name))
        if old is None:
            if rt.allow_create_on_update and subresource is None:
                body["metadata"]["name"] = name
                return 201, self._do_create(rt, ns, body, manager, dry_run)
            raise not_found(rt, name)
        return 200, self._finish_update(rt, old, body, manager, subresource,
                                        unconditional_ok=rt.allow_unconditional_update, dry_run=dry_run)

    def _do_patch(self, rt: ResourceType, ns: str | None, name: str, patch: Any, ptype: str, manager: str | None,
                  subresource: str | None = None, force: bool = False, dry_run: bool = False) -> tuple[int, dict]:
        if ptype == APPLY:
            return self._do_apply(rt, ns, name, patch, manager, subresource, force, dry_run)
        if force:
            raise bad_request("force=true is only valid for apply (patch type application/apply-patch+yaml)")
        if ptype == STRATEGIC and rt.custom:
            raise KubeError(415, f"the body of the request was in an unknown format - accepted media types "
                            f"include: {JSONPATCH}, {MERGE}, {APPLY}", "UnsupportedMediaType")
        old = self._get_obj(rt, ns, name)
        if ptype == MERGE:
            if not isinstance(patch, dict):
                raise bad_request("merge patch must be a JSON object")
            new = merge_patch(old, patch)
        elif ptype == STRATEGIC:
            if not isinstance(patch, dict):
                raise bad_request("strategic merge patch must be a JSON object")
            new = strategic_merge_patch(old, patch)
        elif ptype == JSONPATCH:
            if not isinstance(patch, list):
                raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
            try:
                new = json_patch(old, patch)
            except ValueError as e:
                raise KubeError(422, str(e), "Invalid", {"causes": [{"message": str(e)}]}) from None
        else:
            raise KubeError(415, f"the body of the request was in an unknown format - accepted media types include: "
                            f"{JSONPATCH}, {MERGE}, {APPLY}" + ("" if rt.custom else f", {STRATEGIC}"),
                            "UnsupportedMediaType")
        if not isinstance(new, dict):
            raise bad_request("the patched object is not an object")
        return 200, self._finish_update(rt, old, new, manager or "unknown", subresource,
                                        unconditional_ok=True, dry_run=dry_run)

    def _do_apply(self, rt: ResourceType, ns: str | None, name: str, config: Any, manager: str | None,
                  subresource: str | None, force: bool, dry_run: bool) -> tuple[int, dict]:
        if not manager:
            raise bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required "
                              "for apply patch")
        if not isinstance(config, dict):
            raise bad_request("apply patch must be a YAML or JSON object")
        if not config.get("apiVersion") or not config.get("kind"):
            raise bad_request(f"invalid object type: {config.get('apiVersion', '')}, Kind={config.get('kind', '')}")
        config = self._check_body_type(rt, config)
        cmd = config["metadata"]
        if cmd.get("name", name) != name:
            raise bad_request(f"the name of the object ({cmd.get('name')}) does not match the name on the URL ({name})")
        if rt.namespaced and cmd.get("namespace", ns) != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if rt.kind == "Secret" and config.get("stringData"):
            data = dict(config.get("data") or {})
            data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in config.pop("stringData").items()})
            config["data"] = data
        # what this apply covers
        if rt.status_subresource:
            if subresource == "status":
                config = {"apiVersion": config["apiVersion"], "kind": config["kind"], "metadata": cmd,
                          **({"status": config["status"]} if "status" in config else {})}
            else:
                config.pop("status", None)
        cfg_paths = {p for p in scoped_leaves(config, rt, subresource) if get_path(config, p) is not None}
        old = self._objects.get(self._key(rt, ns, name))
        if old is None:
            if subresource:
                raise not_found(rt, name)
            cmd["name"] = name
            created = self._do_create(rt, ns, config, manager, dry_run, "Apply", cfg_paths)
            return 201, created
        req_rv = cmd.get("resourceVersion")
        if req_rv and str(req_rv) != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        # merge the configuration into the live object
        merged = copy.deepcopy(old)
        apply_part = {k: v for k, v in config.items() if k not in ("apiVersion", "kind", "metadata")}
        apply_part["metadata"] = {k: v for k, v in cmd.items() if k in TRACKED_METADATA}
        merged = merge_patch(merged, apply_part)
        mf = copy.deepcopy(old["metadata"].get("managedFields") or [])
        me = self._managed_entry(mf, manager, "Apply", subresource, rt.api_version)
        mine_before = paths_from_fields_v1(me.get("fieldsV1") or {})
        others = [e for e in mf if e is not me and e.get("subresource") == subresource]
        # fields this manager stops applying are removed unless someone else owns them
        for p in mine_before - cfg_paths:
            if not any(overlaps(p, q) for e in others for q in paths_from_fields_v1(e.get("fieldsV1") or {})):
                if not any(overlaps(p, q) for q in cfg_paths):
                    del_path(merged, p)
        # conflicts: another manager owns a field whose value this apply changes
        conflicts: list[tuple[dict, Path_]] = []
        for e in others:
            for q in paths_from_fields_v1(e.get("fieldsV1") or {}):
                if get_path(old, q) == get_path(merged, q):
                    continue
                # q owned by another manager conflicts when this apply sets q or something under it,
                # or drills into q while q holds an atomic value (a list or scalar); owning a map
                # node does not conflict with setting its children
                if any(q[:len(p)] == p for p in cfg_paths) or any(
                        p[:len(q)] == q and not isinstance(get_path(old, q), dict) for p in cfg_paths):
                    conflicts.append((e, q))
        if conflicts and not force:
            by: dict[tuple, list] = {}
            for e, q in conflicts:
                by.setdefault((e["manager"], e.get("apiVersion", rt.api_version)), []).append(path_str(q))
            n = len(conflicts)
            if len(by) == 1 and n == 1:
                ((mgr, av), ps), = by.items()
                msg = f'Apply failed with 1 conflict: conflict with "{mgr}" using {av}: {ps[0]}'
            else:
                parts = [f'conflicts with "{mgr}" using {av}:\n' + "\n".join(f"- {p}" for p in ps)
                         for (mgr, av), ps in by.items()]
                msg = f"Apply failed with {n} conflicts: " + "\n".join(parts)
            causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{e["manager"]}" using '
                       f'{e.get("apiVersion", rt.api_version)}', "field": path_str(q)} for e, q in conflicts]
            d = _details(rt, name, causes=causes)
            raise KubeError(409, msg, "Conflict", d)
        for e, q in conflicts:  # forced: the others lose those fields
            paths = paths_from_fields_v1(e.get("fieldsV1") or {})
            self._set_paths(mf, e, {p for p in paths if p != q}, e.get("apiVersion", rt.api_version))
        self._set_paths(mf, me, cfg_paths, rt.api_version)
        mf = [e for e in mf if e.get("fieldsV1")]
        merged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        return 200, self._finish_update(rt, old, merged, manager, subresource, unconditional_ok=True,
                                        dry_run=dry_run, apply_managed=mf)

    def _do_delete(self, rt: ResourceType, ns: str | None, name: str, opts: dict | None = None,
                   dry_run: bool = False) -> tuple[int, dict]:
        opts = opts or {}
        obj = self._get_obj(rt, ns, name)
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"].get("uid"):
            raise conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                           f"{obj['metadata'].get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise conflict(rt, name, f"Precondition failed: ResourceVersion in precondition: "
                           f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                           f"{obj['metadata']['resourceVersion']}")
        propagation = opts.get("propagationPolicy") or ("Orphan" if opts.get("orphanDependents") else "Background")
        md = obj["metadata"]
        if md.get("finalizers"):
            if md.get("deletionTimestamp"):
                return 200, copy.deepcopy(obj)  # already being deleted
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if dry_run:
                return 200, new
            return 200, self._commit(rt, ns or "", name, "MODIFIED", new, obj)
        if dry_run:
            return 200, copy.deepcopy(obj)
        self._really_delete(rt, ns or "", name, propagation)
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": _details(rt, name, uid=md.get("uid"))}

    # ---- reads --------------------------------------------------------------------------------------

    def _state_at(self, rt: ResourceType, rv: int) -> dict[tuple, dict]:
        """The objects of rt as they were at resourceVersion rv (rv >= the compaction point)."""
        state = {k: v for k, v in self._objects.items() if k[0] == rt.key}
        for ch in reversed(self._history):
            if ch.rv <= rv:
                break
            if ch.rt.key != rt.key:
                continue
            key = self._key(rt, ch.namespace, ch.name)
            if ch.type == "ADDED":
                state.pop(key, None)
            else:
                state[key] = ch.prev
        return state

    def _wait_rv(self, rv: int) -> None:
        deadline = time.monotonic() + 3.0
        while self._rv < rv:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KubeError(504, f"Too large resource version: {rv}, current: {self._rv}", "Timeout",
                                {"causes": [{"reason": "ResourceVersionTooLarge",
                                             "message": "Too large resource version"}], "retryAfterSeconds": 1})
            self._cond.wait(left)

    def _do_list(self, rt: ResourceType, ns: str | None, q: dict) -> dict:
        rv_s, match, cont = q.get("resourceVersion", ""), q.get("resourceVersionMatch", ""), q.get("continue", "")
        label_ok = parse_label_selector(q.get("labelSelector"))
        field_ok = parse_field_selector(q.get("fieldSelector"), rt)
        if match and not rv_s:
            raise invalid(rt, "", [("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden unless "
                                    "resourceVersion is provided")])
        if match and match not in ("Exact", "NotOlderThan"):
            raise invalid(rt, "", [("resourceVersionMatch", f'Unsupported value: "{match}"')])
        if match == "Exact" and rv_s == "0":
            raise invalid(rt, "", [("resourceVersionMatch", 'Forbidden: resourceVersionMatch "exact" is forbidden '
                                    'for resourceVersion "0"')])
        if cont and rv_s and rv_s != "0":
            raise invalid(rt, "", [("resourceVersion", "Forbidden: specifying resource version is not allowed when "
                                    "using continue")])
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise bad_request(f"invalid limit {q.get('limit')!r}") from None
        start_after: tuple | None = None
        if cont:
            try:
                tok = _unb64(cont)
                list_rv, start_after = int(tok["rv"]), tuple(tok["start"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid: incorrect encoded start resourceVersion") from None
            if list_rv < self._compacted_rv:
                raise gone("The provided continue parameter is too old to display a consistent list result. You can "
                           "start a new list without the continue parameter, or use the continue value from the "
                           "response to get an inconsistent list.")
            state = self._state_at(rt, list_rv)
        elif rv_s and rv_s != "0":
            try:
                want = int(rv_s)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv_s}") from None
            if want > self._rv:
                self._wait_rv(want)
            if match == "Exact":
                if want < self._compacted_rv:
                    raise gone(f"too old resource version: {want} ({self._compacted_rv})")
                list_rv, state = want, self._state_at(rt, want)
            else:
                list_rv, state = self._rv, self._state_at(rt, self._rv)
        else:
            list_rv, state = self._rv, self._state_at(rt, self._rv)
        items = []
        for key in sorted(state):
            o = state[key]
            if ns and key[1] != ns:
                continue
            if start_after is not None and (key[1], key[2]) <= start_after:
                continue
            if not label_ok(o["metadata"].get("labels") or {}) or not field_ok(o):
                continue
            items.append((key, o))
        meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            last = items[-1][0]
            meta["continue"] = _b64({"v": "meta.k8s.io/v1", "rv": list_rv, "start": [last[1], last[2]]})
            meta["remainingItemCount"] = rest
        out_items = []
        for _, o in items:
            o = copy.deepcopy(o)
            if not rt.custom:  # typed lists omit kind/apiVersion on items, like the real server
                o.pop("kind", None)
                o.pop("apiVersion", None)
            out_items.append(o)
        return {"apiVersion": rt.api_version, "kind": rt.kind + "List", "metadata": meta, "items": out_items}

    # ---- public control API ------------------------------------------------------------------------

    def _ns_of(self, rt: ResourceType, obj: dict, ns: str | None) -> str | None:
        if not rt.namespaced:
            return None
        return ns or obj.get("metadata", {}).get("namespace") or "default"

    def create(self, obj: dict, namespace: str | None = None, field_manager: str = "fake-kube-test") -> dict:
        rt = self._resource_for_obj(obj)
        with self._lock:
            return self._do_create(rt, self._ns_of(rt, obj, namespace), obj, field_manager)

    def update(self, obj: dict, namespace: str | None = None, subresource: str | None = None,
               field_manager: str = "fake-kube-test") -> dict:
        """PUT semantics (a stale metadata.resourceVersion raises 409). Custom resources need the
        resourceVersion; pass the current object from get() after modifying it."""
        rt = self._resource_for_obj(obj)
        with self._lock:
            return self._do_update(rt, self._ns_of(rt, obj, namespace), obj["metadata"]["name"], obj,
                                   field_manager, subresource)[1]

    def apply(self, obj: dict, namespace: str | None = None, field_manager: str = "fake-kube-test",
              force: bool = True, subresource: str | None = None) -> dict:
        """Server-side apply (creates when absent)."""
        rt = self._resource_for_obj(obj)
        with self._lock:
            return self._do_apply(rt, self._ns_of(rt, obj, namespace), obj["metadata"]["name"], obj, field_manager,
                                  subresource, force, False)[1]

    def patch(self, kind: str, namespace: str | None, name: str, patch: Any, patch_type: str = "merge",
              subresource: str | None = None, field_manager: str = "fake-kube-test") -> dict:
        rt = self.resource_for(kind)
        ptype = PATCH_TYPES.get(patch_type, patch_type)
        with self._lock:
            return self._do_patch(rt, namespace, name, patch, ptype, field_manager, subresource)[1]

    def patch_status(self, kind: str, namespace: str | None, name: str, status: dict) -> dict:
        return self.patch(kind, namespace, name, {"status": status}, "merge", "status")

    def delete(self, kind: str, namespace: str | None, name: str, propagation_policy: str | None = None) -> dict:
        rt = self.resource_for(kind)
        with self._lock:
            return self._do_delete(rt, namespace, name, {"propagationPolicy": propagation_policy})[1]

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        rt = self.resource_for(kind)
        with self._lock:
            obj = self._objects.get(self._key(rt, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
        rt = self.resource_for(kind)
        with self._lock:
            return [copy.deepcopy(o) for k, o in sorted(self._objects.items())
                    if k[0] == rt.key and (namespace is None or k[1] == namespace)
                    and parse_label_selector(label_selector)(o["metadata"].get("labels") or {})]

    def changes(self, kind: str | None = None, name: str | None = None) -> list[tuple[str, str, str, str, str]]:
        """The retained change history (since the last compact()): (type, plural, namespace, name,
        resourceVersion) tuples, oldest first — what a watch from "0" would replay."""
        with self._lock:
            rt = self.resource_for(kind) if kind else None
            return [(c.type, c.rt.plural, c.namespace, c.name, str(c.rv)) for c in self._history
                    if (rt is None or c.rt.key == rt.key) and (name is None or c.name == name)]

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    def compact(self) -> str:
        """Drop the change history: watches and continue tokens from older resourceVersions get 410."""
        with self._cond:
            self._compacted_rv = self._rv
            self._history.clear()
            self._cond.notify_all()
            return str(self._rv)

    def close_watches(self) -> int:
        """End every open watch stream (as an API server restart would). Returns how many."""
        with self._cond:
            n = 0
            for w in self._watches:
                if not w.closed:
                    w.closed = True
                    n += 1
            self._cond.notify_all()
            return n

    def bookmark(self) -> int:
        """Send a BOOKMARK now on every open watch that allows bookmarks. Returns how many."""
        with self._cond:
            n = 0
            for w in self._watches:
                if w.bookmarks and not w.closed:
                    w.bookmark_requests += 1
                    n += 1
            self._cond.notify_all()
            return n

    def open_watches(self, kind: str | None = None) -> int:
        with self._lock:
            rt = self.resource_for(kind) if kind else None
            return sum(1 for w in self._watches if not w.closed and (rt is None or w.rt.key == rt.key))

    def inject_error(self, code: int, *, method: str | None = None, path_contains: str | None = None,
                     times: int = 1, message: str = "injected failure", retry_after: int | None = None) -> None:
        """Answer the next `times` matching requests with an error Status (e.g. 500, 429, 503)."""
        with self._cond:
            self._faults.append({"code": code, "method": method, "path": path_contains, "times": times,
                                 "message": message, "retry_after": retry_after})

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        """Wait until predicate() is truthy; re-evaluated on every request and every change (the
        predicate runs with the server's lock held, so it may call get()/requests but not block)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                v = predicate()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake kube: timed out after {timeout}s waiting for {what or predicate}")
                self._cond.wait(min(left, 0.5))  # a cap, so predicates on outside state are re-checked

    # ---- request log helpers ------------------------------------------------------------------------

    def requests_matching(self, method: str | None = None, path: str | re.Pattern | None = None) -> list[dict]:
        with self._lock:
            out = []
            for r in self.requests:
                if method and r["method"] != method:
                    continue
                if isinstance(path, re.Pattern) and not path.search(r["path"]):
                    continue
                if isinstance(path, str) and path not in r["path"]:
                    continue
                out.append(r)
            return out

    def status_patches(self, name: str, namespace: str | None = None, plural: str = "mcpbackends") -> list[Any]:
        """Bodies of PATCH/PUT requests to .../{plural}/{name}/status, in order."""
        pat = re.compile(rf"/namespaces/{re.escape(namespace) if namespace else '[^/]+'}/{plural}/"
                         rf"{re.escape(name)}/status$")
        return [r["body"] for r in self.requests_matching(path=pat) if r["method"] in ("PATCH", "PUT")]

    def events(self, namespace: str | None = None) -> list[dict]:
        """Event objects (core v1 and events.k8s.io/v1) currently stored, oldest first."""
        with self._lock:
            evs = [copy.deepcopy(o) for k, o in self._objects.items()
                   if k[0][2] == "events" and (namespace is None or k[1] == namespace)]
            order = dict(self._created_rv)
        return sorted(evs, key=lambda o: order.get(o["metadata"]["uid"], 0))

    def event_writes(self, namespace: str | None = None) -> list[dict]:
        """Requests that created or patched Events, in order."""
        pat = re.compile(rf"/namespaces/{re.escape(namespace) if namespace else '[^/]+'}/events(/|$)")
        return [r for r in self.requests_matching(path=pat) if r["method"] in ("POST", "PATCH", "PUT")]

    def leases(self, namespace: str | None = None) -> list[dict]:
        return self.list("leases.coordination.k8s.io", namespace)

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # ---- called by the handler -------------------------------------------------------------------

    def _record(self, entry: dict) -> None:
        with self._cond:
            self.requests.append(entry)
            self._cond.notify_all()

    def _done(self, entry: dict, code: int) -> None:
        with self._cond:
            entry["code"] = code
            self._cond.notify_all()

    def _fault_for(self, method: str, path: str) -> dict | None:
        with self._lock:
            for f in self._faults:
                if f["times"] > 0 and (not f["method"] or f["method"] == method) and \
                        (not f["path"] or f["path"] in path):
                    f["times"] -= 1
                    return f
            return None


# ------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    kube: FakeKube
    server_version = "fake-kube"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # ---- plumbing --------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code: int, body: Any, content_type: str = "application/json", extra: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._entry_code = code

    def _error(self, e: KubeError, extra: dict | None = None) -> None:
        self._send(e.code, e.status, extra=extra)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        kube = self.kube
        url = urllib.parse.urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        raw = self._read_body()
        entry: dict[str, Any] = {"method": self.command, "path": path, "query": query, "content_type": ctype,
                                 "body": None, "raw_body": raw, "user_agent": self.headers.get("User-Agent", ""),
                                 "accept": self.headers.get("Accept", ""),
                                 "authorization": self.headers.get("Authorization", ""), "code": None, "time": time.time(),
                                 "watch": query.get("watch") in ("true", "1") or "/watch/" in path}
        self._entry_code = 0
        try:
            if raw:
                try:
                    entry["body"] = parse_body(raw, ctype)
                except KubeError:
                    entry["body"] = raw.decode("utf-8", "replace")
            kube._record(entry)
            if kube.require_token and kube.token and path not in ("/healthz", "/livez", "/readyz", "/version"):
                if self.headers.get("Authorization", "") != f"Bearer {kube.token}":
                    raise KubeError(401, "Unauthorized", "Unauthorized")
            fault = kube._fault_for(self.command, path)
            if fault:
                extra = {"Retry-After": str(fault["retry_after"])} if fault["retry_after"] is not None else None
                self._error(KubeError(fault["code"], fault["message"]), extra)
                return
            self._route(path, query, ctype, raw)
        except KubeError as e:
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug in the fake: answer like an apiserver panic would
            import traceback
            traceback.print_exc()
            try:
                self._error(KubeError(500, f"fake kube internal error: {e!r}", "InternalError"))
            except OSError:
                pass
        finally:
            kube._done(entry, self._entry_code)

    # ---- routing ------------------------------------------------------------------------------------

    def _route(self, path: str, q: dict, ctype: str, raw: bytes) -> None:
        kube = self.kube
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")] if path != "/" else []
        if self.command in ("GET", "HEAD"):
            disc = self._discovery(parts)
            if disc is not None:
                if isinstance(disc, str):
                    self._send(200, disc.encode(), "text/plain; charset=utf-8")
                else:
                    self._send(200, disc)
                return
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise KubeError(404, "the server could not find the requested resource", "NotFound", {})
        legacy_watch = False
        if rest[:1] == ["watch"]:
            legacy_watch, rest = True, rest[1:]
        ns = None
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        if not rest:
            raise KubeError(404, "the server could not find the requested resource", "NotFound", {})
        rt = kube._resource(group, version, rest[0])
        if rt is None or len(rest) > 3:
            raise KubeError(404, "the server could not find the requested resource", "NotFound", {})
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and (sub != "status" or not rt.status_subresource):
            raise KubeError(404, "the server could not find the requested resource", "NotFound", {})
        if rt.namespaced and ns is None and (name is not None or self.command != "GET"):
            raise KubeError(404, "the server could not find the requested resource", "NotFound", {})
        is_watch = legacy_watch or q.get("watch") in ("true", "1")
        m = self.command
        dry_run = q.get("dryRun") == "All"
        manager = q.get("fieldManager") or self._default_manager()
        body = lambda: parse_body(raw, ctype)
        if m in ("GET", "HEAD") and name is None:
            if is_watch:
                self._watch(rt, ns, q)
            else:
                with kube._lock:
                    out = kube._do_list(rt, ns, q)
                self._send(200, self._maybe_table(rt, out, q))
        elif m in ("GET", "HEAD"):
            if is_watch:
                q = dict(q)
                q["fieldSelector"] = ",".join(x for x in (q.get("fieldSelector"), f"metadata.name={name}") if x)
                self._watch(rt, ns, q)
            else:
                with kube._lock:
                    obj = copy.deepcopy(kube._get_obj(rt, ns, name))
                self._send(200, self._maybe_table(rt, obj, q))
        elif m == "POST" and name is None:
            with kube._lock:
                out = kube._do_create(rt, ns, body(), manager, dry_run)
            self._send(201, out)
        elif m == "PUT" and name is not None:
            with kube._lock:
                code, out = kube._do_update(rt, ns, name, body(), manager, sub, dry_run)
            self._send(code, out)
        elif m == "PATCH" and name is not None:
            force = q.get("force") == "true"
            if ctype == APPLY:
                mgr = q.get("fieldManager")
            else:
                mgr = manager
            with kube._lock:
                code, out = kube._do_patch(rt, ns, name, body(), ctype, mgr, sub, force, dry_run)
            self._send(code, out)
        elif m == "DELETE" and name is not None and sub is None:
            opts = body() if raw else {}
            for k in ("propagationPolicy", "gracePeriodSeconds"):
                if k in q:
                    opts = {**(opts or {}), k: q[k]}
            with kube._lock:
                code, out = kube._do_delete(rt, ns, name, opts, dry_run)
            self._send(code, out)
        elif m == "DELETE" and name is None:
            with kube._lock:
                lst = kube._do_list(rt, ns, {k: v for k, v in q.items() if k in ("labelSelector", "fieldSelector")})
                for item in lst["items"]:
                    kube._do_delete(rt, item["metadata"].get("namespace"), item["metadata"]["name"],
                                    body() if raw else {}, dry_run)
            self._send(200, {**lst, "items": lst["items"]})
        else:
            raise KubeError(405, f"the server does not allow this method on the requested resource",
                            "MethodNotAllowed", {})

    def _default_manager(self) -> str:
        """The real server names an Update's manager after the User-Agent's program name."""
        ua = self.headers.get("User-Agent", "") or "unknown"
        return ua.split("/")[0][:128] or "unknown"

    def _maybe_table(self, rt: ResourceType, out: dict, q: dict) -> dict:
        accept = self.headers.get("Accept", "")
        if "as=Table" not in accept:
            return out
        items = out["items"] if "items" in out else [out]
        include = q.get("includeObject", "Metadata")

        def row(o: dict) -> dict:
            r: dict[str, Any] = {"cells": [o["metadata"]["name"], _age(o["metadata"].get("creationTimestamp"))]}
            if include == "Object":
                r["object"] = {"apiVersion": rt.api_version, "kind": rt.kind, **o}
            elif include != "None":
                r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": o["metadata"]}
            return r

        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": out["metadata"].get("resourceVersion", ""),
                             **({"continue": out["metadata"]["continue"]} if out["metadata"].get("continue") else {})},
                "columnDefinitions": [
                    {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique "
                     "within a namespace.", "priority": 0},
                    {"name": "Age", "type": "date", "format": "", "description": "CreationTimestamp is a timestamp "
                     "representing the server time when this object was created.", "priority": 0}],
                "rows": [row(o) for o in items]}

    # ---- discovery -----------------------------------------------------------------------------------

    def _resource_list(self, group: str, version: str) -> dict | None:
        rts = [rt for rt in self.kube.resources if rt.group == group and rt.version == version]
        if not rts:
            return None
        res = []
        for rt in rts:
            r: dict[str, Any] = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                                 "kind": rt.kind, "verbs": rt.verbs}
            if rt.short_names:
                r["shortNames"] = list(rt.short_names)
            if rt.categories:
                r["categories"] = list(rt.categories)
            res.append(r)
            if rt.status_subresource:
                res.append({"name": rt.plural + "/status", "singularName": "", "namespaced": rt.namespaced,
                            "kind": rt.kind, "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": rts[0].api_version, "resources": res}

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for rt in self.kube.resources:
            if rt.group and rt.version not in groups.setdefault(rt.group, []):
                groups[rt.group].append(rt.version)
        return groups

    def _group(self, name: str, versions: list[str]) -> dict:
        vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": vs, "preferredVersion": vs[0]}

    def _discovery(self, parts: list[str]) -> dict | str | None:
        kube = self.kube
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return "ok"
        if parts == ["version"]:
            return {"major": kube.version[0], "minor": kube.version[1],
                    "emulationMajor": kube.version[0], "emulationMinor": kube.version[1],
                    "minCompatibilityMajor": kube.version[0], "minCompatibilityMinor": str(int(kube.version[1]) - 1),
                    "gitVersion": f"v{kube.version[0]}.{kube.version[1]}.0-fake",
                    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25.0", "compiler": "gc",
                    "platform": "linux/amd64"}
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                    "serverAddress": f"{kube.host}:{kube.port}"}]}
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1")
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [self._group(g, vs) for g, vs in self._groups().items()]}
        if len(parts) == 2 and parts[0] == "apis":
            vs = self._groups().get(parts[1])
            if vs is None:
                raise KubeError(404, "the server could not find the requested resource", "NotFound", {})
            return {"kind": "APIGroup", "apiVersion": "v1", **self._group(parts[1], vs)}
        if len(parts) == 3 and parts[0] == "apis":
            rl = self._resource_list(parts[1], parts[2])
            if rl is None:
                raise KubeError(404, "the server could not find the requested resource", "NotFound", {})
            return rl
        if parts == ["openapi", "v3"]:
            paths = {}
            for gv in sorted({rt.api_version for rt in kube.resources}):
                p = "api/v1" if gv == "v1" else f"apis/{gv}"
                paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash=FAKE{abs(hash(gv)) % 10**8}"}
            return {"paths": paths}
        if parts[:2] == ["openapi", "v3"] and len(parts) > 2:
            return self._openapi_v3("/".join(parts[2:]))
        return None

    def _openapi_v3(self, gvpath: str) -> dict:
        """A minimal OpenAPI v3 document: enough for kubectl to see that PATCH/POST/PUT accept
        fieldValidation (so it validates server-side) — no schemas, so kubectl falls back to a
        JSON merge patch for custom resources, as with a CRD without a structural schema."""
        if gvpath == "api/v1":
            group, version = "", "v1"
        elif gvpath.startswith("apis/") and gvpath.count("/") == 2:
            _, group, version = gvpath.split("/")
        else:
            raise KubeError(404, "the server could not find the requested resource", "NotFound", {})
        rts = [rt for rt in self.kube.resources if rt.group == group and rt.version == version]
        if not rts:
            raise KubeError(404, "the server could not find the requested resource", "NotFound", {})
        fv = {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        fm = {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        paths: dict[str, Any] = {}
        for rt in rts:
            base = f"/{gvpath}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"/{gvpath}/{rt.plural}"
            gvk = [{"group": rt.group, "version": rt.version, "kind": rt.kind}]
            op = lambda verb: {"x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk[0],
                               "parameters": [fv, fm], "responses": {"200": {"description": "OK"}}}
            paths[base] = {"get": op("list"), "post": op("post")}
            paths[base + "/{name}"] = {"get": op("get"), "put": op("put"), "patch": op("patch"),
                                       "delete": op("delete")}
            if rt.status_subresource:
                paths[base + "/{name}/status"] = {"get": op("get"), "put": op("put"), "patch": op("patch")}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0-fake"}, "paths": paths,
                "components": {"schemas": {}}}

    # ---- watch ---------------------------------------------------------------------------------------

    def _watch(self, rt: ResourceType, ns: str | None, q: dict) -> None:
        kube = self.kube
        rv_s = q.get("resourceVersion", "")
        match = q.get("resourceVersionMatch", "")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        sie = q.get("sendInitialEvents")
        send_initial = sie in ("true", "1")
        label_ok = parse_label_selector(q.get("labelSelector"))
        field_ok = parse_field_selector(q.get("fieldSelector"), rt)
        try:
            timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds {q.get('timeoutSeconds')!r}") from None

        def matches(o: dict) -> bool:
            return (ns is None or o["metadata"].get("namespace") == ns) and \
                label_ok(o["metadata"].get("labels") or {}) and field_ok(o)

        sie_set = sie not in (None, "")
        if sie_set:
            if send_initial and not bookmarks:
                raise invalid(rt, "", [("allowWatchBookmarks", "Forbidden: sendInitialEvents requires setting "
                                        "allowWatchBookmarks to true")])
            if match != "NotOlderThan":
                raise invalid(rt, "", [("resourceVersionMatch", "Forbidden: sendInitialEvents requires setting "
                                        "resourceVersionMatch to NotOlderThan")])
        elif match:
            raise invalid(rt, "", [("resourceVersionMatch", "Forbidden: resourceVersionMatch is forbidden for watch "
                                    "unless sendInitialEvents is provided")])
        expired = None
        initial: list[dict] = []
        with kube._cond:
            if rv_s not in ("", "0"):
                try:
                    want = int(rv_s)
                except ValueError:
                    raise bad_request(f"invalid resource version: {rv_s}") from None
                if want > kube._rv:
                    kube._wait_rv(want)
            start_rv = kube._rv
            w = Watch(rt, ns, matches, bookmarks, q)
            if send_initial or (not sie_set and rv_s in ("", "0")):
                # legacy semantics of a watch without a resourceVersion: synthetic ADDED events for the
                # current state first; with sendInitialEvents=true the same, then the end bookmark
                for key, o in sorted(kube._objects.items()):
                    if key[0] == rt.key and matches(o):
                        initial.append({"type": "ADDED", "object": copy.deepcopy(o)})
            elif rv_s not in ("", "0"):
                want = int(rv_s)
                if want < kube._compacted_rv:
                    expired = gone(f"too old resource version: {want} ({kube._compacted_rv})")
                else:
                    w.queue.extend(ch for ch in kube._history if ch.rv > want and ch.rt.key == rt.key)
            if expired is None:
                kube._watches.append(w)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self._entry_code = 200
        self.close_connection = True
        try:
            if expired is not None:
                self._chunk({"type": "ERROR", "object": expired.status})
                return
            for ev in initial:
                self._chunk(ev)
            if send_initial:
                self._chunk(self._bookmark(rt, str(start_rv), initial_end=True))
            self._stream(w, timeout)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with kube._cond:
                if w in kube._watches:
                    kube._watches.remove(w)
                kube._cond.notify_all()
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass

    def _bookmark(self, rt: ResourceType, rv: str, initial_end: bool = False) -> dict:
        md: dict[str, Any] = {"resourceVersion": rv}
        if initial_end:
            md["annotations"] = {INITIAL_EVENTS_END: "true"}
        return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": md}}

    def _chunk(self, event: dict) -> None:
        data = (json.dumps(event) + "\n").encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _peer_closed(self) -> bool:
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if r:
                return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True
        return False

    def _stream(self, w: Watch, timeout: float | None) -> None:
        kube = self.kube
        t0 = time.monotonic()
        end = t0 + timeout if timeout else None
        interval = kube.bookmark_interval
        next_bm = t0 + interval if (w.bookmarks and interval) else None
        bm_seen = 0
        while True:
            out: list[dict] = []
            with kube._cond:
                while True:
                    if w.closed or kube._stopping:
                        return
                    nowt = time.monotonic()
                    if w.queue or w.bookmark_requests != bm_seen or (next_bm and nowt >= next_bm) or \
                            (end and nowt >= end):
                        break
                    deadlines = [x for x in (next_bm, end) if x]
                    wait = min([0.5] + [d - nowt for d in deadlines])
                    kube._cond.wait(max(wait, 0.001))
                    if self._peer_closed():
                        return
                queue, w.queue = w.queue, []
                for ch in queue:
                    ev = self._filter(ch, w.matches)
                    if ev:
                        out.append(ev)
                want_bm = w.bookmark_requests != bm_seen or (next_bm and time.monotonic() >= next_bm)
                bm_seen = w.bookmark_requests
                rv_now = str(kube._rv)
                timed_out = end and time.monotonic() >= end
            for ev in out:
                self._chunk(ev)
            if want_bm and w.bookmarks:
                self._chunk(self._bookmark(w.rt, rv_now))
                with kube._cond:
                    kube.bookmarks_sent += 1
                    kube.last_bookmark_rv = rv_now
                    kube._cond.notify_all()
                if interval:
                    next_bm = time.monotonic() + interval
            if timed_out:
                return

    @staticmethod
    def _filter(ch: Change, matches: Callable[[dict], bool]) -> dict | None:
        cur = matches(ch.obj)
        if ch.type == "ADDED":
            return {"type": "ADDED", "object": ch.obj} if cur else None
        if ch.type == "DELETED":
            return {"type": "DELETED", "object": ch.obj} if matches(ch.prev or ch.obj) else None
        old = ch.prev is not None and matches(ch.prev)
        if cur and old:
            return {"type": "MODIFIED", "object": ch.obj}
        if cur:
            return {"type": "ADDED", "object": ch.obj}
        if old:  # stopped matching: the real server sends DELETED with the previous state at the new RV
            prev = copy.deepcopy(ch.prev)
            prev["metadata"]["resourceVersion"] = ch.obj["metadata"]["resourceVersion"]
            return {"type": "DELETED", "object": prev}
        return None


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A fake Kubernetes API server (for manual runs of the gateway).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--kubeconfig", help="write a kubeconfig pointing at the server here")
    ap.add_argument("--namespace", default="default")
    ap.add_argument("--token", default="fake-kube-token", help="bearer token to require ('' = none)")
    ap.add_argument("--bookmark-interval", type=float, default=1.0)
    ap.add_argument("-f", "--file", action="append", default=[], help="YAML/JSON objects to apply at start")
    args = ap.parse_args(argv)
    fk = FakeKube(args.host, args.port, bookmark_interval=args.bookmark_interval, token=args.token or None).start()
    if args.kubeconfig:
        fk.write_kubeconfig(args.kubeconfig, args.namespace)
    for f in args.file:
        text = Path(f).read_text()
        docs = list(_yaml.safe_load_all(text)) if _yaml else [json.loads(text)]
        for d in docs:
            if d:
                fk.apply(d, namespace=d.get("metadata", {}).get("namespace") or args.namespace)
    print(f"fake kube-apiserver listening on {fk.url}" + (f" (kubeconfig {args.kubeconfig})" if args.kubeconfig else ""),
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fk.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

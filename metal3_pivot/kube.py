"""Kubernetes API access: kubeconfig loading, raw-dict requests, typed errors, retries.

Why raw dicts over an async HTTP client rather than a typed model library: the mover handles arbitrary
CRD kinds it only learns about at run time, copies objects field-for-field between clusters, and must
move thousands of them quickly; model (de)serialisation would cost time and risk dropping fields a model
does not know. lightkube supplies what is hard to get right (kubeconfig contexts, exec/token/cert auth,
TLS) and we do the requests ourselves (docs/architecture.md, "Kubernetes client").
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import httpx2 as httpx
import orjson
import yaml
from lightkube.config.client_adapter import user_auth, verify_cluster
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError

from metal3_pivot.errors import (
    ApiError,
    KubeconfigError,
    NestingTooDeepError,
    UnknownContextError,
    UnreachableClusterError,
)
from metal3_pivot.findings import Code, Finding
from metal3_pivot.http import ApiTransport

Obj = dict[str, Any]

@dataclass(frozen=True)
class Write:
    """A write the API server accepted: what the write hooks see."""

    server: str
    method: str
    path: str
    #: wall-clock time (time.time()) the accepted attempt was sent: a journal of writes can then tell what a
    #: process started after some event from what was merely in flight
    started: float = 0.0


WriteHook = Callable[[Write], Awaitable[None]]

#: Observers of every accepted write of every client in this process, awaited in order before the write
#: returns. Empty in normal use: the test seams (lab/seams.py: a journal of writes, a pause after each,
#: a SIGKILL after the k-th) install themselves here; the engine reads no environment for them.
WRITE_HOOKS: list[WriteHook] = []


def add_write_hook(hook: WriteHook) -> Callable[[], None]:
    """Install a write hook; returns the function that removes it again."""
    WRITE_HOOKS.append(hook)
    return lambda: WRITE_HOOKS.remove(hook)


#: what the API server sees as the client (it names the default field manager): httpx's, as before the
#: transport of metal3_pivot/http.py, so objects a move writes keep the manager name they had
USER_AGENT = f"python-httpx2/{httpx.__version__}"
#: what a write asks for when its caller needs only the object's metadata (its UID, its managedFields): the
#: API server then encodes, and the client decodes, no spec and no status (a custom resource's DELETE
#: answers with the whole object; a host's status is its hardware inventory). JSON of the whole object
#: stays acceptable, for a server that cannot convert. On the same clusters at 1,000 hosts: the move 11 %
#: faster forward, the same back; the source apiserver's CPU in the deletes 13 % / 2 % lower
#: (docs/performance.md). The cores are what a move waits for.
METADATA_ONLY = b"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
#: the same for a list: each item's metadata alone (what a list needs that reads only names, UIDs and owners)
METADATA_LIST = b"application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"

#: statuses worth retrying: throttled, server busy, or transient proxy/gateway failures
RETRYABLE = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives in the REST API; learned from CRDs or known for core kinds."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


SECRET = ResourceType("", "v1", "Secret", "secrets")
CONFIGMAP = ResourceType("", "v1", "ConfigMap", "configmaps")
NAMESPACE = ResourceType("", "v1", "Namespace", "namespaces", namespaced=False)
CRD = ResourceType("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                   namespaced=False)
LEASE = ResourceType("coordination.k8s.io", "v1", "Lease", "leases")
DEPLOYMENTS = ResourceType("apps", "v1", "Deployment", "deployments")
VALIDATING_WEBHOOKS = ResourceType("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
                                   "validatingwebhookconfigurations", namespaced=False)


def resource_of(path: str) -> str:
    """The resource (plural, and subresource if any) a request path names: "baremetalhosts/status" for
    /apis/metal3.io/v1alpha1/namespaces/metal3/baremetalhosts/h1/status, "namespaces" for /api/v1/namespaces."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return ""
    return rest[0] + (f"/{rest[2]}" if len(rest) >= 3 else "")


def group_of(api_version: str) -> str:
    """The API group of an apiVersion ("" for the core group's "v1")."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def resource_type_of_crd(crd: Obj) -> ResourceType:
    """The storage version of a CRD: what the apiserver persists, so what we read and write."""
    spec = crd["spec"]
    version = next((v["name"] for v in spec["versions"] if v.get("storage")), spec["versions"][0]["name"])
    return ResourceType(spec["group"], version, spec["names"]["kind"], spec["names"]["plural"],
                        spec["scope"] == "Namespaced")


# ---------------------------------------------------------------------------------------------- kubeconfig

def load_kubeconfig(source: str | Path, context: str | None = None, *, label: str = "kubeconfig") -> SingleConfig:
    """Parse a kubeconfig given as a path or as its YAML text, and pick a context.

    Errors name the file (never its content: a kubeconfig holds credentials) and what to do.
    """
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.strip()
                                    and not source.lstrip().startswith(("{", "apiVersion"))):
        path = Path(source).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise KubeconfigError(f"{label}: cannot read {path}: {err.strerror}") from None
        except UnicodeDecodeError as err:
            raise KubeconfigError(f"{path} is not UTF-8 text (byte {err.start}): a kubeconfig is YAML, "
                                  "which must be UTF-8") from None
        where = str(path)
    else:
        text, where, path = str(source), f"{label} (inline)", None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise KubeconfigError(f"{where} is not valid YAML{at}") from None
    except RecursionError:
        raise KubeconfigError(f"{where} is not a kubeconfig: it nests deeper than a YAML parser follows") from None
    if not isinstance(data, dict) or not data.get("clusters") or not data.get("contexts"):
        raise KubeconfigError(f"{where} is not a kubeconfig: it needs `clusters` and `contexts`")
    try:
        config = KubeConfig.from_dict(data, fname=path)
    except (ConfigError, KeyError, TypeError, ValueError) as err:
        raise KubeconfigError(f"{where} is malformed: {err}") from None
    names = sorted(config.contexts)
    if context is not None and context not in config.contexts:
        raise UnknownContextError(f"{where} has no context {context!r}; it has: {', '.join(names) or 'none'}")
    if context is None and not config.current_context:
        raise UnknownContextError(f"{where} has no current-context; pick one of: {', '.join(names)}")
    try:
        single = config.get(context)
    except (ConfigError, KeyError) as err:
        raise KubeconfigError(f"{where}: context {context or config.current_context!r} is incomplete: {err}") from None
    if single is None or single.cluster is None or not single.cluster.server:
        raise KubeconfigError(f"{where}: context {context or config.current_context!r} names no cluster server")
    return single


# ---------------------------------------------------------------------------------------------- client

class Kube:
    """An async client for one cluster. Create it inside the event loop that uses it."""

    def __init__(self, config: SingleConfig, *, name: str = "cluster", concurrency: int = 32,
                 timeout: float = 30.0, retries: int = 6) -> None:
        self.name = name
        self.server = config.cluster.server
        if config.user is None:
            raise KubeconfigError(f"{name}: the kubeconfig context names no user")
        u = config.user
        if bool(u.client_cert or u.client_cert_data) != bool(u.client_key or u.client_key_data):
            has, lacks = (("certificate", "key") if u.client_cert or u.client_cert_data
                          else ("key", "certificate"))
            raise KubeconfigError(f"{name}: the kubeconfig's user has a client {has} but no client {lacks} "
                                  f"(client-{lacks}-data or client-{lacks}): add it, or use the kubeconfig the "
                                  "cluster's installer wrote")
        try:
            verify = verify_cluster(config.cluster, config.user, config.abs_file, trust_env=False)
            auth = user_auth(config.user)
        except (ConfigError, OSError, ValueError) as err:
            raise KubeconfigError(f"{name}: credentials in the kubeconfig are unusable: {err}") from None
        self._transport = ApiTransport(verify, max_connections=concurrency)
        # httpx in front only where it authenticates (tokens, exec plugins, basic): its request building costs
        # ~0.5 ms of CPU per request, which a client certificate (in the SSL context) does not need
        self._http = httpx.AsyncClient(base_url=self.server, auth=auth, timeout=httpx.Timeout(timeout),
                                       trust_env=False, transport=self._transport) if auth is not None else None
        url = httpx.URL(self.server)
        self._origin = (url.scheme, url.host, url.port)
        self._base = url.raw_path.rstrip(b"/")      # a server behind a path prefix (a proxy's /k8s/clusters/x)
        self._headers = [(b"Host", url.netloc), (b"Accept", b"*/*"), (b"Accept-Encoding", b"gzip"),
                         (b"User-Agent", USER_AGENT.encode())]
        self._headers_accepting = {accept: [(n, accept if n == b"Accept" else v) for n, v in self._headers]
                                   for accept in (METADATA_ONLY, METADATA_LIST)}
        self._timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        self.retries = retries
        #: called before every attempt of every write (not reads); raising stops the write. The move lock
        #: (lock.py) installs its check here while held, so that no write of a mover that lost it is sent
        self.write_guard: Callable[[str, str], None] | None = None
        self.writes = 0  # counted for fault-injection tests and progress
        #: the same, per HTTP method (POST creates, DELETE, PATCH, PUT): what a benchmark prices each write at
        self.writes_by_method: Counter[str] = Counter()
        #: and per method and resource ("PATCH baremetalhosts/status"): a host's patch costs the API server
        #: several times a Secret's, so a benchmark prices patches by what they patch
        self.writes_by_resource: Counter[str] = Counter()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        await self._transport.aclose()

    async def _send(self, method: str, path: str, body: bytes | None, params: Mapping[str, str] | None,
                    content_type: str, accept: bytes | None = None) -> tuple[int, bytes]:
        """(status, body) of one request, straight to the transport unless httpx must authenticate it.
        `accept`: METADATA_ONLY or METADATA_LIST, else any JSON."""
        if self._http is not None:
            extra = {"Content-Type": content_type} if body is not None else {}
            if accept is not None:
                extra["Accept"] = accept.decode()
            resp = await self._http.request(method, path, content=body, params=params, headers=extra or None)
            return resp.status_code, resp.content
        target = self._base + path.encode()
        if params:
            target += b"?" + urlencode(params).encode()
        headers = self._headers if accept is None else self._headers_accepting[accept]
        if body is not None:
            headers = [*headers, (b"Content-Type", content_type.encode()),
                       (b"Content-Length", str(len(body)).encode())]
        status, answer_headers, content = await self._transport.exchange(
            *self._origin, method, target, headers, body or b"", self._timeouts)
        if content and any(n.lower() == b"content-encoding" and v.lower() == b"gzip" for n, v in answer_headers):
            content = zlib.decompress(content, 16 + zlib.MAX_WBITS)
        return status, content

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- core request with retries ----------------------------------------------------------------------
    async def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
                      content_type: str = "application/json", ok_missing: bool = False,
                      metadata_only: bool = False, accept: bytes | None = None) -> Obj | None:
        """`metadata_only`: answer with the object's metadata alone (METADATA_ONLY), where the caller needs no more;
        `accept`: another Accept than any JSON (METADATA_LIST)."""
        accept = METADATA_ONLY if metadata_only else accept
        delay = 0.05
        for attempt in range(self.retries + 1):
            if method != "GET" and self.write_guard is not None:
                self.write_guard(method, path)
            started = time.time()
            try:
                status, content = await self._send(method, path, None if body is None else _encode(body), params,
                                                   content_type, accept)
            except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                if attempt == self.retries:
                    raise UnreachableClusterError(f"{self.name}: cannot reach {self.server}: {err}") from None
            except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                    httpx.PoolTimeout) as err:
                if attempt == self.retries:
                    raise UnreachableClusterError(f"{self.name}: {method} {path} failed: {err!r}") from None
            else:
                if status < 300:
                    if method != "GET":
                        self.writes += 1
                        self.writes_by_method[method] += 1
                        self.writes_by_resource[f"{method} {resource_of(path)}"] += 1
                        for hook in WRITE_HOOKS:
                            await hook(Write(self.server, method, path, started))
                    return _decode(content, self.name, method, path) if content else {}
                if status == 404 and ok_missing:
                    return None
                answer = _json_or_none(content)
                if status not in RETRYABLE or attempt == self.retries or _too_large(answer):
                    raise ApiError.from_response(self.name, method, path, status, answer)
            await asyncio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    # -- verbs -------------------------------------------------------------------------------------------
    async def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> Obj | None:
        return await self.request("GET", rt.path(namespace, name), ok_missing=True)

    async def list(self, rt: ResourceType, namespace: str | None = None, *,
                   label_selector: str | None = None, chunk: int = 500) -> list[Obj]:
        return [o async for o in self.iter_list(rt, namespace, label_selector=label_selector, chunk=chunk)]

    async def iter_list(self, rt: ResourceType, namespace: str | None = None, *,
                        label_selector: str | None = None, chunk: int = 500,
                        metadata_only: bool = False) -> AsyncIterator[Obj]:
        """`metadata_only`: each item is its metadata alone, under its own apiVersion and kind (the API server
        sends each as a PartialObjectMetadata; the graph keys objects by group and kind)."""
        params: dict[str, str] = {"limit": str(chunk)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            page = await self.request("GET", rt.path(namespace), params=params, ok_missing=True,
                                      accept=METADATA_LIST if metadata_only else None)
            if page is None:
                return
            for item in page.get("items") or []:
                if metadata_only:
                    item["apiVersion"], item["kind"] = rt.api_version, rt.kind
                else:
                    item.setdefault("apiVersion", rt.api_version)
                    item.setdefault("kind", rt.kind)
                yield item
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            params["continue"] = token

    async def create(self, rt: ResourceType, obj: Obj, *, manager: str | None = None,
                     metadata_only: bool = False) -> Obj:
        """`manager`: the field manager the API server records as the creator (default: from the user agent).
        `metadata_only`: the answer is the created object's metadata alone (see `request`)."""
        ns = obj["metadata"].get("namespace") if rt.namespaced else None
        return cast(Obj, await self.request("POST", rt.path(ns), body=obj, params=_manager(manager),
                                            metadata_only=metadata_only))

    async def replace(self, rt: ResourceType, obj: Obj, *, manager: str | None = None,
                      metadata_only: bool = False) -> Obj:
        md = obj["metadata"]
        return cast(Obj, await self.request("PUT", rt.path(md.get("namespace") if rt.namespaced else None,
                                                            md["name"]), body=obj, params=_manager(manager),
                                            metadata_only=metadata_only))

    async def patch(self, rt: ResourceType, name: str, namespace: str | None, patch: Any, *,
                    kind: str = "merge", sub: str | None = None, ok_missing: bool = False,
                    metadata_only: bool = False) -> Obj | None:
        ctype = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
                 "strategic": "application/strategic-merge-patch+json"}[kind]
        return await self.request("PATCH", rt.path(namespace, name, sub), body=patch, content_type=ctype,
                                  ok_missing=ok_missing, metadata_only=metadata_only)

    async def apply(self, rt: ResourceType, obj: Obj, *, manager: str = "metal3-pivot", force: bool = True) -> Obj:
        """Server-side apply (CRDs can exceed the 256 KiB client-side-apply annotation limit)."""
        md = obj["metadata"]
        params = {"fieldManager": manager, "force": "true" if force else "false"}
        return cast(Obj, await self.request(
            "PATCH", rt.path(md.get("namespace") if rt.namespaced else None, md["name"]), body=obj,
            params=params, content_type="application/apply-patch+yaml"))

    async def delete(self, rt: ResourceType, name: str, namespace: str | None = None, *,
                     propagation: str | None = None, preconditions: dict[str, str] | None = None) -> bool:
        body: Obj | None = None
        if propagation or preconditions:
            body = {"kind": "DeleteOptions", "apiVersion": "v1"}
            if propagation:
                body["propagationPolicy"] = propagation
            if preconditions:
                body["preconditions"] = preconditions
        # the answer is not read (a custom resource's is the whole object): its metadata is enough
        return await self.request("DELETE", rt.path(namespace, name), body=body, ok_missing=True,
                                  metadata_only=True) is not None

    async def version(self) -> Obj:
        return cast(Obj, await self.request("GET", "/version"))


def _encode(body: Any) -> bytes:
    """A request body as JSON: by orjson (a fifth of the standard library's time on a host), or by the
    standard library for what orjson refuses (integers beyond 64 bits, nesting deeper than 255 levels)."""
    try:
        return orjson.dumps(body)
    except TypeError:      # orjson.JSONEncodeError is a TypeError
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _manager(manager: str | None) -> dict[str, str] | None:
    return {"fieldManager": manager} if manager else None


def _decode(content: bytes, cluster: str, method: str, path: str) -> Obj:
    """The answer's JSON, parsed by orjson: a discovery at 1,000 hosts parses ~20 MB of lists per kind of
    host object, and orjson takes ~30 % less time than the standard library's parser on them (measured
    with the cyclic collector off, as discovery runs: discovery.no_cyclic_gc). orjson stops at 1,024
    levels of nesting (the API server accepts up to 10,000); an answer orjson refuses goes to the
    standard library's parser, which raises its own error for what is not JSON and follows as deep as
    Python's recursion limit lets it (about 900 levels by default, so normally not deeper: a process that
    raises the limit, as the edge tests do, reads such objects). An object nested deeper than that is
    refused by name, never a traceback; this happens while reading, so before any write of a move. What
    is read is refused by the pre-flight beyond 100 levels (preflight.MAX_DEPTH)."""
    try:
        return cast(Obj, orjson.loads(content))
    except orjson.JSONDecodeError:
        pass
    try:
        return cast(Obj, json.loads(content))
    except RecursionError:
        where = f"{method} {path}"
        raise NestingTooDeepError(
            f"{cluster}: {where}: an object in the answer is nested deeper than metal3-pivot can read (about "
            f"{max(READ_DEPTH, sys.getrecursionlimit() - 100)} levels); nothing was changed: find it "
            "(`kubectl get ... -o json`), flatten it or move it by hand",
            [Finding(Code.TOO_DEEP, f"{cluster}: {where}", "nested too deep")]) from None


#: the deepest nesting orjson parses
READ_DEPTH = 1024


def _too_large(body: Obj | None) -> bool:
    """etcd refused the request for its size (HTTP 500): retrying cannot help."""
    return "request is too large" in str((body or {}).get("message", ""))


def _json_or_none(content: bytes) -> Obj | None:
    try:
        data = orjson.loads(content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None

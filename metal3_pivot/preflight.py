"""Pre-flight: every reason to refuse a move, found before the first write.

All findings are collected (an operator fixing one problem at a time across several runs is slow and
error-prone) and raised as the most specific PreflightError subclass that covers them all. Each rule
is a small function of the plan; `RULES` lists them in the order their findings are reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from functools import cmp_to_key
from typing import Any

import orjson

from metal3_pivot import apiversion
from metal3_pivot.discovery import packed_overcount
from metal3_pivot.errors import PREFLIGHT_ERRORS, PreflightError
from metal3_pivot.findings import Code, Finding
from metal3_pivot.graph import BMH_GROUP, CAPI_GROUP, Node
from metal3_pivot.inventory import version_key
from metal3_pivot.plan import (
    BMH_STATUS,
    CLUSTERCLASS_PAUSED,
    DELETE_FOR_MOVE,
    PAUSED_BY,
    Plan,
    copy_annotations,
    copy_manager,
    status_annotation_of,
)

__all__ = ["BACKUP_RULES", "RESTORE_RULES", "RULES", "check", "findings", "version_at_least"]

#: BareMetalHost provisioning states a host may be moved in: steady states only
MOVABLE_HOST_STATES = frozenset({"", "unmanaged", "available", "ready", "provisioned", "externally provisioned",
                                 "detached"})

#: a rule: the plan and the namespaces asked for -> its findings
Rule = Callable[[Plan, Sequence[str]], Iterator[Finding]]


def check(plan: Plan, namespaces: Sequence[str], rules: Sequence[Rule] | None = None) -> None:
    problems = findings(plan, namespaces, rules)
    if not problems:
        return
    codes = {p.code for p in problems}
    cls = PREFLIGHT_ERRORS[codes.pop()] if len(codes) == 1 else PreflightError
    lines = "\n".join(f"  - {p}" for p in problems[:50])
    more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
    raise cls(f"move refused, nothing was changed ({len(problems)} problem(s)):\n{lines}{more}", problems)


def findings(plan: Plan, namespaces: Sequence[str], rules: Sequence[Rule] | None = None) -> list[Finding]:
    """Every rule's findings, in RULES order (or the given rules': a backup or a restore checks fewer)."""
    return [f for rule in (RULES if rules is None else rules) for f in rule(plan, namespaces)]


def _condition(obj: dict[str, Any], kind: str) -> bool:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return bool(cond.get("status") == "True")
    return False


#: Kubernetes' limit on the total size of an object's annotations (keys + values), bytes
ANNOTATIONS_LIMIT = 256 * 1024
#: etcd's default --max-request-bytes: the largest object an API server with a default etcd stores. The
#: margin covers the key and the request's framing (measured: a custom resource of 1,572,752 bytes of
#: JSON is stored, 30 bytes more are refused with "etcdserver: request is too large")
ETCD_REQUEST_LIMIT = 1536 * 1024
ETCD_MARGIN = 1024


def annotations_size(annotations: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


def stored_size(node: Node, added: int) -> int:
    """What the copy will weigh in etcd, from above: the source object's JSON (managedFields included),
    plus what we add (twice: the annotation and its managedFields entry). Secrets and ConfigMaps are
    stored as protobuf, where `data` counts as raw bytes, not base64."""
    # orjson writes compact UTF-8, what json.dumps(separators=(",", ":"), ensure_ascii=False) writes, 5x faster;
    # it follows 255 levels, and this runs only on objects within MAX_DEPTH
    size = len(orjson.dumps(node.obj)) - packed_overcount(node.obj)
    if node.key.group_kind == ("", "Secret"):
        size -= sum(len(v) - len(v) * 3 // 4 for v in (node.obj.get("data") or {}).values())
    return size + 2 * added + 256


#: the deepest nesting of maps and lists the engine copies. The API server accepts up to 10,000 levels;
#: Python copies and serialises recursively (about 2 stack frames per level, 1,000 frames in all), and real
#: Cluster-API objects nest fewer than 20 levels
MAX_DEPTH = 100


def depth(value: Any) -> int:
    """How deeply maps and lists nest in `value` (a scalar: 0), without recursion. Only containers are
    visited: it runs on every object of a move (13,160 at 1,000 hosts) in every pre-flight."""
    if not isinstance(value, (dict, list)):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > deepest:
            deepest = level
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                stack.append((child, level + 1))
    return deepest


def _size_problems(node: Node) -> list[Finding]:
    levels = depth(node.obj)
    if levels > MAX_DEPTH:
        return [Finding(Code.TOO_DEEP, str(node.key),
                        f"nests {levels} levels deep, more than the {MAX_DEPTH} metal3-pivot copies safely: "
                        "flatten it or move it by hand")]
    after = copy_annotations(node)
    size = annotations_size(after)
    out = []
    if size > ANNOTATIONS_LIMIT:
        out.append(Finding(Code.TOO_LARGE, str(node.key),
                           f"its annotations would grow to {size} bytes with the marks a move adds "
                           f"({size - annotations_size(node.annotations)} bytes), over Kubernetes' limit of "
                           f"{ANNOTATIONS_LIMIT}: the target would reject it halfway; shrink its annotations"))
    # what the copy adds: annotations, and the name of the field manager that creates it (its marks, or none)
    stored = stored_size(node, size - annotations_size(node.annotations) + len(copy_manager(node) or ""))
    if stored > ETCD_REQUEST_LIMIT - ETCD_MARGIN:
        out.append(Finding(Code.TOO_LARGE, str(node.key),
                           f"about {stored} bytes once copied, over what an API server with etcd's default "
                           f"request limit ({ETCD_REQUEST_LIMIT} bytes) stores: the target would reject it "
                           "halfway; shrink it or move it by hand"))
    return out


# ---------------------------------------------------------------------------------------------- rules

def namespaces_exist(plan: Plan, namespaces: Sequence[str]) -> Iterator[Finding]:
    src, dst = plan.source, plan.target
    for ns in namespaces:
        if ns not in src.namespaces and ns not in dst.namespaces:
            yield Finding(Code.MISSING_NAMESPACE, f"namespace {ns}",
                          f"exists in neither {src.name} nor {dst.name}: check --namespace")


def no_conflicts(plan: Plan, _: Sequence[str]) -> Iterator[Finding]:
    for key, why in plan.conflicts:
        yield Finding(Code.CONFLICT, str(key), f"in {plan.target.name}: {why}")


def no_foreign_move(plan: Plan, _: Sequence[str]) -> Iterator[Finding]:
    """clusterctl marks what it is about to delete; on an object we have not copied, the mark is not ours."""
    ours = set(plan.already_in_target)
    for key, node in sorted(plan.moving.items()):
        if DELETE_FOR_MOVE in node.annotations and key not in ours:
            yield Finding(Code.FOREIGN_MOVE, str(key),
                          f"carries {DELETE_FOR_MOVE} but no copy of ours exists in {plan.target.name}: "
                          "another tool (clusterctl move?) is moving it; let that move finish")


def target_serves_kinds(plan: Plan, _: Sequence[str]) -> Iterator[Finding]:
    """Every kind still to create has a CRD in the target that serves the version its objects are created at
    (the version the source stores them at, or a backup file's) and stores the kind at that version or a
    newer one, in Kubernetes' order of API versions (apiversion.py).

    clusterctl creates each object at the source's storage version too, and finds a target that does not
    serve it only when that create fails, halfway through the move; an older storage version on the target
    means an older provider, which clusterctl refuses by its provider-version and contract checks. Both are
    refused here before any write."""
    src, dst = plan.source, plan.target
    carried: dict[tuple[str, str], set[str]] = {}
    for key in plan.to_create:
        if key.group:
            carried.setdefault(key.group_kind, set()).add(plan.moving[key].type.rt.version)
    for gk, wanted in sorted(carried.items()):
        there = dst.served.get(gk)
        label = f"{gk[1]}.{gk[0]}"
        if there is None:
            yield Finding(Code.MISSING_CRD, f"kind {label}", f"{dst.name} has no CRD for it: install the provider "
                          "that owns it on the target first (clusterctl init or the ProviderInstall component)")
            continue
        serves = dst.versions.get(gk, frozenset({there.version}))
        for version in sorted(wanted, key=cmp_to_key(apiversion.compare)):
            if not apiversion.at_least(there.version, version):
                yield Finding(Code.STORAGE_VERSION, f"kind {label}", f"{dst.name} stores it at {there.version}, "
                              f"older than {version} in {src.name}: its provider on {dst.name} is older; upgrade "
                              f"it there (clusterctl upgrade, or the ProviderInstall component) before moving")
            elif version not in serves:
                yield Finding(Code.STORAGE_VERSION, f"kind {label}", f"{dst.name} does not serve {version}, the "
                              f"version {src.name} stores it at and the version its objects are created at (served: "
                              f"{', '.join(sorted(serves)) or 'none'}): upgrade the provider on {src.name} to a "
                              f"release that stores a version {dst.name} serves, or install on {dst.name} a "
                              f"release that still serves {version}")


def target_providers(plan: Plan, _: Sequence[str]) -> Iterator[Finding]:
    """The target runs every provider the source runs, at least as new (only while there is something to
    create: a finished move needs no providers checked)."""
    if not plan.to_create:
        return
    src, dst = plan.source, plan.target
    there = {(p["metadata"]["name"], p.get("type")): p for p in dst.providers}
    for p in src.providers:
        name = p["metadata"]["name"]
        other = there.get((name, p.get("type")))
        if other is None:
            yield Finding(Code.PROVIDER_VERSION, f"provider {name}", f"installed in {src.name} "
                          f"({p.get('version')}) but not in {dst.name}: install it on the target first")
        elif not version_at_least(str(other.get("version", "")), str(p.get("version", ""))):
            yield Finding(Code.PROVIDER_VERSION, f"provider {name}", f"{dst.name} has {other.get('version')}, "
                          f"older than {src.name}'s {p.get('version')}: upgrade the target first")


def _clusters(plan: Plan) -> list[Node]:
    return [n for n in plan.moving.values() if n.key.group_kind == (CAPI_GROUP, "Cluster")]


def _resumed(plan: Plan) -> bool:
    """A Cluster paused by us: an earlier run of this move got past the pause; its checks held then."""
    return any(n.annotations.get(PAUSED_BY) for n in _clusters(plan))


def clusters_ready(plan: Plan, _: Sequence[str]) -> Iterator[Finding]:
    """Not paused by someone else; provisioned (clusterctl's rule) unless an earlier run of ours paused it."""
    to_create = set(plan.to_create)
    for node in _clusters(plan):
        ours = node.annotations.get(PAUSED_BY)
        spec = node.obj.get("spec") or {}
        if (spec.get("paused") or CLUSTERCLASS_PAUSED in node.annotations) and not ours:
            yield Finding(Code.ALREADY_PAUSED, str(node.key), "is paused, and not by metal3-pivot: another move "
                          "(clusterctl?) or an operator paused it; finish or undo that first")
        elif not ours and node.key in to_create:
            yield from _provisioning(node)


def machines_joined(plan: Plan, _: Sequence[str]) -> Iterator[Finding]:
    clusters = _clusters(plan)
    if not clusters or _resumed(plan):
        return
    cluster_namespaces = {n.key.namespace for n in clusters}
    for m in plan.source.graph.of_kind(CAPI_GROUP, "Machine"):
        if m.key.namespace in cluster_namespaces and not ((m.obj.get("status") or {}).get("nodeRef") or {}).get(
                "name"):
            yield Finding(Code.NOT_PROVISIONED, str(m.key),
                          "has no status.nodeRef yet: wait until the machine has joined")


def classes_not_paused(plan: Plan, _: Sequence[str]) -> Iterator[Finding]:
    """clusterctl refuses a ClusterClass paused before the move, as it refuses a paused Cluster."""
    for node in plan.moving.values():
        if (node.key.group_kind == (CAPI_GROUP, "ClusterClass") and CLUSTERCLASS_PAUSED in node.annotations
                and not node.annotations.get(PAUSED_BY)):
            yield Finding(Code.ALREADY_PAUSED, str(node.key), f"ClusterClass carries {CLUSTERCLASS_PAUSED}, and not "
                          "from metal3-pivot: another move (clusterctl?) or an operator paused it; finish or undo "
                          "that first")


def hosts_steady(plan: Plan, _: Sequence[str]) -> Iterator[Finding]:
    """Every BareMetalHost has a status that can travel (BMO restores it from the annotation), in a steady
    state."""
    for node in plan.moving.values():
        if node.key.group_kind != (BMH_GROUP, "BareMetalHost"):
            continue
        raw = node.annotations.get(BMH_STATUS) or status_annotation_of(node.obj)
        if not raw:
            yield Finding(Code.BMH_STATUS, str(node.key), f"has no {BMH_STATUS} annotation and no status to carry: "
                          "moved as is, BMO in the target would re-inspect it; wait until BMO has registered the "
                          "host")
            continue
        try:
            state = (json.loads(raw).get("provisioning") or {}).get("state", "")
        except (ValueError, AttributeError):
            yield Finding(Code.BMH_STATUS, str(node.key), f"its {BMH_STATUS} annotation is not valid JSON")
            continue
        if state not in MOVABLE_HOST_STATES:
            yield Finding(Code.BMH_STATUS, str(node.key), f"is {state!r}: a host is only moved in a steady state "
                          f"({', '.join(sorted(s for s in MOVABLE_HOST_STATES if s))}); wait for BMO")


def copies_fit(plan: Plan, _: Sequence[str]) -> Iterator[Finding]:
    for key in plan.to_create:
        yield from _size_problems(plan.moving[key])


def owner_chains_move(plan: Plan, _: Sequence[str]) -> Iterator[Finding]:
    for node, why in plan.source.graph.broken_chains():
        if node.key in plan.moving:
            yield Finding(Code.OWNER_CHAIN, str(node.key), f"{why}; in the target the garbage collector would "
                          "delete it")


def _provisioning(node: Node) -> Iterator[Finding]:
    """clusterctl's rule: infrastructure provisioned and control plane initialized."""
    status = node.obj.get("status") or {}
    init = status.get("initialization") or {}
    if not init.get("infrastructureProvisioned"):
        yield Finding(Code.NOT_PROVISIONED, str(node.key),
                      "status.initialization.infrastructureProvisioned is not true: wait for provisioning")
    if not _condition(node.obj, "ControlPlaneInitialized"):
        yield Finding(Code.NOT_PROVISIONED, str(node.key),
                      "condition ControlPlaneInitialized is not True: wait for the control plane")
    elif (node.obj.get("spec") or {}).get("controlPlaneRef") and not init.get("controlPlaneInitialized"):
        yield Finding(Code.NOT_PROVISIONED, str(node.key),
                      "status.initialization.controlPlaneInitialized is not true: wait for the control plane")


RULES: tuple[Rule, ...] = (namespaces_exist, no_conflicts, no_foreign_move, target_serves_kinds, target_providers,
                           clusters_ready, classes_not_paused, machines_joined, hosts_steady, copies_fit,
                           owner_chains_move)
#: a backup checks the source as a move would (clusterctl's toDirectory runs the same discovery checks);
#: there is no target to check
BACKUP_RULES: tuple[Rule, ...] = (namespaces_exist, no_foreign_move, clusters_ready, classes_not_paused,
                                  machines_joined, hosts_steady, owner_chains_move)
#: a restore checks what the target must offer; the files' Clusters are paused by design
RESTORE_RULES: tuple[Rule, ...] = (target_serves_kinds, hosts_steady, copies_fit, owner_chains_move)


def version_at_least(have: str, want: str) -> bool:
    """clusterctl's provider check: the target's version is at least the source's, by semantic versioning
    (a pre-release such as v1.13.2-rc.1 is older than v1.13.2). Unparsable versions compare as 0.0.0."""
    return _semver(have) >= _semver(want)


def _semver(version: str) -> tuple[tuple[int, ...], tuple[int, tuple[tuple[int, Any], ...]]]:
    core, _, pre = version.lstrip("v").split("+", 1)[0].partition("-")
    release = version_key(core)
    if not pre:
        return release, (1, ())          # a release sorts after all of its pre-releases
    ids = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return release, (0, ids)

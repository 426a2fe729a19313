"""Pre-flight: every reason to refuse a move, found before the first write.

All findings are collected (an operator fixing one problem at a time across several runs is slow and
error-prone) and raised as the most specific PreflightError subclass that covers them all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from metal3_pivot.errors import (
    PREFLIGHT_ERRORS,
    BlockedMoveError,
    PreflightError,
    Problem,
)
from metal3_pivot.graph import CAPI_GROUP, Node

if TYPE_CHECKING:
    from metal3_pivot.mover import Plan

__all__ = ["BlockedMoveError", "check", "findings"]

#: BareMetalHost provisioning states a host may be moved in: steady states only
MOVABLE_HOST_STATES = frozenset({"", "unmanaged", "available", "ready", "provisioned", "externally provisioned",
                                 "detached"})


def check(plan: Plan, namespaces: Sequence[str]) -> None:
    problems = findings(plan, namespaces)
    if not problems:
        return
    codes = {p.code for p in problems}
    cls = PREFLIGHT_ERRORS[codes.pop()] if len(codes) == 1 else PreflightError
    lines = "\n".join(f"  - {p}" for p in problems[:50])
    more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
    raise cls(f"move refused, nothing was changed ({len(problems)} problem(s)):\n{lines}{more}", problems)


def _version(v: str) -> tuple[int, ...]:
    core = v.lstrip("v").split("-", 1)[0].split("+", 1)[0]
    try:
        return tuple(int(p) for p in core.split("."))
    except ValueError:
        return (0,)


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
    size = len(json.dumps(node.obj, separators=(",", ":"), ensure_ascii=False).encode())
    if node.key.group_kind == ("", "Secret"):
        size -= sum(len(v) - len(v) * 3 // 4 for v in (node.obj.get("data") or {}).values())
    return size + 2 * added + 256


#: the deepest nesting of maps and lists the engine copies. The API server accepts up to 10,000 levels;
#: Python copies and serialises recursively (about 2 stack frames per level, 1,000 frames in all), and real
#: Cluster-API objects nest fewer than 20 levels
MAX_DEPTH = 100


def depth(value: Any) -> int:
    """How deeply maps and lists nest in `value` (a scalar: 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
        else:
            continue
        deepest = max(deepest, level + 1)
    return deepest


def _size_problems(node: Node) -> list[Problem]:
    from metal3_pivot.mover import copy_annotations

    levels = depth(node.obj)
    if levels > MAX_DEPTH:
        return [Problem("too-deep", str(node.key),
                        f"nests {levels} levels deep, more than the {MAX_DEPTH} metal3-pivot copies safely: "
                        "flatten it or move it by hand")]
    after = copy_annotations(node)
    size = annotations_size(after)
    out = []
    if size > ANNOTATIONS_LIMIT:
        out.append(Problem("too-large", str(node.key),
                           f"its annotations would grow to {size} bytes with the marks a move adds "
                           f"({size - annotations_size(node.annotations)} bytes), over Kubernetes' limit of "
                           f"{ANNOTATIONS_LIMIT}: the target would reject it halfway; shrink its annotations"))
    stored = stored_size(node, size - annotations_size(node.annotations))
    if stored > ETCD_REQUEST_LIMIT - ETCD_MARGIN:
        out.append(Problem("too-large", str(node.key),
                           f"about {stored} bytes once copied, over what an API server with etcd's default "
                           f"request limit ({ETCD_REQUEST_LIMIT} bytes) stores: the target would reject it "
                           "halfway; shrink it or move it by hand"))
    return out


def findings(plan: Plan, namespaces: Sequence[str]) -> list[Problem]:
    from metal3_pivot.mover import BMH_GROUP, BMH_STATUS, DELETE_FOR_MOVE, PAUSED_BY, status_annotation_of

    problems: list[Problem] = []
    src, dst = plan.source, plan.target
    for ns in namespaces:
        if ns not in src.namespaces and ns not in dst.namespaces:
            problems.append(Problem("missing-namespace", f"namespace {ns}",
                                    f"exists in neither {src.name} nor {dst.name}: check --namespace"))
    for key, why in plan.conflicts:
        problems.append(Problem("conflict", str(key), f"in {dst.name}: {why}"))
    # clusterctl marks what it is about to delete; on an object we have not copied, the mark is not ours
    ours = set(plan.already_in_target)
    for key, node in sorted(plan.moving.items()):
        if DELETE_FOR_MOVE in node.annotations and key not in ours:
            problems.append(Problem("foreign-move", str(key),
                                    f"carries {DELETE_FOR_MOVE} but no copy of ours exists in {dst.name}: "
                                    "another tool (clusterctl move?) is moving it; let that move finish"))

    if plan.to_create:
        for gk in sorted({(k.group, k.kind) for k in plan.to_create}):
            have = src.types[gk].rt if gk in src.types else None
            there = dst.served.get(gk)
            label = f"{gk[1]}.{gk[0]}" if gk[0] else gk[1]
            if gk[0] == "":
                continue
            if there is None:
                problems.append(Problem("missing-crd", f"kind {label}", f"{dst.name} has no CRD for it: install "
                                        "the provider that owns it on the target first (clusterctl init or "
                                        "the ProviderInstall component)"))
            elif have is not None and there.version != have.version:
                problems.append(Problem("missing-crd", f"kind {label}",
                                        f"{dst.name} stores {there.version}, {src.name} stores {have.version}: "
                                        "install the same provider version on both sides"))
        target_providers = {(p["metadata"]["name"], p.get("type")): p for p in dst.providers}
        for p in src.providers:
            name = p["metadata"]["name"]
            other = target_providers.get((name, p.get("type")))
            if other is None:
                problems.append(Problem("provider-version", f"provider {name}",
                                        f"installed in {src.name} ({p.get('version')}) but not in {dst.name}: "
                                        "install it on the target first"))
            elif _version(str(other.get("version", ""))) < _version(str(p.get("version", ""))):
                problems.append(Problem("provider-version", f"provider {name}",
                                        f"{dst.name} has {other.get('version')}, older than {src.name}'s "
                                        f"{p.get('version')}: upgrade the target first"))

    clusters = [n for n in plan.moving.values() if n.key.group_kind == (CAPI_GROUP, "Cluster")]
    resumed = any(n.annotations.get(PAUSED_BY) for n in clusters)
    to_create = set(plan.to_create)
    for node in clusters:
        spec = node.obj.get("spec") or {}
        if (spec.get("paused") or "cluster.x-k8s.io/paused" in node.annotations) and not node.annotations.get(
                PAUSED_BY):
            problems.append(Problem("already-paused", str(node.key),
                                    "is paused, and not by metal3-pivot: another move (clusterctl?) or an "
                                    "operator paused it; finish or undo that first"))
        elif not node.annotations.get(PAUSED_BY) and node.key in to_create:
            problems.extend(_provisioning(node))
    if not resumed and clusters:
        cluster_namespaces = {n.key.namespace for n in clusters}
        for m in src.graph.of_kind(CAPI_GROUP, "Machine"):
            if m.key.namespace in cluster_namespaces and not ((m.obj.get("status") or {}).get("nodeRef") or {}).get(
                    "name"):
                problems.append(Problem("not-provisioned", str(m.key),
                                        "has no status.nodeRef yet: wait until the machine has joined"))
    if not resumed:
        for node in plan.moving.values():
            if node.blocks_move:
                problems.append(Problem("block-move", str(node.key),
                                        "carries clusterctl.cluster.x-k8s.io/block-move: a controller is "
                                        "holding the move; wait for it to finish, then run again"))
    for node in plan.moving.values():
        if node.key.group_kind != (BMH_GROUP, "BareMetalHost"):
            continue
        raw = node.annotations.get(BMH_STATUS) or status_annotation_of(node.obj)
        if not raw:
            problems.append(Problem("bmh-status", str(node.key),
                                    f"has no {BMH_STATUS} annotation and no status to carry: moved as is, BMO "
                                    "in the target would re-inspect it; wait until BMO has registered the host"))
            continue
        try:
            state = (json.loads(raw).get("provisioning") or {}).get("state", "")
        except (ValueError, AttributeError):
            problems.append(Problem("bmh-status", str(node.key), f"its {BMH_STATUS} annotation is not valid JSON"))
            continue
        if state not in MOVABLE_HOST_STATES:
            problems.append(Problem("bmh-status", str(node.key),
                                    f"is {state!r}: a host is only moved in a steady state "
                                    f"({', '.join(sorted(s for s in MOVABLE_HOST_STATES if s))}); wait for BMO"))
    for key in plan.to_create:
        problems.extend(_size_problems(plan.moving[key]))
    for node, why in plan.source.graph.broken_chains():
        if node.key in plan.moving:
            problems.append(Problem("owner-chain", str(node.key),
                                    f"{why}; in the target the garbage collector would delete it"))
    return problems


def _provisioning(node: Node) -> list[Problem]:
    """clusterctl's rule: infrastructure provisioned and control plane initialized."""
    status = node.obj.get("status") or {}
    init = status.get("initialization") or {}
    out = []
    if not init.get("infrastructureProvisioned"):
        out.append(Problem("not-provisioned", str(node.key),
                           "status.initialization.infrastructureProvisioned is not true: wait for provisioning"))
    if not _condition(node.obj, "ControlPlaneInitialized"):
        out.append(Problem("not-provisioned", str(node.key),
                           "condition ControlPlaneInitialized is not True: wait for the control plane"))
    elif (node.obj.get("spec") or {}).get("controlPlaneRef") and not init.get("controlPlaneInitialized"):
        out.append(Problem("not-provisioned", str(node.key),
                           "status.initialization.controlPlaneInitialized is not true: wait for the control plane"))
    return out

"""The invariants a finished move (or move back) must satisfy, checked on any pair of clusters.

Used by the CLI's `verify`, by the Pulumi layer after an update, and by every test that moves objects:
one definition of "nothing was lost".
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from metal3_pivot.discovery import ClusterView, discover
from metal3_pivot.findings import Code, Finding
from metal3_pivot.graph import BMH_GROUP, CAPI_GROUP, Node, kind_counts
from metal3_pivot.kube import DEPLOYMENTS, Kube
from metal3_pivot.plan import BMH_PAUSED, OUR_PAUSE_VALUE, PAUSED_BY, related


def location_of(counts: Mapping[str, Mapping[str, int]]) -> str:
    """Where the objects are, from per-cluster counts: one cluster's name, "split" (a move in progress) or
    "none"."""
    present = [name for name, kinds in counts.items() if sum(kinds.values())]
    return present[0] if len(present) == 1 else ("none" if not present else "split")


def placement(*views: ClusterView) -> str:
    """`location_of` for cluster views: the name of the one view holding the objects, "split" or "none"."""
    return location_of({v.name: v.graph.kind_counts() for v in views})


@dataclass
class VerifyReport:
    clusters: tuple[str, str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    violations: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def location(self) -> str:
        """Where the objects are: one cluster's name, "split" or "none"."""
        return location_of(self.counts)


def check_views(a: ClusterView, b: ClusterView, expect: str | None = None) -> VerifyReport:
    report = VerifyReport((a.name, b.name))
    # what a move keeps in both clusters (global objects, shared ClusterClasses) is no duplicate, and says
    # nothing about where the move's objects are
    moving = {v.name: {k: n for k, n in v.graph.move_nodes().items() if not n.kept} for v in (a, b)}
    for name, nodes in moving.items():
        report.counts[name] = kind_counts(nodes)
    for key in sorted(set(moving[a.name]) & set(moving[b.name])):
        how = ("a copy made by an unfinished move" if related(moving[a.name][key].obj, moving[b.name][key].obj)
               else "two unrelated objects")
        report.violations.append(Finding(Code.DUPLICATE, str(key), f"exists in both {a.name} and {b.name} ({how})"))
    if expect is not None:
        other = b.name if expect == a.name else a.name
        for key in sorted(set(moving[other]) - set(moving[expect])):
            report.violations.append(Finding(Code.LOCATION, str(key), f"is in {other}, expected in {expect}"))
    for view in (a, b):
        for node in moving[view.name].values():
            report.violations.extend(_node_violations(view, node))
    return report


def _node_violations(view: ClusterView, node: Node) -> list[Finding]:
    out = []
    nodes = view.graph.nodes
    for ref in node.unresolved:
        out.append(Finding(Code.OWNER_CHAIN, str(node.key), f"in {view.name}: owner {ref.get('kind')} "
                             f"{ref.get('name')} uid {ref.get('uid')} does not exist"))
    for owner in node.owners:
        ref = next((r for r in node.obj["metadata"].get("ownerReferences") or []
                    if r.get("uid") == nodes[owner].uid), {})
        if ref.get("kind") != owner.kind or ref.get("name") != owner.name:
            out.append(Finding(Code.OWNER_CHAIN, str(node.key), f"in {view.name}: ownerReference names "
                                 f"{ref.get('kind')} {ref.get('name')} but its uid is {owner}'s"))
    ann = node.annotations
    gk = node.key.group_kind
    if gk == (CAPI_GROUP, "Cluster") and (node.obj.get("spec") or {}).get("paused"):
        who = "by metal3-pivot" if ann.get(PAUSED_BY) else "by someone else"
        out.append(Finding(Code.PAUSED, str(node.key), f"in {view.name}: still paused ({who})"))
    elif ((gk == (CAPI_GROUP, "ClusterClass") and ann.get(PAUSED_BY))
          or (gk == (BMH_GROUP, "BareMetalHost") and ann.get(BMH_PAUSED) == OUR_PAUSE_VALUE)):
        out.append(Finding(Code.PAUSED, str(node.key), f"in {view.name}: still paused by metal3-pivot"))
    if gk == ("", "Secret") and not (node.obj.get("data") or {}):
        out.append(Finding(Code.SECRET, str(node.key), f"in {view.name}: has no data"))
    return out


async def ironics(kube: Kube) -> list[str]:
    """Ironic Deployments in a cluster, as ns/name: named `ironic`, or labelled `app.kubernetes.io/name: ironic`
    or `name: ironic` (metal3-dev-env's `baremetal-operator-ironic`). Ironic run as host containers (the
    ephemeral cluster of metal3-dev-env, podman or docker on the host) is not visible through the API:
    verify cannot see it (docs/architecture.md, "Departures from clusterctl")."""
    found = []
    for d in await kube.list(DEPLOYMENTS):
        md = d["metadata"]
        labels = md.get("labels") or {}
        if md["name"] == "ironic" or "ironic" in (labels.get("app.kubernetes.io/name"), labels.get("name")):
            found.append(f"{md.get('namespace')}/{md['name']}")
    return found


async def verify(a: Kube, b: Kube, namespaces: Sequence[str] = (), expect: str | None = None) -> VerifyReport:
    va, vb = await asyncio.gather(discover(a, list(namespaces)), discover(b, list(namespaces)))
    report = check_views(va, vb, expect)
    running = {a.name: await ironics(a), b.name: await ironics(b)}
    total = sum(len(v) for v in running.values())
    if total > 1:
        where = "; ".join(f"{k}: {', '.join(v)}" for k, v in running.items() if v)
        report.violations.append(Finding(Code.IRONIC, "Ironic", f"{total} Ironic deployments ({where}): at most "
                                           "one may manage the hosts"))
    return report

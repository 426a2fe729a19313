"""The object graph of a management cluster and which of its objects move, by clusterctl's rules.

Pure data and functions, no I/O, so every rule is unit-testable. The rules are those of clusterctl
v1.14's objectgraph (read from its source; behaviour reproduced, code our own):

- Candidate types: CRDs labelled `clusterctl.cluster.x-k8s.io`, plus Secrets and ConfigMaps.
- A node is a *tenant root* ("move-hierarchy") if its CRD is labelled
  `clusterctl.cluster.x-k8s.io/move-hierarchy` or it is a Cluster, ClusterClass or ClusterResourceSet.
  Every object reachable from a root through ownerReferences or soft ownership moves with it.
- A node whose CRD is labelled `clusterctl.cluster.x-k8s.io/move` (or move-hierarchy) always moves.
- Soft ownership: a Secret with no ownerReferences named `<cluster>-<purpose>` (kubeconfig, ca, etcd, sa,
  proxy, apiserver-etcd-client) belongs to that Cluster; a Cluster whose topology names a ClusterClass
  belongs to it; a ClusterResourceSetBinding belongs to the Cluster named in `spec.clusterName`.

One deliberate difference: clusterctl silently skips an object whose ownerReference points outside
the move set, and the garbage collector of the target later deletes it (cluster-api issue 8387). We
report such chains (`broken_chains`) so the pre-flight can refuse the move instead.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from metal3_pivot.kube import ResourceType, group_of

Obj = dict[str, Any]

CLUSTERCTL_LABEL = "clusterctl.cluster.x-k8s.io"
MOVE_LABEL = f"{CLUSTERCTL_LABEL}/move"
MOVE_HIERARCHY_LABEL = f"{CLUSTERCTL_LABEL}/move-hierarchy"
BLOCK_MOVE_ANNOTATION = f"{CLUSTERCTL_LABEL}/block-move"

CAPI_GROUP = "cluster.x-k8s.io"
ADDONS_GROUP = "addons.cluster.x-k8s.io"
BMH_GROUP = "metal3.io"
ALWAYS_HIERARCHY = {(CAPI_GROUP, "Cluster"), (CAPI_GROUP, "ClusterClass"), (ADDONS_GROUP, "ClusterResourceSet")}
SECRET_PURPOSES = ("kubeconfig", "ca", "etcd", "sa", "proxy", "apiserver-etcd-client")


@dataclass(frozen=True, order=True)
class ObjKey:
    """An object's identity across clusters: UIDs differ between source and target, this does not."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind} {self.namespace}/{self.name}" if self.namespace else f"{kind} {self.name}"

    @property
    def group_kind(self) -> tuple[str, str]:
        return (self.group, self.kind)

    @classmethod
    def of(cls, obj: Obj) -> ObjKey:
        md = obj["metadata"]
        return cls(group_of(obj["apiVersion"]), obj["kind"], md.get("namespace", "") or "", md["name"])


@dataclass(frozen=True)
class TypeInfo:
    """A kind the mover considers, with the move flags its CRD labels give it."""

    rt: ResourceType
    force_move: bool = False
    force_move_hierarchy: bool = False

    @property
    def group_kind(self) -> tuple[str, str]:
        return (self.rt.group, self.rt.kind)

    @classmethod
    def from_crd(cls, crd: Obj, rt: ResourceType) -> TypeInfo:
        labels = crd["metadata"].get("labels") or {}
        hierarchy = MOVE_HIERARCHY_LABEL in labels or (rt.group, rt.kind) in ALWAYS_HIERARCHY
        return cls(rt, force_move=hierarchy or MOVE_LABEL in labels, force_move_hierarchy=hierarchy)


@dataclass
class Node:
    key: ObjKey
    type: TypeInfo
    obj: Obj
    owners: set[ObjKey] = field(default_factory=set)           # resolved ownerReferences
    soft_owners: set[ObjKey] = field(default_factory=set)
    unresolved: list[Obj] = field(default_factory=list)        # ownerReferences to objects not observed
    tenants: set[ObjKey] = field(default_factory=set)
    #: below a cluster-scoped tenant root (a global identity's Secret): copied, never deleted from the source
    global_hierarchy: bool = False
    #: clusterctl's "should not delete": a ClusterClass (and what it owns) that other clusters still use
    should_not_delete: bool = False

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"].get("uid", ""))

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.obj["metadata"].get("labels") or {})

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.obj["metadata"].get("annotations") or {})

    @property
    def force_move(self) -> bool:
        return self.type.force_move or MOVE_LABEL in self.labels or self.force_move_hierarchy

    @property
    def force_move_hierarchy(self) -> bool:
        return self.type.force_move_hierarchy or MOVE_HIERARCHY_LABEL in self.labels

    @property
    def is_global(self) -> bool:
        return not self.type.rt.namespaced

    @property
    def kept(self) -> bool:
        """Copied to the target but never deleted from the source (clusterctl: global objects, what they
        own, and ClusterClasses shared with clusters that do not move). One the target already has is
        skipped, not a conflict, and carries no mark of ours."""
        return self.is_global or self.global_hierarchy or self.should_not_delete

    @property
    def moves(self) -> bool:
        return bool(self.tenants) or self.force_move

    @property
    def blocks_move(self) -> bool:
        return BLOCK_MOVE_ANNOTATION in self.annotations


@dataclass
class Graph:
    nodes: dict[ObjKey, Node]

    def __repr__(self) -> str:
        """A count, not the objects: Python's asyncio formats the result of a program's main task in a
        message it builds and drops when `asyncio.run` ends in the main thread, and the generated repr of
        a graph of 13,160 objects took 0.5 s there, twice per run."""
        return f"Graph({len(self.nodes)} objects)"

    def move_nodes(self) -> dict[ObjKey, Node]:
        return {k: n for k, n in self.nodes.items() if n.moves}

    def kind_counts(self) -> dict[str, int]:
        """How many objects of each kind move (what plans, reports and outputs show)."""
        return kind_counts(self.move_nodes())

    def of_kind(self, group: str, kind: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.key.group_kind == (group, kind)]

    def broken_chains(self) -> list[tuple[Node, str]]:
        """Moving objects whose owner would not be in the target: the target's garbage collector would
        delete them. Each with a sentence saying which owner is missing and why."""
        moving = self.move_nodes()
        found = []
        for node in moving.values():
            for ref in node.unresolved:
                found.append((node, f"its owner {ref.get('kind')} {ref.get('name')} (uid {ref.get('uid')}) "
                                    "does not exist or is not of a type clusterctl moves"))
            for owner in sorted(node.owners):
                if owner not in moving:
                    found.append((node, f"its owner {owner} does not move with it"))
        return found


def kind_counts(keys: Iterable[ObjKey]) -> dict[str, int]:
    """Objects per kind, sorted by kind: the one way counts are shown."""
    return dict(sorted(Counter(k.kind for k in keys).items()))


def _secret_cluster(name: str) -> str | None:
    for purpose in SECRET_PURPOSES:
        if name.endswith("-" + purpose) and len(name) > len(purpose) + 1:
            return name[: -len(purpose) - 1]
    return None


def build_graph(objects: Iterable[tuple[TypeInfo, Obj]]) -> Graph:
    """Nodes, owners (by UID), soft owners, tenants: everything the move decision needs."""
    nodes: dict[ObjKey, Node] = {}
    by_uid: dict[str, ObjKey] = {}
    for info, obj in objects:
        key = ObjKey.of(obj)
        nodes[key] = Node(key, info, obj)
        by_uid[str(obj["metadata"].get("uid", ""))] = key
    for node in nodes.values():
        for ref in node.obj["metadata"].get("ownerReferences") or []:
            owner = by_uid.get(str(ref.get("uid", "")))
            if owner is None:
                node.unresolved.append(ref)
            else:
                node.owners.add(owner)
    _set_soft_ownership(nodes)
    _set_tenants(nodes)
    return Graph(nodes)


def _set_soft_ownership(nodes: dict[ObjKey, Node]) -> None:
    clusters = {(n.key.namespace, n.key.name): n.key for n in nodes.values()
                if n.key.group_kind == (CAPI_GROUP, "Cluster")}
    classes = {(n.key.namespace, n.key.name): n.key for n in nodes.values()
               if n.key.group_kind == (CAPI_GROUP, "ClusterClass")}
    for node in nodes.values():
        gk = node.key.group_kind
        if gk == ("", "Secret") and not node.obj["metadata"].get("ownerReferences"):
            cluster_name = _secret_cluster(node.key.name)
            if cluster_name and (node.key.namespace, cluster_name) in clusters:
                node.soft_owners.add(clusters[(node.key.namespace, cluster_name)])
        elif gk == (CAPI_GROUP, "Cluster"):
            topology = (node.obj.get("spec") or {}).get("topology") or {}
            ref = topology.get("classRef") or {}
            name = ref.get("name") or topology.get("class")
            if name:
                namespace = ref.get("namespace") or topology.get("classNamespace") or node.key.namespace
                if (namespace, name) in classes:
                    node.soft_owners.add(classes[(namespace, name)])
        elif gk == (ADDONS_GROUP, "ClusterResourceSetBinding"):
            cluster_name = (node.obj.get("spec") or {}).get("clusterName")
            if cluster_name and (node.key.namespace, cluster_name) in clusters:
                node.soft_owners.add(clusters[(node.key.namespace, cluster_name)])


def _set_tenants(nodes: dict[ObjKey, Node]) -> None:
    dependents: dict[ObjKey, set[ObjKey]] = defaultdict(set)
    for node in nodes.values():
        for owner in node.owners | node.soft_owners:
            dependents[owner].add(node.key)
    for root in [n for n in nodes.values() if n.force_move_hierarchy]:
        stack = [root.key]
        while stack:  # iterative, and each node visited once per root: ownerReference cycles terminate
            key = stack.pop()
            node = nodes[key]
            if root.key in node.tenants:
                continue
            node.tenants.add(root.key)
            node.global_hierarchy = node.global_hierarchy or root.is_global
            stack.extend(dependents[key])


def mark_should_not_delete(graph: Graph, namespaces: Iterable[str], users: Iterable[Obj] = ()) -> None:
    """clusterctl's rule when a move is scoped to namespaces: a ClusterClass outside them (reached through a
    moving Cluster's classRef), or one inside them that a Cluster outside them uses (`users`: every Cluster
    of the source), is copied but kept in the source, with everything it owns (hard ownerReferences)."""
    scope = set(namespaces)
    if not scope:
        return
    classes = {n.key: n for n in graph.of_kind(CAPI_GROUP, "ClusterClass")}
    keep = [k for k in classes if k.namespace not in scope]
    for cluster in users:
        md = cluster["metadata"]
        if md.get("namespace") in scope:
            continue
        topology = (cluster.get("spec") or {}).get("topology") or {}
        ref = topology.get("classRef") or {}
        name = ref.get("name") or topology.get("class")
        if not name:
            continue
        key = ObjKey(CAPI_GROUP, "ClusterClass", ref.get("namespace") or md.get("namespace") or "", name)
        if key in classes:
            keep.append(key)
    dependents: dict[ObjKey, set[ObjKey]] = defaultdict(set)
    for node in graph.nodes.values():
        for owner in node.owners:
            dependents[owner].add(node.key)
    stack = list(keep)
    while stack:
        key = stack.pop()
        node = graph.nodes[key]
        if node.should_not_delete:
            continue
        node.should_not_delete = True
        stack.extend(dependents[key])


def stuck_in_cycles(nodes: dict[ObjKey, Node]) -> set[ObjKey]:
    """Nodes that can never be created after their owners: members of an ownerReference cycle and whatever
    hangs below one. clusterctl leaves them in the source (its move sequence never reaches them)."""
    placed: set[ObjKey] = set()
    remaining = dict(nodes)
    while True:
        level = [k for k, n in remaining.items()
                 if all(o in placed or o not in nodes for o in n.owners | n.soft_owners)]
        if not level:
            return set(remaining)
        placed.update(level)
        for k in level:
            del remaining[k]


def levels(nodes: dict[ObjKey, Node]) -> list[list[Node]]:
    """Creation order: a node comes after every owner (hard or soft) that is also in `nodes`.

    Hard owners must exist first (their target UID goes into the dependent); soft owners are ordered
    too so that deletion in reverse removes a Cluster's secrets before the Cluster. Cycles (the API
    server does not reject them) are broken by placing the remaining nodes in one last level.
    """
    remaining = dict(nodes)
    placed: set[ObjKey] = set()
    result: list[list[Node]] = []
    while remaining:
        level = [n for k, n in remaining.items()
                 if all(o in placed or o not in nodes for o in n.owners | n.soft_owners)]
        if not level:
            level = list(remaining.values())
        level.sort(key=lambda n: n.key)
        result.append(level)
        for n in level:
            placed.add(n.key)
            del remaining[n.key]
    return result

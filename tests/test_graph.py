"""clusterctl's move rules on hand-made graphs (pure: no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from metal3_pivot.graph import (
    MOVE_HIERARCHY_LABEL,
    MOVE_LABEL,
    ObjKey,
    TypeInfo,
    build_graph,
    levels,
)
from metal3_pivot.kube import CONFIGMAP, SECRET, ResourceType

pytestmark = pytest.mark.unit

CLUSTER = TypeInfo.from_crd({"metadata": {"labels": {"clusterctl.cluster.x-k8s.io": ""}}},
                            ResourceType("cluster.x-k8s.io", "v1beta2", "Cluster", "clusters"))
MACHINE = TypeInfo(ResourceType("cluster.x-k8s.io", "v1beta2", "Machine", "machines"))
CLASS = TypeInfo.from_crd({"metadata": {}},
                          ResourceType("cluster.x-k8s.io", "v1beta2", "ClusterClass", "clusterclasses"))
BMH = TypeInfo.from_crd({"metadata": {"labels": {MOVE_LABEL: "", MOVE_HIERARCHY_LABEL: ""}}},
                        ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts"))
HWD = TypeInfo.from_crd({"metadata": {"labels": {MOVE_LABEL: ""}}},
                        ResourceType("metal3.io", "v1alpha1", "HardwareData", "hardwaredata"))
IDENTITY = TypeInfo(ResourceType("infrastructure.cluster.x-k8s.io", "v1beta2", "Identity", "identities",
                                 namespaced=False))
BINDING = TypeInfo(ResourceType("addons.cluster.x-k8s.io", "v1beta2", "ClusterResourceSetBinding",
                                "clusterresourcesetbindings"))
SEC = TypeInfo(SECRET)
CM = TypeInfo(CONFIGMAP)


def obj(info: TypeInfo, name: str, uid: str, owners: tuple[tuple[TypeInfo, str, str], ...] = (),
        ns: str = "metal3", **extra: Any) -> tuple[TypeInfo, dict[str, Any]]:
    md: dict[str, Any] = {"name": name, "uid": uid}
    if info.rt.namespaced:
        md["namespace"] = ns
    if owners:
        md["ownerReferences"] = [{"apiVersion": o.rt.api_version, "kind": o.rt.kind, "name": n, "uid": u}
                                 for o, n, u in owners]
    return info, {"apiVersion": info.rt.api_version, "kind": info.rt.kind, "metadata": md, **extra}


def key(info: TypeInfo, name: str, ns: str = "metal3") -> ObjKey:
    return ObjKey(info.rt.group, info.rt.kind, ns if info.rt.namespaced else "", name)


def test_cluster_hierarchy_and_soft_owned_secrets_move() -> None:
    g = build_graph([
        obj(CLUSTER, "test1", "c1"),
        obj(MACHINE, "m1", "m1", ((CLUSTER, "test1", "c1"),)),
        obj(SEC, "test1-kubeconfig", "s1"),                       # soft-owned by name
        obj(SEC, "test1-apiserver-etcd-client", "s2"),
        obj(SEC, "unrelated", "s3"),                              # no owner, no convention: stays
        obj(SEC, "test2-kubeconfig", "s4"),                       # names a Cluster that does not exist
        obj(CM, "cfg", "cm1", ((MACHINE, "m1", "m1"),)),
    ])
    moving = set(g.move_nodes())
    assert moving == {key(CLUSTER, "test1"), key(MACHINE, "m1"), key(SEC, "test1-kubeconfig"),
                      key(SEC, "test1-apiserver-etcd-client"), key(CM, "cfg")}


def test_a_secret_with_an_owner_is_not_soft_owned() -> None:
    g = build_graph([obj(CLUSTER, "test1", "c1"), obj(CM, "x", "x1"),
                     obj(SEC, "test1-ca", "s1", ((CM, "x", "x1"),))])
    assert key(SEC, "test1-ca") not in g.move_nodes()


def test_move_labels_force_the_move_and_move_hierarchy_takes_dependents() -> None:
    g = build_graph([
        obj(BMH, "node-0", "b0"),                                  # unowned host: moves (move label)
        obj(SEC, "node-0-bmc-secret", "s0", ((BMH, "node-0", "b0"),)),
        obj(HWD, "node-0", "h0"),                                  # move label only
        obj(CM, "lonely", "l0"),
    ])
    moving = set(g.move_nodes())
    assert moving == {key(BMH, "node-0"), key(SEC, "node-0-bmc-secret"), key(HWD, "node-0")}


def test_clusterclass_soft_owns_clusters_using_it() -> None:
    _, cluster = obj(CLUSTER, "test1", "c1", spec={"topology": {"classRef": {"name": "cls"}, "version": "v1"}})
    g = build_graph([obj(CLASS, "cls", "k1"), (CLUSTER, cluster)])
    assert key(CLASS, "cls") in g.nodes[key(CLUSTER, "test1")].soft_owners
    order = [[n.key for n in level] for level in levels(g.move_nodes())]
    assert order.index([key(CLASS, "cls")]) < order.index([key(CLUSTER, "test1")])


def test_resource_set_binding_soft_owned_by_its_cluster() -> None:
    g = build_graph([obj(CLUSTER, "test1", "c1"), obj(BINDING, "test1", "rb1", spec={"clusterName": "test1"})])
    assert key(BINDING, "test1") in g.move_nodes()


def test_global_identity_moves_only_through_a_hierarchy() -> None:
    ident_hier = TypeInfo(IDENTITY.rt, force_move=True, force_move_hierarchy=True)
    g = build_graph([obj(ident_hier, "id", "i1"),
                     obj(SEC, "id-creds", "s1", ((ident_hier, "id", "i1"),), ns="capm3-system")])
    assert set(g.move_nodes()) == {key(IDENTITY, "id"), key(SEC, "id-creds", "capm3-system")}
    g2 = build_graph([obj(IDENTITY, "id", "i1")])
    assert g2.move_nodes() == {}


def test_broken_chains_are_reported_not_skipped() -> None:
    g = build_graph([
        obj(CLUSTER, "test1", "c1"),
        obj(MACHINE, "m1", "m1", ((CLUSTER, "test1", "c1"), (CM, "ghost", "nope"))),   # owner never observed
    ])
    problems = g.broken_chains()
    assert [(str(n.key), "ghost" in why) for n, why in problems] == [(str(key(MACHINE, "m1")), True)]


def test_levels_put_owners_first_and_survive_cycles() -> None:
    g = build_graph([
        obj(CLUSTER, "c", "c1"),
        obj(MACHINE, "a", "a1", ((CLUSTER, "c", "c1"), (MACHINE, "b", "b1"))),
        obj(MACHINE, "b", "b1", ((MACHINE, "a", "a1"),)),                      # cycle a <-> b
        obj(CM, "leaf", "l1", ((CLUSTER, "c", "c1"),)),
    ])
    order = levels(g.move_nodes())
    flat = [n.key for level in order for n in level]
    assert flat[0] == key(CLUSTER, "c")
    assert set(flat) == set(g.move_nodes())
    assert len(flat) == len(set(flat))

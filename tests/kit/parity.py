"""Shared by the parity tests (issue 15): a topology that exercises clusterctl's less-travelled rules,
written into real clusters on top of the usual seed, and a strict comparison that keeps our marks.

What `add_extras` adds beside the seeded workload cluster `test1` of namespace `metal3`:
- a ClusterClass `shared` in namespace `classes` (with the templates it owns), used by `test1` through
  `spec.topology.classRef` (rule 4: copied, kept in the source);
- a cluster-scoped identity of a kind labelled move-hierarchy (a CRD of our own, shaped like CAPA's
  AWSClusterStaticIdentity) and a Secret in the infrastructure provider's namespace that it owns
  (rule 3: copied when missing, never deleted from the source);
- an unowned Secret `test1-apiserver-etcd-client` (soft ownership by name, rule 7);
- a ConfigMap with `generateName` owned by the Cluster through an older apiVersion (rule 6);
- two objects of a force-moved kind that own each other (an owner cycle, rule 7);
- labels and annotations of other tools on the moved objects (rule 6: they arrive as they left).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from lab.cluster import LocalCluster
from metal3_pivot.discovery import discover, unpacked
from metal3_pivot.kube import CONFIGMAP, CRD, NAMESPACE, SECRET, Kube, ResourceType, load_kubeconfig

Obj = dict[str, Any]

CLASSES_NS = "classes"
PROVIDER_NS = "capm3-system"
WORKLOAD_NS = "metal3"
CAPI = "cluster.x-k8s.io/v1beta2"
INFRA = "infrastructure.cluster.x-k8s.io/v1beta2"
CONTROLPLANE = "controlplane.cluster.x-k8s.io/v1beta2"
TEST_GROUP = "parity.metal3-pivot.test"

CLUSTER = ResourceType("cluster.x-k8s.io", "v1beta2", "Cluster", "clusters")
CLUSTERCLASS = ResourceType("cluster.x-k8s.io", "v1beta2", "ClusterClass", "clusterclasses")
M3C_TEMPLATE = ResourceType("infrastructure.cluster.x-k8s.io", "v1beta2", "Metal3ClusterTemplate",
                            "metal3clustertemplates")
KCP_TEMPLATE = ResourceType("controlplane.cluster.x-k8s.io", "v1beta2", "KubeadmControlPlaneTemplate",
                            "kubeadmcontrolplanetemplates")
IDENTITY = ResourceType(TEST_GROUP, "v1", "ParityIdentity", "parityidentities", namespaced=False)
WIDGET = ResourceType(TEST_GROUP, "v1", "ParityWidget", "paritywidgets")
BMH = ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts")
METAL3MACHINE = ResourceType("infrastructure.cluster.x-k8s.io", "v1beta2", "Metal3Machine", "metal3machines")

OUR_PREFIX = "metal3-pivot.io/"


def kube(cluster: LocalCluster, name: str | None = None) -> Kube:
    return Kube(load_kubeconfig(cluster.kubeconfig), name=name or cluster.name)


def _crd(kind: str, plural: str, scope: str, labels: dict[str, str]) -> Obj:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{TEST_GROUP}", "labels": labels},
        "spec": {"group": TEST_GROUP, "scope": scope,
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": kind + "List"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


TEST_CRDS = [
    # cluster-scoped and a tenant root, like CAPA's AWSClusterStaticIdentity
    _crd("ParityIdentity", "parityidentities", "Cluster",
         {"clusterctl.cluster.x-k8s.io": "", "clusterctl.cluster.x-k8s.io/move-hierarchy": ""}),
    # namespaced and force-moved, like BMO's HardwareData
    _crd("ParityWidget", "paritywidgets", "Namespaced",
         {"clusterctl.cluster.x-k8s.io": "", "clusterctl.cluster.x-k8s.io/move": ""}),
]


async def install_test_crds(k: Kube) -> None:
    for crd in TEST_CRDS:
        await k.apply(CRD, crd, manager="parity-test")
    for _ in range(200):
        established = {c["metadata"]["name"] for c in await k.list(CRD) if any(
            x["type"] == "Established" and x["status"] == "True" for x in (c.get("status") or {}).get("conditions")
            or [])}
        if {c["metadata"]["name"] for c in TEST_CRDS} <= established:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("test CRDs not established")


def _owner(obj: Obj, *, controller: bool = False, api_version: str | None = None) -> Obj:
    ref = {"apiVersion": api_version or obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
           "uid": obj["metadata"]["uid"]}
    if controller:
        ref.update(controller=True, blockOwnerDeletion=True)
    return ref


async def _ns(k: Kube, name: str) -> None:
    await k.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                  manager="parity-test")


async def add_cluster_class(k: Kube, namespace: str = CLASSES_NS, name: str = "shared") -> Obj:
    """A ClusterClass and the two templates it names (owned by it, as CAPI's topology controller sets)."""
    await _ns(k, namespace)
    cc = await k.create(CLUSTERCLASS, {
        "apiVersion": CAPI, "kind": "ClusterClass",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "platform"}},
        "spec": {"infrastructure": {"templateRef": {"apiVersion": INFRA, "kind": "Metal3ClusterTemplate",
                                                    "name": name}},
                 "controlPlane": {"templateRef": {"apiVersion": CONTROLPLANE, "kind": "KubeadmControlPlaneTemplate",
                                                  "name": name}}}})
    await k.create(M3C_TEMPLATE, {
        "apiVersion": INFRA, "kind": "Metal3ClusterTemplate",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [_owner(cc)]},
        "spec": {"template": {"spec": {}}}})
    await k.create(KCP_TEMPLATE, {
        "apiVersion": CONTROLPLANE, "kind": "KubeadmControlPlaneTemplate",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [_owner(cc)]},
        "spec": {"template": {"spec": {"kubeadmConfigSpec": {"format": "cloud-config"}}}}})
    return cc


async def use_class(k: Kube, cluster: str, namespace: str, class_name: str, class_ns: str) -> None:
    await k.patch(CLUSTER, cluster, namespace, {"spec": {"topology": {
        "classRef": {"name": class_name, "namespace": class_ns}, "version": "v1.36.3"}}})


async def add_extras(k: Kube, *, cycle: bool = True) -> None:
    await install_test_crds(k)
    await add_cluster_class(k)
    await use_class(k, "test1", WORKLOAD_NS, "shared", CLASSES_NS)
    cluster = await k.get(CLUSTER, "test1", WORKLOAD_NS)
    assert cluster is not None
    await k.patch(CLUSTER, "test1", WORKLOAD_NS, {"metadata": {
        "labels": {"env": "prod"}, "annotations": {"example.com/owner": "team-a"}}})
    identity = await k.create(IDENTITY, {"apiVersion": f"{TEST_GROUP}/v1", "kind": "ParityIdentity",
                                         "metadata": {"name": "shared-identity"},
                                         "spec": {"secretRef": "shared-identity-creds"}})
    await k.create(SECRET, {"apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": "shared-identity-creds", "namespace": PROVIDER_NS,
                                         "ownerReferences": [_owner(identity)]},
                            "data": {"password": "c2VjcmV0"}})
    await k.create(SECRET, {"apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": "test1-apiserver-etcd-client", "namespace": WORKLOAD_NS},
                            "type": "kubernetes.io/tls",
                            "data": {"tls.crt": "Y3J0", "tls.key": "a2V5"}})
    await k.create(CONFIGMAP, {"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "test1-addon-x7k2p", "generateName": "test1-addon-",
                                            "namespace": WORKLOAD_NS,
                                            "labels": {"cluster.x-k8s.io/cluster-name": "test1"},
                                            "annotations": {"example.com/note": "kept"},
                                            "ownerReferences": [_owner(cluster, api_version=
                                                                       "cluster.x-k8s.io/v1beta1")]},
                               "data": {"k": "v"}})
    # written by server-side apply, as CAPI's topology controller writes what it owns: its managedFields
    # must survive the move (clusterctl restores them)
    await k.apply(CONFIGMAP, {"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "test1-topology-owned", "namespace": WORKLOAD_NS,
                                           "labels": {"topology.cluster.x-k8s.io/owned": ""},
                                           "ownerReferences": [_owner(cluster, controller=True)]},
                              "data": {"owned": "by the topology controller"}}, manager="capi-topology")
    if cycle:
        a = await k.create(WIDGET, {"apiVersion": f"{TEST_GROUP}/v1", "kind": "ParityWidget",
                                    "metadata": {"name": "cycle-a", "namespace": WORKLOAD_NS}})
        b = await k.create(WIDGET, {"apiVersion": f"{TEST_GROUP}/v1", "kind": "ParityWidget",
                                    "metadata": {"name": "cycle-b", "namespace": WORKLOAD_NS,
                                                 "ownerReferences": [_owner(a)]}})
        await k.patch(WIDGET, "cycle-a", WORKLOAD_NS, {"metadata": {"ownerReferences": [_owner(b)]}})
        await k.create(WIDGET, {"apiVersion": f"{TEST_GROUP}/v1", "kind": "ParityWidget",
                                "metadata": {"name": "plain", "namespace": WORKLOAD_NS}})


def prepare(clusters: dict[str, LocalCluster], *, cycle: bool = True) -> None:
    """Test CRDs in both clusters (the target must serve what moves), the extras in the ephemeral one."""
    async def go() -> None:
        async with kube(clusters["ephemeral"]) as e, kube(clusters["target"]) as t:
            await install_test_crds(t)
            await add_extras(e, cycle=cycle)
    asyncio.run(go())


# ---------------------------------------------------------------------------------------------- comparing

VOLATILE = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def strict(obj: Obj) -> Obj:
    """An object without only what must differ between two clusters (UIDs, versions, timestamps):
    labels, annotations (ours included), generateName and ownerReference apiVersions all count."""
    o = copy.deepcopy(obj)
    md = o["metadata"]
    for f in VOLATILE:
        md.pop(f, None)
    refs = md.get("ownerReferences") or []
    for ref in refs:
        ref.pop("uid", None)
    refs.sort(key=lambda r: (r.get("kind", ""), r.get("name", "")))  # clusterctl writes them in map order
    o.pop("status", None)
    return o


def everything(cluster: LocalCluster, namespaces: tuple[str, ...] = (WORKLOAD_NS, CLASSES_NS, PROVIDER_NS)
               ) -> dict[Any, Obj]:
    """Every object clusterctl's rules would move from `namespaces` (kept ones included: the shared
    ClusterClass, the global identity and its Secret), by key; cluster-scoped ones of the test group only."""
    async def go() -> dict[Any, Obj]:
        async with kube(cluster) as k:
            view = await discover(k, list(namespaces))
            return {key: unpacked(n.obj) for key, n in view.graph.move_nodes().items()
                    if not n.is_global or key.group == TEST_GROUP}
    return asyncio.run(go())


def our_marks(objects: dict[Any, Obj]) -> dict[str, list[str]]:
    """Annotations or labels of ours still present, by object."""
    found = {}
    for key, obj in objects.items():
        md = obj["metadata"]
        keys = [k for k in {**(md.get("annotations") or {}), **(md.get("labels") or {})} if k.startswith(OUR_PREFIX)]
        if keys:
            found[str(key)] = sorted(keys)
    return found


def field_owners(obj: Obj) -> list[tuple[str, str, str]]:
    """An object's managedFields as (manager, operation, fields) with UIDs in field keys left out (an
    ownerReference's key names the source's UID, in clusterctl's copies as in ours)."""
    import json
    import re

    out = []
    for entry in obj["metadata"].get("managedFields") or []:
        fields = re.sub(r'\\"uid\\":\\"[^"\\]*\\"', "", json.dumps(entry.get("fieldsV1"), sort_keys=True))
        out.append((entry.get("manager", ""), entry.get("operation", ""), fields))
    return sorted(out)


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def block_move_annotations(cluster: LocalCluster, namespace: str = WORKLOAD_NS) -> list[str]:
    async def go() -> list[str]:
        async with kube(cluster) as k:
            return [m["metadata"]["name"] for m in await k.list(METAL3MACHINE, namespace)
                    if "clusterctl.cluster.x-k8s.io/block-move" in (m["metadata"].get("annotations") or {})]
    return asyncio.run(go())


def get(cluster: LocalCluster, rt: ResourceType, name: str, namespace: str | None = None) -> Obj | None:
    async def go() -> Obj | None:
        async with kube(cluster) as k:
            return await k.get(rt, name, namespace)
    return asyncio.run(go())

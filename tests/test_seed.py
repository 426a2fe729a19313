"""The seed: metal3-dev-env-like objects pass the real CRD schemas and survive the garbage collector."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest

from lab.cluster import LocalCluster
from lab.data import crds
from lab.data.seed import seed, type_index
from lab.data.seed_objects import Topology, build
from metal3_pivot.errors import InvalidObjectError
from metal3_pivot.kube import CONFIGMAP, Kube, load_kubeconfig
from tests.kit.move import read_seeded

pytestmark = pytest.mark.cluster

TOPOLOGY = Topology(namespace="metal3", clusters=1, control_planes=3, workers=2)


async def _gc_canary(kube: Kube, namespace: str, timeout: float = 60) -> float:
    """Create an object owned by a UID that does not exist and wait for the collector to delete it:
    proof that the garbage collector is running and has caught up with this namespace."""
    start = time.monotonic()
    await kube.create(CONFIGMAP, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "gc-canary", "namespace": namespace, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
            "uid": "00000000-0000-0000-0000-000000000000"}]}})
    while await kube.get(CONFIGMAP, "gc-canary", namespace) is not None:
        assert time.monotonic() - start < timeout, "the garbage collector never collected the canary"
        await asyncio.sleep(0.2)
    return time.monotonic() - start


def test_seed_is_valid_and_survives_the_garbage_collector(cluster_pair: dict[str, LocalCluster]) -> None:
    cluster = cluster_pair["ephemeral"]
    expected = build(TOPOLOGY)

    async def seed_and_let_the_collector_run() -> None:
        async with Kube(load_kubeconfig(cluster.kubeconfig)) as kube:
            result = await seed(kube, TOPOLOGY, crds.bundle().resource_types())
            assert result.objects == len(expected)
            assert result.per_kind["BareMetalHost"] == 5 and result.per_kind["Machine"] == 5
            await _gc_canary(kube, TOPOLOGY.namespace)
            await asyncio.sleep(3)   # and a few more collector cycles
            await _gc_canary(kube, TOPOLOGY.namespace)

    asyncio.run(seed_and_let_the_collector_run())
    found = read_seeded(cluster.kubeconfig, TOPOLOGY)
    missing = [(so.obj["kind"], so.obj["metadata"]["name"]) for so in expected
               if (so.obj["kind"], so.obj["metadata"]["name"]) not in found]
    assert missing == []
    # owner references resolve to the live UIDs
    uids = {(k, n): o["metadata"]["uid"] for (k, n), o in found.items()}
    for obj in found.values():
        for ref in obj["metadata"].get("ownerReferences") or []:
            assert uids[(ref["kind"], ref["name"])] == ref["uid"]
    # statuses were written through the subresource
    cl = next(o for (k, _), o in found.items() if k == "Cluster")
    assert cl["status"]["initialization"]["infrastructureProvisioned"] is True
    assert all(o["status"]["nodeRef"]["name"] for (k, _), o in found.items() if k == "Machine")
    bmh = next(o for (k, _), o in found.items() if k == "BareMetalHost")
    assert "baremetalhost.metal3.io/status" in bmh["metadata"]["annotations"]
    assert bmh["status"]["provisioning"]["state"] == "provisioned"


def test_a_broken_seed_object_is_rejected_by_the_real_schema(cluster_pair: dict[str, LocalCluster]) -> None:
    cluster = cluster_pair["target"]
    index = type_index(crds.bundle().resource_types())
    bmh = copy.deepcopy(next(so.obj for so in build(Topology(namespace="default", control_planes=1, workers=0))
                             if so.obj["kind"] == "BareMetalHost"))
    bmh["metadata"].pop("ownerReferences", None)
    bmh["spec"].pop("consumerRef", None)
    bmh["spec"]["online"] = "yes please"            # not a boolean
    bmh["spec"]["bootMode"] = "floppy"              # not in the enum

    async def scenario() -> None:
        async with Kube(load_kubeconfig(cluster.kubeconfig)) as kube:
            with pytest.raises(InvalidObjectError) as err:
                await kube.create(index[("metal3.io", "BareMetalHost")], bmh)
            assert "spec.online" in str(err.value) and "spec.bootMode" in str(err.value)

    asyncio.run(scenario())

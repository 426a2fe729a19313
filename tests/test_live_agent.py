"""The node agent of a management cluster runs Ironic the way the cluster declares it, and a deleted
Ironic Deployment is gone only once its Ironic has stopped (what makes a Pulumi delete-before-replace
of Ironic a handover with never two Ironics)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from components import manifests
from components.config import IronicConfig
from components.ironic import ironic_objects
from lab.cli import start_clusters
from lab.cluster import LocalCluster, processes_under
from lab.plane.agent import agent_pid, start_agent, stop_agent
from lab.plane.ironic import processes_under as plane_processes_under
from lab.plane.managers import BINARIES
from lab.plane.runner import FINALIZER, ironic_endpoint
from metal3_pivot import DEPLOYMENTS, SECRET, Kube, ResourceType
from tests.kit.env import SESSION_DIR
from tests.kit.live import call, installed_webhooks

pytestmark = [pytest.mark.live, pytest.mark.cluster]

KINDS = {"Namespace": ResourceType("", "v1", "Namespace", "namespaces", namespaced=False),
         "ConfigMap": ResourceType("", "v1", "ConfigMap", "configmaps"),
         "ServiceAccount": ResourceType("", "v1", "ServiceAccount", "serviceaccounts"),
         "Service": ResourceType("", "v1", "Service", "services"),
         "Deployment": DEPLOYMENTS,
         "Secret": SECRET}
NS = "baremetal-operator-system"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = start_clusters(["agent"], SESSION_DIR / "live-agent", attached=True)["agent"]
    yield c
    stop_agent(c.directory)
    c.stop()


def wait(what: str, probe: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"not in {timeout:.0f} s: {what}")


def test_ironic_and_bmo_follow_the_cluster_and_a_deleted_ironic_stops_before_it_is_gone(cluster: LocalCluster) -> None:
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            *(o for o in ironic_objects(IronicConfig()) if o["kind"] in KINDS),
            *(o for o in installed_webhooks(manifests.BMO) if o["kind"] == "Secret")]

    async def apply(kube: Kube) -> None:
        for o in objs:
            await kube.apply(KINDS[o["kind"]], o, manager="test")
    call(cluster, apply)
    start_agent(cluster)
    try:
        ironic = wait("Ironic's Deployment available", lambda: (call(cluster, lambda k: k.get(
            DEPLOYMENTS, "ironic", NS)).get("status") or {}).get("availableReplicas") == 1)
        assert ironic
        wait("BMO available", lambda: (call(cluster, lambda k: k.get(
            DEPLOYMENTS, "baremetal-operator-controller-manager", NS)).get("status") or {}).get("availableReplicas"))
        dep = call(cluster, lambda k: k.get(DEPLOYMENTS, "ironic", NS))
        assert FINALIZER in dep["metadata"]["finalizers"]
        # BMO's endpoint answers with Ironic's API root
        import urllib.request
        with urllib.request.urlopen(ironic_endpoint(cluster), timeout=5) as r:
            assert r.status == 200
        ironic_pids = [p for p in plane_processes_under(cluster.directory)]
        assert ironic_pids, "no Ironic process runs for the cluster"

        # a foreground delete (Pulumi's) of the Ironic Deployment: gone only once Ironic has exited
        call(cluster, lambda k: k.delete(DEPLOYMENTS, "ironic", NS, propagation="Foreground"))
        t0 = time.monotonic()
        while call(cluster, lambda k: k.get(DEPLOYMENTS, "ironic", NS)) is not None:
            assert time.monotonic() - t0 < 60, "the Ironic Deployment was not released in 60 s"
            time.sleep(0.05)
        left = [p for p in plane_processes_under(cluster.directory / "plane" / f"{NS}.ironic")]
        assert not left, f"Ironic processes still run after its Deployment is gone: {left}"
        print(f"\nforeground delete of Ironic's Deployment took {time.monotonic() - t0:.1f} s")
        with pytest.raises(OSError):
            urllib.request.urlopen(ironic_endpoint(cluster), timeout=5)
    finally:
        stop_agent(cluster.directory)
    assert agent_pid(cluster.directory) is None
    assert not processes_under(cluster.directory, BINARIES)
    assert not plane_processes_under(cluster.directory)

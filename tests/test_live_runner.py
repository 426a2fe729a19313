"""The lab's node agent follows what a cluster declares: a provider Deployment put there starts its
manager, its status reports it available, and deleting the Deployment stops the process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from components import manifests
from components.config import IronicConfig
from components.ironic import ironic_objects
from lab.cli import start_clusters
from lab.cluster import LocalCluster, processes_under
from lab.plane.ironic import processes_under as plane_processes_under
from lab.plane.managers import BINARIES
from lab.plane.runner import DeploymentRunner, IronicProcess, ironic_endpoint
from metal3_pivot.kube import DEPLOYMENTS, Kube, ResourceType
from tests.kit.env import SESSION_DIR
from tests.kit.live import call

pytestmark = [pytest.mark.live, pytest.mark.cluster]

KINDS = {"Namespace": ResourceType("", "v1", "Namespace", "namespaces", namespaced=False),
         "ConfigMap": ResourceType("", "v1", "ConfigMap", "configmaps"),
         "ServiceAccount": ResourceType("", "v1", "ServiceAccount", "serviceaccounts"),
         "Service": ResourceType("", "v1", "Service", "services"),
         "Deployment": DEPLOYMENTS}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = start_clusters(["runner"], SESSION_DIR / "live-runner", attached=True)["runner"]
    yield c
    c.stop()


def test_the_runner_runs_what_the_cluster_declares_and_stops_what_it_drops(cluster: LocalCluster) -> None:
    # what ProviderInstall applies for the core provider (RBAC left out: the managers use the admin kubeconfig)
    objs = [o for o in manifests.controllers(manifests.PROVIDERS[0]) if o["kind"] in KINDS]
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    key = f"{deployment['metadata']['namespace']}/{deployment['metadata']['name']}"

    async def apply(kube: Kube) -> None:
        for o in sorted(objs, key=lambda o: o["kind"] != "Namespace"):
            await kube.apply(KINDS[o["kind"]], o, manager="test")
    call(cluster, apply)

    runner = DeploymentRunner(cluster)
    try:
        runner.sync()
        assert key in runner.running, (runner.failures, runner.events)
        pid = runner.running[key].process.pid
        status = call(cluster, lambda kube: kube.get(DEPLOYMENTS, deployment["metadata"]["name"],
                                                     deployment["metadata"]["namespace"]))["status"]
        assert status["availableReplicas"] == 1, status

        runner.sync()                       # nothing changed: the same process keeps running
        assert runner.running[key].process.pid == pid

        call(cluster, lambda kube: kube.delete(DEPLOYMENTS, deployment["metadata"]["name"],
                                               deployment["metadata"]["namespace"]))
        runner.sync()
        assert key not in runner.running
        assert not processes_under(cluster.directory, BINARIES)
        print("\n".join(runner.events))
    finally:
        runner.stop()


def test_bmo_deployed_by_the_ironic_component_runs_in_its_namespace(cluster: LocalCluster) -> None:
    # what the stack's Ironic component applies (BMO moved into Ironic's namespace), Ironic's own
    # Deployment included: it runs as the cluster's LocalIronic (tests/test_live_agent.py goes further)
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "metal3"}},
            *(o for o in ironic_objects(IronicConfig(namespace="metal3")) if o["kind"] in KINDS)]

    async def apply(kube: Kube) -> None:
        for o in objs:
            await kube.apply(KINDS[o["kind"]], o, manager="test")
    call(cluster, apply)

    runner = DeploymentRunner(cluster)
    try:
        runner.sync()
        bmo = [k for k in runner.running if k.startswith("metal3/baremetal-operator")]
        assert len(bmo) == 1 and runner.running[bmo[0]].process.plan.binary == "baremetal-operator", \
            (runner.running, runner.failures, runner.events)
        assert isinstance(runner.running["metal3/ironic"].process, IronicProcess)
        assert runner.running[bmo[0]].process.plan.env["IRONIC_ENDPOINT"] == ironic_endpoint(cluster)
        # its serving certificate: the release's Certificate, issued into Ironic's namespace
        assert runner.running[bmo[0]].process.plan.certificate == \
            "baremetal-operator-system/baremetal-operator-serving-cert"
    finally:
        runner.stop()
    assert not processes_under(cluster.directory, BINARIES)
    assert not plane_processes_under(cluster.directory)

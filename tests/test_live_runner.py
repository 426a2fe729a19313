"""The lab's node agent follows what a cluster declares: a provider Deployment put there starts its
manager, its status reports it available, its webhooks answer through the `service:` references of the
cluster's webhook configurations (the Pod's EndpointSlice, written by the runner), and deleting the
Deployment stops the process and withdraws the slice."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from components import manifests
from components.config import IronicConfig
from components.ironic import ironic_objects
from lab.cli import start_clusters
from lab.cluster import LocalCluster, processes_under
from lab.plane.checks import manager_processes, runs_what_it_declares
from lab.plane.endpoints import ENDPOINT_SLICES
from lab.plane.ironic import processes_under as plane_processes_under
from lab.plane.managers import BINARIES
from lab.plane.runner import DeploymentRunner, IronicProcess, ironic_endpoint
from metal3_pivot.errors import ApiError
from metal3_pivot.kube import DEPLOYMENTS, SECRET, VALIDATING_WEBHOOKS, Kube, ResourceType
from tests.kit.env import SESSION_DIR
from tests.kit.live import call, installed_webhooks

pytestmark = [pytest.mark.live, pytest.mark.cluster]

KINDS = {"Namespace": ResourceType("", "v1", "Namespace", "namespaces", namespaced=False),
         "ConfigMap": ResourceType("", "v1", "ConfigMap", "configmaps"),
         "ServiceAccount": ResourceType("", "v1", "ServiceAccount", "serviceaccounts"),
         "Service": ResourceType("", "v1", "Service", "services"),
         "Deployment": DEPLOYMENTS,
         "Secret": SECRET,
         "ValidatingWebhookConfiguration": VALIDATING_WEBHOOKS,
         "MutatingWebhookConfiguration": ResourceType("admissionregistration.k8s.io", "v1",
                                                      "MutatingWebhookConfiguration", "mutatingwebhookconfigurations",
                                                      namespaced=False)}
CLUSTER = ResourceType("cluster.x-k8s.io", "v1beta2", "Cluster", "clusters")
BMH = ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = start_clusters(["runner"], SESSION_DIR / "live-runner", attached=True)["runner"]
    yield c
    c.stop()


def test_the_runner_runs_what_the_cluster_declares_and_stops_what_it_drops(cluster: LocalCluster) -> None:
    # what ProviderInstall applies for the core provider (RBAC left out: the managers use the admin kubeconfig)
    objs = [o for o in manifests.controllers(manifests.PROVIDERS[0]) if o["kind"] in KINDS]
    objs += installed_webhooks(manifests.PROVIDERS[0])
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    key = f"{deployment['metadata']['namespace']}/{deployment['metadata']['name']}"

    # the Service after the Deployment, as a parallel install may create them: the process is up first
    late = [o for o in objs if o["kind"] == "Service"]

    async def apply(kube: Kube, objs: list = [o for o in objs if o not in late]) -> None:   # noqa: B006
        for o in sorted(objs, key=lambda o: o["kind"] != "Namespace"):
            await kube.apply(KINDS[o["kind"]], o, manager="test")
    call(cluster, apply)

    runner = DeploymentRunner(cluster)
    try:
        runner.sync()
        assert key in runner.running, (runner.failures, runner.events)
        assert not call(cluster, lambda kube: kube.list(ENDPOINT_SLICES, "capi-system"))
        call(cluster, lambda kube: apply(kube, late))
        runner.sync()                       # the EndpointSlice controller's part: the late Service gets its slice
        assert [e["metadata"]["labels"]["kubernetes.io/service-name"]
                for e in call(cluster, lambda kube: kube.list(ENDPOINT_SLICES, "capi-system"))] == \
            ["capi-webhook-service"], runner.events
        pid = runner.running[key].process.pid
        status = call(cluster, lambda kube: kube.get(DEPLOYMENTS, deployment["metadata"]["name"],
                                                     deployment["metadata"]["namespace"]))["status"]
        assert status["availableReplicas"] == 1, status

        runner.sync()                       # nothing changed: the same process keeps running
        assert runner.running[key].process.pid == pid
        # the live workflow's check: each declared controller has its process and it answers /readyz
        (check,) = runs_what_it_declares(cluster)
        assert check.ok and check.detail.startswith("1 of 1 declared answer"), check
        assert set(manager_processes(cluster)) == {key}

        # the core provider's webhooks (failurePolicy Fail) are called through capi-webhook-service
        cluster_obj = {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Cluster",
                       "metadata": {"name": "c1", "namespace": "default"},
                       "spec": {"clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/18"]}},
                                "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io",
                                                      "kind": "Metal3Cluster", "name": "c1"}}}
        created = call(cluster, lambda kube: kube.create(CLUSTER, cluster_obj))
        assert created["metadata"]["name"] == "c1"
        bad = {**cluster_obj, "metadata": {"name": "c2", "namespace": "default"},
               "spec": {"topology": {"version": "not-a-version", "classRef": {"name": "x"}}}}
        with pytest.raises(ApiError) as err:
            call(cluster, lambda kube: kube.create(CLUSTER, bad))
        assert "admission webhook" in str(err.value), str(err.value)

        call(cluster, lambda kube: kube.delete(DEPLOYMENTS, deployment["metadata"]["name"],
                                               deployment["metadata"]["namespace"]))
        (check,) = runs_what_it_declares(cluster)       # deleted, its process not stopped yet
        assert not check.ok and f"running but not declared: {key}" in check.detail, check
        runner.sync()
        assert key not in runner.running
        (check,) = runs_what_it_declares(cluster)
        assert check.ok, check
        assert not processes_under(cluster.directory, BINARIES)
        assert not call(cluster, lambda kube: kube.list(ENDPOINT_SLICES, "capi-system"))
        print("\n".join(runner.events))
    finally:
        runner.stop()


def test_bmo_deployed_by_the_ironic_component_runs_in_its_namespace(cluster: LocalCluster) -> None:
    # what the stack's Ironic component applies (BMO moved into Ironic's namespace), Ironic's own
    # Deployment included: it runs as the cluster's LocalIronic (tests/test_live_agent.py goes further)
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "metal3"}},
            *(o for o in ironic_objects(IronicConfig(namespace="metal3")) if o["kind"] in KINDS),
            *installed_webhooks(manifests.BMO, "metal3")]

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
        (check,) = runs_what_it_declares(cluster)
        assert check.ok and "Ironic declared, running" in check.detail, check
        # its webhook, through the Service in Ironic's namespace, refuses a host with an unknown BMC
        bmh = {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
               "metadata": {"name": "h0", "namespace": "metal3"},
               "spec": {"online": False, "bmc": {"address": "no-such-driver://127.0.0.1:1/",
                                                 "credentialsName": "h0-bmc"}}}
        with pytest.raises(ApiError) as err:
            call(cluster, lambda kube: kube.create(BMH, bmh))
        assert "baremetalhost.metal3.io" in str(err.value), str(err.value)
        # stopped with the cluster's webhook left in place: a manager that is down blocks writes of its kinds
        call(cluster, lambda kube: kube.delete(VALIDATING_WEBHOOKS,
                                               "baremetal-operator-validating-webhook-configuration"))
    finally:
        runner.stop()
    assert not processes_under(cluster.directory, BINARIES)
    assert not plane_processes_under(cluster.directory)

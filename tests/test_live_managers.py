"""The real Cluster API, CAPM3, IPAM and BMO managers, run by lab/plane against a real local cluster.

One cluster with the real CRDs and every manager started from its release Deployment, shared by the
module: each test looks at one thing a live controller does that nothing in the lab did before (a
defaulting webhook, a validating webhook, a conversion webhook, a reconcile), and the last one stops
them all and finds no process left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lab.cli import start_clusters
from lab.cluster import LocalCluster, processes_under
from lab.plane.endpoints import ENDPOINT_SLICES, host_address
from lab.plane.managers import BINARIES, Plane
from lab.plane.spawn import alive
from metal3_pivot.errors import ApiError
from metal3_pivot.kube import NAMESPACE, SECRET, VALIDATING_WEBHOOKS, Kube, ResourceType, load_kubeconfig
from tests.kit.env import SESSION_DIR

pytestmark = [pytest.mark.live, pytest.mark.cluster]

CAPI = "cluster.x-k8s.io"
CLUSTER = ResourceType(CAPI, "v1beta2", "Cluster", "clusters")
CLUSTER_V1BETA1 = ResourceType(CAPI, "v1beta1", "Cluster", "clusters")
MACHINE_DEPLOYMENT = ResourceType(CAPI, "v1beta2", "MachineDeployment", "machinedeployments")
KCP = ResourceType(f"controlplane.{CAPI}", "v1beta2", "KubeadmControlPlane", "kubeadmcontrolplanes")
METAL3_CLUSTER = ResourceType("infrastructure.cluster.x-k8s.io", "v1beta2", "Metal3Cluster", "metal3clusters")
BMH = ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts")
NS = "live"
#: the order clusterctl init and metal3-dev-env bring them up in
PROVIDERS = ("cluster-api", "bootstrap-kubeadm", "control-plane-kubeadm", "infrastructure-metal3", "ipam-metal3",
             "baremetal-operator")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = start_clusters(["live"], SESSION_DIR / "live-managers", attached=True)["live"]
    yield c
    c.stop()


@pytest.fixture(scope="module")
def plane(cluster: LocalCluster) -> Iterator[Plane]:
    # nothing listens on this Ironic port: BMO starts and serves its webhook, hosts would wait for Ironic
    p = Plane(cluster)
    try:
        p.start(*PROVIDERS, env={"IRONIC_ENDPOINT": "http://127.0.0.1:9/v1/"})
        yield p
    finally:
        p.stop()


def run(cluster: LocalCluster, fn: Any) -> Any:
    async def go() -> Any:
        async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
            await kube.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
            return await fn(kube)
    return asyncio.run(go())


def test_every_manager_starts_from_its_release_deployment(plane: Plane) -> None:
    for provider, mp in plane.processes.items():
        assert mp.alive(), f"{provider} died: see {mp.log}"
        assert mp.slices, f"{provider}: no EndpointSlice for its webhook Service"
        print(f"{provider}: {mp.plan.binary} pid {mp.pid} ready in {mp.started_in:.1f} s, "
              f"webhook :{mp.plan.webhook_port}, {mp.rss_mib():.0f} MiB, slices {mp.slices}")
    # the serving certificates live where cert-manager would have put them: the Secret the Deployment mounts
    secrets = run(plane.cluster, lambda kube: kube.get(SECRET, "capi-webhook-service-cert", "capi-system"))
    assert secrets is not None and secrets["type"] == "kubernetes.io/tls"
    # the webhooks are called through the release's `service:` references, reached by their EndpointSlices
    # (the API server runs with --enable-aggregator-routing): nothing is re-pointed at a URL
    hooks = run(plane.cluster, lambda kube: kube.list(VALIDATING_WEBHOOKS))
    ccs = [h["clientConfig"] for o in hooks for h in o["webhooks"]]
    assert ccs and all("service" in cc and "url" not in cc and cc.get("caBundle") for cc in ccs), ccs
    address = host_address()
    es = run(plane.cluster, lambda kube: kube.get(ENDPOINT_SLICES, "capi-webhook-service-lab", "capi-system"))
    assert es is not None and es["endpoints"][0]["addresses"] == [address]
    assert es["ports"][0]["port"] == plane.processes["cluster-api"].plan.webhook_port


def test_a_machine_deployment_is_defaulted_by_the_core_webhook(plane: Plane) -> None:
    md = {"apiVersion": f"{CAPI}/v1beta2", "kind": "MachineDeployment",
          "metadata": {"name": "workers", "namespace": NS},
          "spec": {"clusterName": "c1", "template": {"spec": {
              "clusterName": "c1", "version": "v1.34.1",
              "bootstrap": {"dataSecretName": "c1-workers"},
              "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "Metal3MachineTemplate",
                                    "name": "c1-workers"}}}}}
    created = run(plane.cluster, lambda kube: kube.create(MACHINE_DEPLOYMENT, md))
    # the defaulting webhook fills the selector and the template labels from the cluster name
    assert created["spec"]["selector"]["matchLabels"][f"{CAPI}/cluster-name"] == "c1"
    assert created["spec"]["template"]["metadata"]["labels"][f"{CAPI}/cluster-name"] == "c1"
    assert created["metadata"]["labels"][f"{CAPI}/cluster-name"] == "c1"


def test_a_bad_kubeadm_control_plane_version_is_rejected(plane: Plane) -> None:
    kcp = {"apiVersion": f"controlplane.{CAPI}/v1beta2", "kind": "KubeadmControlPlane",
           "metadata": {"name": "cp", "namespace": NS},
           "spec": {"replicas": 1, "version": "not-a-version",
                    "machineTemplate": {"spec": {"infrastructureRef": {
                        "apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "Metal3MachineTemplate",
                        "name": "cp"}}}}}
    with pytest.raises(ApiError) as err:
        run(plane.cluster, lambda kube: kube.create(KCP, kcp))
    assert "admission webhook" in str(err.value) and "version" in str(err.value), str(err.value)


def test_a_bare_metal_host_with_an_unknown_bmc_is_rejected_by_bmo(plane: Plane) -> None:
    bmh = {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost", "metadata": {"name": "h0", "namespace": NS},
           "spec": {"online": False, "bmc": {"address": "no-such-driver://127.0.0.1:1/", "credentialsName": "h0-bmc"}}}
    with pytest.raises(ApiError) as err:
        run(plane.cluster, lambda kube: kube.create(BMH, bmh))
    assert "baremetalhost.metal3.io" in str(err.value), str(err.value)


def test_the_core_manager_reconciles_a_cluster_and_serves_conversion(plane: Plane) -> None:
    infra = {"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "Metal3Cluster",
             "metadata": {"name": "c1", "namespace": NS},
             "spec": {"controlPlaneEndpoint": {"host": "127.0.0.1", "port": 6443}}}
    cluster = {"apiVersion": f"{CAPI}/v1beta2", "kind": "Cluster", "metadata": {"name": "c1", "namespace": NS},
               "spec": {"clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/18"]}},
                        "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io", "kind": "Metal3Cluster",
                                              "name": "c1"}}}

    async def scenario(kube: Kube) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        await kube.create(METAL3_CLUSTER, infra)      # through CAPM3's webhooks
        await kube.create(CLUSTER, cluster)
        deadline = time.monotonic() + 60
        while True:
            got = await kube.get(CLUSTER, "c1", NS)
            m3c = await kube.get(METAL3_CLUSTER, "c1", NS)
            assert got is not None and m3c is not None
            owners = [o["kind"] for o in m3c["metadata"].get("ownerReferences") or []]
            if "cluster.cluster.x-k8s.io" in (got["metadata"].get("finalizers") or []) and \
                    (got.get("status") or {}).get("phase") and "Cluster" in owners:
                break
            assert time.monotonic() < deadline, f"the core manager did not reconcile the Cluster: {got} {m3c}"
            await asyncio.sleep(0.2)
        # asking for v1beta1 makes the API server call the manager's /convert
        old = await kube.get(CLUSTER_V1BETA1, "c1", NS)
        assert old is not None
        return got, m3c, old

    got, m3c, old = run(plane.cluster, scenario)
    assert got["status"]["phase"] in ("Pending", "Provisioning"), got["status"]
    # the core manager adopted the infrastructure cluster, as it does in a real management cluster
    assert any(o["kind"] == "Cluster" and o["name"] == "c1" for o in m3c["metadata"]["ownerReferences"])
    assert old["apiVersion"] == f"{CAPI}/v1beta1"
    assert old["spec"]["clusterNetwork"]["pods"]["cidrBlocks"] == ["192.168.0.0/18"]
    assert old["spec"]["infrastructureRef"]["kind"] == "Metal3Cluster"     # v1beta1 shape: a full ObjectReference
    assert "apiVersion" in old["spec"]["infrastructureRef"], old["spec"]["infrastructureRef"]


def test_stopping_the_plane_leaves_no_process(plane: Plane) -> None:
    pids = [mp.pid for mp in plane.processes.values()]
    # idle after the tests above: the figure docs/live-plane.md quotes
    print("idle RSS: " + ", ".join(f"{mp.plan.binary} {mp.rss_mib():.0f} MiB" for mp in plane.processes.values())
          + f"; total {sum(mp.rss_mib() for mp in plane.processes.values()):.0f} MiB")
    plane.stop()
    assert not plane.processes
    # a stopped Pod leaves its Services' endpoints
    assert not run(plane.cluster, lambda kube: kube.list(ENDPOINT_SLICES, "capi-system"))
    assert not processes_under(plane.cluster.directory, BINARIES), "a manager outlived Plane.stop()"
    for pid in pids:
        assert not alive(pid)

"""A workload cluster provisioned by the live controllers, on fake machines that the machine agent runs.

One management cluster with the real CRDs, the CAPI / kubeadm / CAPM3 / IPAM managers, BMO, one Ironic
and a rack of two fake machines. metal3-dev-env's workload cluster objects (lab/plane/topology.py) go
in; the controllers do the rest: hosts registered to `available` through Ironic, KCP generates the
cluster's certificates and init user data, CAPM3 claims a host, BMO + Ironic provision it; the machine
agent (lab/plane/machines.py) boots the workload cluster the init user data describes and registers
the worker's Node once its user data joins. Then the Cluster is deleted and the hosts go back to
`available`, which stops the workload cluster.

Every step's duration is printed (`-s`) and quoted in docs/live-plane.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab.cli import start_clusters
from lab.cluster import COMPONENTS, LocalCluster, free_port, processes_under
from lab.plane import managers
from lab.plane.bmc import LocalBmcs
from lab.plane.ironic import LocalIronic
from lab.plane.ironic import processes_under as ironic_processes_under
from lab.plane.ironic_api import IronicClient
from lab.plane.machines import MachineAgent, SyncReport
from lab.plane.managers import BINARIES, Plane
from lab.plane.topology import LiveTopology, apply_objects, live_objects
from metal3_pivot.kube import Kube, ResourceType, load_kubeconfig
from tests.kit.env import SESSION_DIR

pytestmark = [pytest.mark.live, pytest.mark.cluster]

BASE = SESSION_DIR / "live-provision"
CAPI = "cluster.x-k8s.io"
CLUSTER = ResourceType(CAPI, "v1beta2", "Cluster", "clusters")
MACHINE = ResourceType(CAPI, "v1beta2", "Machine", "machines")
KCP = ResourceType(f"controlplane.{CAPI}", "v1beta2", "KubeadmControlPlane", "kubeadmcontrolplanes")
M3M = ResourceType("infrastructure.cluster.x-k8s.io", "v1beta2", "Metal3Machine", "metal3machines")
BMH = ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts")
NODE = ResourceType("", "v1", "Node", "nodes", namespaced=False)
PROVIDERS = ("cluster-api", "bootstrap-kubeadm", "control-plane-kubeadm", "infrastructure-metal3", "ipam-metal3")
NS = "metal3"


@pytest.fixture(scope="module")
def management() -> Iterator[LocalCluster]:
    c = start_clusters(["management"], BASE, attached=True)["management"]
    yield c
    c.stop()


@pytest.fixture(scope="module")
def bmcs() -> Iterator[LocalBmcs]:
    rack = LocalBmcs("rack", BASE / "bmcs", count=2).start()
    yield rack
    rack.stop()


@pytest.fixture(scope="module")
def ironic() -> Iterator[LocalIronic]:
    i = LocalIronic("management", BASE / "ironic").start()
    yield i
    i.stop()


@pytest.fixture(scope="module")
def plane(management: LocalCluster, ironic: LocalIronic) -> Iterator[Plane]:
    p = Plane(management)
    try:
        p.start(*PROVIDERS)
        p.processes["baremetal-operator"] = managers.start(management, "baremetal-operator",
                                                           env={"IRONIC_ENDPOINT": ironic.endpoint})
        yield p
    finally:
        p.stop()


#: the workload clusters the agent's on_boot hook was called for
BOOTED: list[str] = []


@pytest.fixture(scope="module")
def agent(management: LocalCluster, bmcs: LocalBmcs) -> Iterator[MachineAgent]:
    a = MachineAgent(management, bmcs, BASE / "workloads", attached=True, on_boot=lambda c: BOOTED.append(c.name))
    yield a
    a.stop()


def run(cluster: LocalCluster, fn: Callable[[Kube], Any]) -> Any:
    async def go() -> Any:
        async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
            return await fn(kube)
    return asyncio.run(go())


def until(what: str, agent: MachineAgent, check: Callable[[], Any], timeout: float, log: list[str]) -> float:
    """Run the machine agent's passes (as its loop would, every second) until `check()` is truthy."""
    start = time.monotonic()
    last: Any = None
    while time.monotonic() - start < timeout:
        report: SyncReport = agent.sync()
        for verb, names in (("booted", report.booted), ("registered", report.registered), ("stopped", report.stopped)):
            for name in names:
                log.append(f"  (machine agent {verb} {name} at +{time.monotonic() - start:.1f} s)")
                print(log[-1], flush=True)
        last = check()
        if last:
            took = time.monotonic() - start
            log.append(f"{what}: {took:.1f} s")
            print(log[-1], flush=True)
            return took
        time.sleep(1.0)
    raise AssertionError(f"{what}: not within {timeout:.0f} s; last check {last!r}; agent waiting on "
                         f"{agent.sync().waiting}; see the logs under {BASE}")


def state_of(objs: list[dict[str, Any]]) -> list[Any]:
    return [((o.get("status") or {}).get("provisioning") or {}).get("state") for o in objs]


def test_a_workload_cluster_is_provisioned_and_deprovisioned_by_the_live_controllers(
        management: LocalCluster, bmcs: LocalBmcs, ironic: LocalIronic, plane: Plane, agent: MachineAgent) -> None:
    timings: list[str] = []
    topo = LiveTopology(api_port=free_port(), control_planes=1, workers=1)
    objects = live_objects(topo, bmcs)
    templates = [o for o in objects if o["kind"] not in ("BareMetalHost", "Secret", "Namespace")]

    # 1. the hosts register through Ironic and become available (inspection and cleaning disabled)
    run(management, lambda kube: apply_objects(kube, [o for o in objects if o not in templates]))
    until("hosts registering -> available", agent,
          lambda: state_of(run(management, lambda k: k.list(BMH, NS))) == ["available"] * 2, 180, timings)

    # 2. the cluster's templates: the controllers provision the control plane, then the worker
    run(management, lambda kube: apply_objects(kube, templates))

    def kcp_initialized() -> bool:
        kcp = run(management, lambda k: k.get(KCP, topo.cluster, NS)) or {}
        return bool(((kcp.get("status") or {}).get("initialization") or {}).get("controlPlaneInitialized"))
    until("templates applied -> KubeadmControlPlane initialized (workload cluster booted)", agent,
          kcp_initialized, 420, timings)
    assert [topo.cluster] == BOOTED
    workload = agent.clusters[topo.cluster]
    assert workload.api_port == topo.api_port and workload.running()

    def machines_running() -> bool:
        ms = run(management, lambda k: k.list(MACHINE, NS))
        return len(ms) == 2 and all((m.get("status") or {}).get("phase") == "Running"
                                    and (m["status"].get("nodeRef") or {}).get("name") for m in ms)
    until("-> both Machines Running with nodeRefs", agent, machines_running, 420, timings)

    # the checks metal3-dev-env makes after provisioning, against the live controllers' own statuses
    cluster = run(management, lambda k: k.get(CLUSTER, topo.cluster, NS))
    assert cluster["status"]["phase"] == "Provisioned", cluster["status"]
    assert cluster["status"]["initialization"]["controlPlaneInitialized"] is True
    for m3m in run(management, lambda k: k.list(M3M, NS)):
        assert m3m["status"]["initialization"]["provisioned"] is True, m3m["status"]
    bmhs = run(management, lambda k: k.list(BMH, NS))
    assert state_of(bmhs) == ["provisioned"] * 2 and all(b["status"]["poweredOn"] for b in bmhs)
    for s in bmcs.systems:
        assert bmcs.system(s.uuid)["PowerState"] == "On"
    nodes = run(workload, lambda k: k.list(NODE))
    assert len(nodes) == 2
    uids = {b["metadata"]["uid"]: b["metadata"]["name"] for b in bmhs}
    for node in nodes:
        assert node["spec"].get("providerID", "").startswith("metal3://"), node["spec"]
        assert node["metadata"]["labels"]["metal3.io/uuid"] in uids
    roles = sorted("control-plane" if "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"] else "worker"
                   for n in nodes)
    assert roles == ["control-plane", "worker"]
    assert {n["provision_state"] for n in IronicClient(ironic.url).nodes()} == {"active"}

    # a second agent on the same folder (a restarted loop) finds the running cluster and changes nothing
    again = MachineAgent(management, bmcs, BASE / "workloads", attached=True).sync()
    assert (again.booted, again.registered, again.stopped, again.waiting) == ([], [], [], [])
    assert sorted(again.running) == [f"{NS}/{b['metadata']['name']}" for b in bmhs]
    # the workload cluster's own agent (the target before a pivot: no hosts there yet) does nothing
    assert MachineAgent(workload, bmcs, BASE / "workloads", attached=True).sync() == SyncReport()
    assert len(run(workload, lambda k: k.list(NODE))) == 2
    # what the live controllers report beyond that (etcd is stacked: KCP cannot reach it without a kubelet)
    kcp = run(management, lambda k: k.get(KCP, topo.cluster, NS))
    for obj in [kcp, *run(management, lambda k: k.list(MACHINE, NS))]:
        print(f"{obj['kind']} {obj['metadata']['name']}: not true: " + "; ".join(
            f"{c['type']}={c['status']} ({c.get('reason')}: {c.get('message', '')[:120]})"
            for c in obj["status"].get("conditions") or [] if c["status"] != "True"))

    # 3. de-provision: delete the Cluster; the hosts go back to available, the workload cluster stops
    run(management, lambda k: k.delete(CLUSTER, topo.cluster, NS))

    def hosts_available() -> bool:
        return state_of(run(management, lambda k: k.list(BMH, NS))) == ["available"] * 2
    until("Cluster deleted -> hosts available", agent, hosts_available, 420, timings)
    until("-> the Cluster object gone", agent, lambda: run(management, lambda k: k.get(CLUSTER, topo.cluster, NS))
          is None, 300, timings)
    assert not workload.running() and not agent.clusters, "the init machine was wiped: its cluster must be stopped"
    assert not processes_under(workload.directory)
    assert {n["provision_state"] for n in IronicClient(ironic.url).nodes()} == {"available"}
    assert [s.uuid for s in bmcs.systems if bmcs.system(s.uuid)["PowerState"] != "Off"] == []
    print("\n".join(["timings:", *timings]))


def test_stopping_everything_leaves_no_process(management: LocalCluster, plane: Plane, agent: MachineAgent,
                                               ironic: LocalIronic, bmcs: LocalBmcs) -> None:
    agent.stop()
    plane.stop()
    ironic.stop()
    bmcs.stop()
    left = set(processes_under(BASE, BINARIES + COMPONENTS)) - set(processes_under(management.directory))
    assert not left, f"processes left after the agent, the plane, Ironic and the BMCs stopped: {sorted(left)}"
    assert not ironic_processes_under(BASE)

"""The local management clusters: real processes, the real CRDs labelled like clusterctl leaves them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab.cluster import LocalCluster, kube_for, processes_under
from lab.data import crds
from metal3_pivot.kube import CRD
from tests.kit.env import ROOT, tool_env

pytestmark = pytest.mark.cluster


async def _crds(cluster: LocalCluster) -> list[dict]:
    async with kube_for(cluster) as kube:
        return await kube.list(CRD)


async def _providers(cluster: LocalCluster) -> list[dict]:
    async with kube_for(cluster) as kube:
        return await kube.list(crds.INVENTORY)


def test_crds_and_inventory_are_installed_and_labelled(cluster_pair: dict[str, LocalCluster]) -> None:
    for cluster in cluster_pair.values():
        by_name = {c["metadata"]["name"]: c for c in asyncio.run(_crds(cluster))}
        bmh = by_name["baremetalhosts.metal3.io"]["metadata"]["labels"]
        assert {crds.CLUSTERCTL, crds.MOVE, crds.MOVE_HIERARCHY} <= set(bmh)
        hwd = by_name["hardwaredata.metal3.io"]["metadata"]["labels"]
        assert {crds.CLUSTERCTL, crds.MOVE} <= set(hwd) and crds.MOVE_HIERARCHY not in hwd
        m3c = by_name["metal3clusters.infrastructure.cluster.x-k8s.io"]["metadata"]["labels"]
        assert m3c[crds.PROVIDER_LABEL] == "infrastructure-metal3"
        assert m3c["cluster.x-k8s.io/v1beta2"] == "v1beta2"   # CAPM3's contract label
        assert by_name["clusters.cluster.x-k8s.io"]["metadata"]["labels"][crds.PROVIDER_LABEL] == "cluster-api"
        assert by_name["providers.clusterctl.cluster.x-k8s.io"]["metadata"]["labels"][
            "clusterctl.cluster.x-k8s.io/core"] == "inventory"
        providers = {p["metadata"]["name"]: p for p in asyncio.run(_providers(cluster))}
        assert providers["cluster-api"]["type"] == "CoreProvider"
        assert providers["cluster-api"]["version"] == "v1.14.2"
        assert providers["infrastructure-metal3"]["version"] == "v1.13.2"
        assert set(providers) == {"cluster-api", "bootstrap-kubeadm", "control-plane-kubeadm",
                                  "infrastructure-metal3", "ipam-metal3"}


def test_version_and_controllers(cluster_pair: dict[str, LocalCluster]) -> None:
    cluster = cluster_pair["ephemeral"]
    version = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "version", "-o", "json"],
                             capture_output=True, text=True, env=tool_env(), check=True).stdout
    assert '"gitVersion": "v1.36.3"' in version
    assert cluster.running()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    cluster = LocalCluster("solo", tmp_path / "solo").start()
    assert len(processes_under(tmp_path)) == 3
    cluster.stop()
    assert processes_under(tmp_path) == []


def test_a_killed_parent_leaves_no_orphans(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a test run killed with SIGKILL takes its clusters with it."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from lab.cluster import LocalCluster
        LocalCluster("doomed", Path({str(tmp_path)!r}) / "doomed").start()
        print("up", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=tool_env())
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    assert len(processes_under(tmp_path)) == 3
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while processes_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_under(tmp_path) == []


def test_free_ports_avoid_the_ephemeral_range_and_each_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI run lost etcd to "address already in use": its peer port, picked by binding port 0, came from
    the range the kernel also hands out as client source ports. Ports now come from below that range
    and are reserved machine-wide, so two pickers (pytest workers) never get the same one."""
    from lab import cluster as lab_cluster

    monkeypatch.setattr(lab_cluster, "PORT_RESERVATIONS", tmp_path / "ports")
    low, high = lab_cluster._ephemeral_range()
    ports = [lab_cluster.free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert not any(low <= p <= high for p in ports)
    # every port handed out is reserved (a few more are too: reserved, then found bound by someone)
    assert set(ports) <= {int(f.name) for f in (tmp_path / "ports").iterdir()}
    # a fresh reservation held by someone else is respected; a stale one is taken over
    held = ports[0]
    assert not lab_cluster._reserve(held)
    old = time.time() - lab_cluster.PORT_HOLD_SECONDS - 5
    os.utime(tmp_path / "ports" / str(held), (old, old))
    assert lab_cluster._reserve(held)

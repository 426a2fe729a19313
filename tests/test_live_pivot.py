"""metal3-dev-env's CI workflow on the live plane, pivoting with `pulumi up` (issue "Live management plane").

One lab for the module, in the workflow's order: dev-env and provisioning (fixture) -> the stack installs
the providers on the target -> a refused pivot leaves Ironic where it was -> the pivot and the move back,
each followed by metal3-dev-env's checks against the live controllers and Ironic and by the machines' own
record (nothing re-provisioned or power-cycled) -> the pivot's mover SIGKILLed at five points, each
finished by a plain `pulumi up` -> the reference run: the same workflow with `clusterctl move` ->
de-provisioning. A watcher looks at the processes every 20 ms throughout: never two Ironics.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.config import IronicConfig
from components.ironic import ironic_objects
from lab.cluster import LocalCluster, free_port
from lab.plane.agent import stop_agent
from lab.plane.checks import CLUSTERS, Check
from lab.plane.topology import LiveTopology
from lab.seams import seam_env
from lab.workflow import Lab, kubectl_apply
from metal3_pivot import DEPLOYMENTS, Kube, load_kubeconfig
from tests.kit.env import SESSION_DIR, tool_env
from tests.kit.live import IronicWatch, ironic_dirs, live_stack
from tests.kit.pulumi_cli import PulumiProject

pytestmark = [pytest.mark.live, pytest.mark.pulumi, pytest.mark.cluster]

BASE = SESSION_DIR / "live-pivot"
IRONIC_NS = IronicConfig().namespace
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    the_lab = Lab(BASE, LiveTopology(api_port=free_port()), attached=True,
                  progress=lambda m: print(f"    {time.strftime('%H:%M:%S')} {m}", flush=True))
    try:
        the_lab.dev_env()
        the_lab.provision()
        yield the_lab
    finally:
        print("\n".join(f"  {v:7.1f} s  {k}" for k, v in {**the_lab.timings, **FIGURES}.items()))
        the_lab.stop()


@pytest.fixture(scope="module")
def stack(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> PulumiProject:
    p = live_stack(lab, tmp_path_factory.mktemp("live-stack") / "proj")
    t0 = time.monotonic()
    p.run("up", "--yes", "--skip-preview", check=True, timeout=600)
    FIGURES["pulumi up: providers onto the target"] = time.monotonic() - t0
    return p


def eph(lab: Lab) -> LocalCluster:
    return LocalCluster.load(lab.base / "ephemeral")


def ironic_deployment(cluster: LocalCluster) -> bool:
    async def go() -> bool:
        async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
            return await kube.get(DEPLOYMENTS, "ironic", IRONIC_NS) is not None
    return asyncio.run(go())


def ironic_runs_for(cluster: LocalCluster, lab: Lab) -> bool:
    return any(d.startswith(str(cluster.directory.resolve())) for d in ironic_dirs(lab.base))


def assert_checks(result: list[Check], where: str) -> None:
    assert all(c.ok for c in result), f"checks on {where}:\n" + "\n".join(map(str, result))


def relocate(lab: Lab, stack: PulumiProject, location: str, dest: LocalCluster, *, what: str) -> None:
    """`pulumi up` to `location`, then metal3-dev-env's checks on `dest`, nothing touched on any machine."""
    stack.set_config("location", location)
    mark = lab.checkpoint()
    t0 = time.monotonic()
    stack.run("up", "--yes", "--skip-preview", check=True, timeout=600)
    up = time.monotonic() - t0
    result, waited = lab.verify(dest, mark)
    assert_checks(result, dest.name)
    FIGURES[f"{what}: pulumi up"] = up
    FIGURES[f"{what}: pulumi up start -> reconciled"] = up + waited


def test_the_stack_installs_the_providers_and_they_run_on_the_target(lab: Lab, stack: PulumiProject) -> None:
    target = lab.target()
    lab.wait_deployments(target, timeout=60)      # pulumi awaited them: already Available

    async def names() -> set[str]:
        async with Kube(load_kubeconfig(target.kubeconfig), name="target") as kube:
            return {d["metadata"]["name"] for d in await kube.list(DEPLOYMENTS)}
    assert {"capi-controller-manager", "capm3-controller-manager"} <= asyncio.run(names())
    assert ironic_runs_for(eph(lab), lab) and not ironic_runs_for(target, lab)
    stack.run("preview", "--expect-no-changes", check=True)


def test_a_refused_pivot_hands_nothing_over(lab: Lab, stack: PulumiProject) -> None:
    """A Cluster paused by someone else: the pre-flight refuses, Ironic and every object stay put."""
    e = eph(lab)
    name = lab.topology.cluster

    def pause(value: bool) -> None:
        async def go() -> None:
            async with Kube(load_kubeconfig(e.kubeconfig), name="ephemeral") as kube:
                await kube.patch(CLUSTERS, name, lab.namespace, {"spec": {"paused": value}})
        asyncio.run(go())
    pause(True)
    try:
        stack.set_config("location", "target")
        with IronicWatch(lab.base) as watch:
            refused = stack.run("up", "--yes", "--skip-preview", timeout=600)
        assert refused.returncode != 0
        assert "paused" in refused.output, refused.output[-3000:]
        assert ironic_deployment(e) and not ironic_deployment(lab.target())
        assert ironic_runs_for(e, lab) and not ironic_runs_for(lab.target(), lab)
        assert watch.max_seen == 1, watch.overlaps
    finally:
        pause(False)
        stack.set_config("location", "ephemeral")


def test_pivot_and_move_back_with_pulumi_up_reconcile_without_touching_a_machine(
        lab: Lab, stack: PulumiProject) -> None:
    with IronicWatch(lab.base) as watch:
        relocate(lab, stack, "target", lab.target(), what="pivot")
        assert ironic_runs_for(lab.target(), lab) and not ironic_runs_for(eph(lab), lab)
        stack.run("up", "--yes", "--expect-no-changes", check=True, timeout=600)
        relocate(lab, stack, "ephemeral", eph(lab), what="move back")
    assert watch.samples > 100 and watch.max_seen == 1, watch.overlaps
    assert len(watch.seen) >= 3              # ephemeral's, then the target's, then ephemeral's again


# kill after this many API writes of the mover, direction by direction (a live move is ~150 writes)
KILL_POINTS = (("target", 8), ("ephemeral", 40), ("target", 75), ("ephemeral", 110), ("target", 140))


def test_a_pivot_killed_at_five_points_is_finished_by_the_next_up(lab: Lab, stack: PulumiProject) -> None:
    with IronicWatch(lab.base) as watch:
        for location, writes in KILL_POINTS:
            dest = lab.target() if location == "target" else eph(lab)
            stack.set_config("location", location)
            mark = lab.checkpoint()
            plain = dict(stack.env_extra)
            stack.env_extra.update(seam_env(kill_after=writes))
            killed = stack.run("up", "--yes", "--skip-preview", timeout=600)
            stack.env_extra = plain
            stack.run("up", "--yes", "--skip-preview", check=True, timeout=600)
            result, waited = lab.verify(dest, mark)
            assert_checks(result, f"{dest.name} after a kill at write {writes} (exit {killed.returncode})")
            print(f"killed at write {writes} toward {location}: exit {killed.returncode}; finished; "
                  f"reconciled {waited:.1f} s after")
    assert watch.max_seen == 1, watch.overlaps
    stack.set_config("location", "ephemeral")
    stack.run("up", "--yes", "--skip-preview", check=True, timeout=600)


def handover(lab: Lab, source: LocalCluster, dest: LocalCluster) -> None:
    """metal3-dev-env's move.yml around `clusterctl move`: Ironic and BMO deleted from the source (and
    gone), then deployed on the destination."""
    subprocess.run(["kubectl", "--kubeconfig", str(source.kubeconfig), "-n", IRONIC_NS, "delete", "deployment",
                    "ironic", "baremetal-operator-controller-manager", "--wait=true", "--cascade=foreground"],
                   check=True, capture_output=True, env=tool_env())
    kubectl_apply(dest, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": IRONIC_NS}},
                         *ironic_objects(IronicConfig())])
    lab.wait_deployments(dest)


def clusterctl_move(source: LocalCluster, dest: LocalCluster, lab: Lab, home: Path) -> float:
    home.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    proc = subprocess.run(["clusterctl", "move", "--kubeconfig", str(source.kubeconfig), "--to-kubeconfig",
                           str(dest.kubeconfig), "-n", lab.namespace], capture_output=True, text=True,
                          env=tool_env(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config")), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return time.monotonic() - t0


def test_the_reference_run_with_clusterctl_move_passes_the_same_checks(
        lab: Lab, stack: PulumiProject, tmp_path: Path) -> None:
    """The same workflow with `clusterctl move` (and the Ironic handover by hand, as move.yml does):
    validates the lab against the tool everyone trusts, and gives the time-to-reconciled to compare."""
    e, t = eph(lab), lab.target()
    with IronicWatch(lab.base) as watch:
        for source, dest, what in ((e, t, "clusterctl pivot"), (t, e, "clusterctl move back")):
            mark = lab.checkpoint()
            t0 = time.monotonic()
            handover(lab, source, dest)
            moved = clusterctl_move(source, dest, lab, tmp_path / "home")
            result, waited = lab.verify(dest, mark)
            assert_checks(result, f"{dest.name} after {what}")
            FIGURES[f"{what}: handover + clusterctl move"] = time.monotonic() - t0 - waited
            FIGURES[f"{what}: clusterctl move alone"] = moved
            FIGURES[f"{what}: start -> reconciled"] = time.monotonic() - t0
    assert watch.max_seen == 1, watch.overlaps


def test_deprovisioning_returns_every_host_to_available(lab: Lab) -> None:
    e = eph(lab)
    lab.deprovision(e)
    deadline = time.monotonic() + 60
    while (lab.workload_dir / "cluster.json").exists() and LocalCluster.load(lab.workload_dir).running():
        assert time.monotonic() < deadline, "the workload cluster still runs after its control-plane host was wiped"
        time.sleep(1)
    stop_agent(lab.workload_dir)

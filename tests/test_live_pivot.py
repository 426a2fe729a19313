"""The live workflow's hard cases, pivoting with `pulumi up` (issue "Live management plane").

The plain workflow (provision, pivot, move back, de-provision, each checked) is `make demo`, run by
tests/test_demo.py. Here, one lab for the module, in order: dev-env and provisioning (fixture) -> the
provisioned target is what kubeadm and the controllers leave -> the stack installs the providers on the
target and they run there -> a refused pivot hands nothing over -> the pivot's mover SIGKILLed at five
points over pivots and moves back, each finished by a plain `pulumi up` and followed by metal3-dev-env's
checks against the live controllers and Ironic and by the machines' own record (nothing re-provisioned
or power-cycled) -> the reference run: the same workflow with `clusterctl move`. A watcher looks at the
processes every 20 ms throughout: never two Ironics.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import cache_dir
from components.config import IronicConfig
from lab.cluster import LocalCluster, free_port
from lab.data.topology import LiveTopology
from lab.plane.checks import CLUSTERS, Check, IronicWatch, ironic_dirs, read
from lab.plane.endpoints import ENDPOINT_SLICES, SERVICE_NAME
from lab.plane.spawn import processes_mentioning
from lab.seams import seam_env
from lab.workflow import Lab
from metal3_pivot import CONFIGMAP, DEPLOYMENTS, VALIDATING_WEBHOOKS, Kube, ResourceType, load_kubeconfig
from tests.kit.env import SESSION_DIR, tool_env
from tests.kit.live import live_stack
from tests.kit.pulumi_cli import PulumiProject, forget_objects, object_records

pytestmark = [pytest.mark.live, pytest.mark.pulumi, pytest.mark.cluster]

BASE = SESSION_DIR / "live-pivot"
IRONIC_NS = IronicConfig().namespace
NODES = ResourceType("", "v1", "Node", "nodes", namespaced=False)
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


def move_logs() -> Path:
    return cache_dir() / "logs" / "moves"


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
    if all(c.ok for c in result):
        return
    # the lab goes away with the test: keep its logs and the hosts as the clusters hold them for a post-mortem
    keep = Path(tempfile.mkdtemp(prefix="m3p-live-failure-"))
    shutil.copytree(BASE, keep / "lab", ignore=shutil.ignore_patterns("etcd", "*.sock", "pki", "*.iso"),
                    dirs_exist_ok=True)
    for name in ("ephemeral", "test1"):
        kubeconfig = BASE / name / "kubeconfig"
        if kubeconfig.exists():
            (keep / f"{name}-hosts.yaml").write_text(subprocess.run(
                ["kubectl", "--kubeconfig", str(kubeconfig), "get", "bmh,m3m,machine", "-A", "-o", "yaml"],
                capture_output=True, text=True, env=tool_env()).stdout)
    raise AssertionError(f"checks on {where} (logs and hosts kept in {keep}):\n" + "\n".join(map(str, result)))


@pytest.mark.timeout(1800)     # the module's lab is made in this test's setup: dev-env and provisioning
def test_the_provisioned_target_is_what_kubeadm_and_the_controllers_leave(lab: Lab) -> None:
    """Before any pivot: the workload cluster the machine agent booted is the one CAPI provisioned."""
    target = lab.target()
    assert target.api_port == lab.topology.api_port and target.running()
    hosts = read(eph(lab), lab.namespace).hosts

    async def workload() -> tuple[list[dict], dict | None]:
        async with Kube(load_kubeconfig(lab.target_kubeconfig), name="target") as kube:   # the Secret's kubeconfig
            return await kube.list(NODES), await kube.get(CONFIGMAP, "kubeadm-config", "kube-system")
    nodes, kubeadm_config = asyncio.run(workload())
    assert kubeadm_config is not None
    uids = {h["metadata"]["uid"] for h in hosts}
    assert len(nodes) == lab.provisioned_hosts
    for node in nodes:
        assert node["spec"].get("providerID", "").startswith("metal3://"), node["spec"]     # CAPM3's doing
        assert node["metadata"]["labels"]["metal3.io/uuid"] in uids
    roles = sorted("control-plane" if "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"]
                   else "worker" for n in nodes)
    assert roles == ["control-plane", "worker"]
    assert lab.rack is not None
    assert all(lab.rack.system(s.uuid)["PowerState"] == "On" for s in lab.rack.systems)


def test_the_stack_installs_the_providers_and_they_run_on_the_target(lab: Lab, stack: PulumiProject) -> None:
    target = lab.target()
    lab.wait_deployments(target, timeout=60)      # pulumi awaited them: already Available

    async def names() -> set[str]:
        async with Kube(load_kubeconfig(target.kubeconfig), name="target") as kube:
            return {d["metadata"]["name"] for d in await kube.list(DEPLOYMENTS)}
    assert {"capi-controller-manager", "capm3-controller-manager"} <= asyncio.run(names())

    # their webhooks are the stack's: the release's `service:` references with the stack's CA, served
    # through the EndpointSlices the target's node agent writes for the running managers
    async def hooks() -> tuple[list[dict], set[str]]:
        async with Kube(load_kubeconfig(target.kubeconfig), name="target") as kube:
            return (await kube.list(VALIDATING_WEBHOOKS),
                    {f"{e['metadata']['namespace']}/{e['metadata']['labels'][SERVICE_NAME]}"
                     for e in await kube.list(ENDPOINT_SLICES)})
    configs, served = asyncio.run(hooks())
    services = {f"{h['clientConfig']['service']['namespace']}/{h['clientConfig']['service']['name']}"
                for c in configs for h in c["webhooks"]}
    assert "capi-system/capi-webhook-service" in services and services <= served, (services, served)
    assert all(h["clientConfig"].get("caBundle") and "url" not in h["clientConfig"]
               for c in configs for h in c["webhooks"])
    assert ironic_runs_for(eph(lab), lab) and not ironic_runs_for(target, lab)
    stack.run("preview", "--expect-no-changes", check=True)
    # what the running controllers, Ironic and the node agent do to the installed objects is no drift
    stack.run("refresh", "--yes", "--expect-no-changes", "--diff", check=True)


def test_objects_an_install_made_but_never_recorded_are_taken_over_by_the_next_up(
        lab: Lab, stack: PulumiProject, tmp_path: Path) -> None:
    """Every Kubernetes object's record taken out of the state, as an `up` killed between each create and
    its record leaves it (the providers' Deployments, webhook configurations, RBAC, Ironic's and BMO's
    objects, all live): the next `up` creates each again under a new field manager, and each must agree
    with the object there and take it over (components/objects.py, `with_server_defaults`; before it, every
    webhook configuration's `rules` was refused, and every `up` after). Nothing restarts: the controllers
    and Ironic keep running as they were."""
    target = lab.target()
    running = set(processes_mentioning(lab.base, ("ironic", "manager")))
    forgotten = forget_objects(stack, tmp_path / "forgotten.json")
    assert any("ValidatingWebhookConfiguration" in u for u in forgotten), forgotten
    again = stack.run("up", "--yes", "--skip-preview", timeout=600)
    assert again.returncode == 0, again.output[-4000:]
    after = json.loads(stack.run("stack", "export", check=True).stdout)["deployment"]["resources"]
    assert object_records(after) == forgotten
    assert set(processes_mentioning(lab.base, ("ironic", "manager"))) == running    # the same processes
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


# The mover SIGKILLed after this many of its API writes; a point of 0 is the plain `pulumi up` that finishes.
# Toward the target three kills in a row (each `up` resumes what the previous one left: a kill in the
# create phase (at 55: between creating a host's copy and writing its status), then in the resumed run's
# deletes, then in its unpause), toward the ephemeral cluster two (pause, create). A live move is ~125
# writes (38 objects).
KILL_ROUNDS = (("target", (55, 20, 5)), ("ephemeral", (8, 30)))


@pytest.mark.timeout(2400)
def test_a_pivot_killed_at_five_points_is_finished_by_the_next_up(lab: Lab, stack: PulumiProject) -> None:
    points = 0
    with IronicWatch(lab.base) as watch:
        for location, kills in KILL_ROUNDS:
            dest = lab.target() if location == "target" else eph(lab)
            stack.set_config("location", location)
            mark = lab.checkpoint()
            plain = dict(stack.env_extra)
            for writes in kills:
                stack.env_extra.update(seam_env(kill_after=writes))
                killed = stack.run("up", "--yes", "--skip-preview", timeout=600)
                stack.env_extra = dict(plain)
                assert killed.returncode != 0, f"the mover was not killed at write {writes}: fewer writes left"
                points += 1
            stack.run("up", "--yes", "--skip-preview", check=True, timeout=600)
            result, waited = lab.verify(dest, mark)
            assert_checks(result, f"{dest.name} after kills at writes {kills}")
            print(f"killed at writes {kills} toward {location}; finished by the next up; "
                  f"reconciled {waited:.1f} s after")
    assert points >= 5
    assert watch.max_seen == 1, watch.overlaps
    assert len(watch.seen) == 2                 # the ephemeral cluster's Ironic and the target's, in turns


@pytest.mark.timeout(1800)
def test_the_reference_run_with_clusterctl_move_passes_the_same_checks(
        lab: Lab, stack: PulumiProject, tmp_path: Path) -> None:
    """The same workflow with `clusterctl move` (and the Ironic handover by hand, as move.yml does):
    validates the lab against the tool everyone trusts, and gives the time-to-reconciled to compare."""
    e, t = eph(lab), lab.target()
    first = (t, e, "clusterctl move back") if ironic_runs_for(t, lab) else (e, t, "clusterctl pivot")
    second = (first[1], first[0], "clusterctl pivot" if first[2].endswith("back") else "clusterctl move back")
    with IronicWatch(lab.base) as watch:
        for source, dest, what in (first, second):
            mark = lab.checkpoint()
            t0 = time.monotonic()
            lab.handover_by_hand(source, dest, env=tool_env())
            moved = lab.clusterctl_move(source, dest, tmp_path / "home", env=tool_env())
            result, waited = lab.verify(dest, mark)
            assert_checks(result, f"{dest.name} after {what}")
            FIGURES[f"{what}: handover + clusterctl move"] = time.monotonic() - t0 - waited
            FIGURES[f"{what}: clusterctl move alone"] = moved
            FIGURES[f"{what}: start -> reconciled"] = time.monotonic() - t0
    assert watch.max_seen == 1, watch.overlaps


@pytest.mark.timeout(1200)
def test_a_provider_holding_the_move_with_block_move_is_waited_for_beside_the_live_plane(
        lab: Lab, stack: PulumiProject, tmp_path: Path) -> None:
    """Issue 15's block-move rule with the live controllers running: a provider stand-in (lab/blockmove.py,
    CAPZ's behaviour) annotates the Metal3Machines while their Cluster is unpaused and clears them once it is
    paused; `pulumi up` pauses, waits, moves, and the destination's controllers reconcile as always."""
    from lab import blockmove

    e, t = eph(lab), lab.target()
    source, dest, location = (t, e, "ephemeral") if ironic_runs_for(t, lab) else (e, t, "target")
    ctl = blockmove.start(source.kubeconfig, lab.namespace, tmp_path / "blockmove.log")
    try:
        deadline = time.monotonic() + 60
        while not any(blockmove.BLOCK_MOVE in (m["metadata"].get("annotations") or {})
                      for m in read(source, lab.namespace).m3ms):
            assert time.monotonic() < deadline, "the provider stand-in did not block the move"
            time.sleep(0.5)
        stack.set_config("location", location)
        mark = lab.checkpoint()
        started = time.time()
        with IronicWatch(lab.base) as watch:
            stack.run("up", "--yes", "--skip-preview", check=True, timeout=600)
        # the move said what it waited for, in its log (components/object_location.py: _log_dir)
        logs = [f for f in move_logs().glob("*.log") if f.stat().st_mtime >= started]
        assert any(blockmove.BLOCK_MOVE in f.read_text() for f in logs), [f.name for f in logs]
    finally:
        blockmove.stop(ctl)
    result, _ = lab.verify(dest, mark)
    assert_checks(result, f"{dest.name} after a move held by block-move")
    assert watch.max_seen == 1, watch.overlaps
    assert not any(blockmove.BLOCK_MOVE in (m["metadata"].get("annotations") or {})
                   for m in read(dest, lab.namespace).m3ms)

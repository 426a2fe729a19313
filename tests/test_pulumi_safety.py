"""Safe without flags: a plain `pulumi up --yes --skip-preview` (no policy pack, no separate preview) that
the pre-flight refuses changes nothing anywhere; a move that fails after the Ironic handover has a way back;
a move stopped after its last delete (objects all in place, hosts still paused) is finished by the next `up`.

The real pulumi CLI, our program, real clusters. "Nothing changed" is proven by the resourceVersion of
every object of every candidate kind and of every Deployment (the installs, Ironic, BMO) in both clusters.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from lab.cluster import LocalCluster, kube_for
from lab.seams import seam_env
from metal3_pivot import Code, discover, load_kubeconfig
from tests.kit.env import ROOT
from tests.kit.move import (
    TOPOLOGY,
    broken_owner_chain,
    canonical_snapshot,
    check,
    deployments,
    resource_versions,
    snapshot,
)
from tests.kit.pulumi_cli import installed_pivot

pytestmark = [pytest.mark.pulumi, pytest.mark.cluster]

IRONIC = ("baremetal-operator-system", "ironic")


def inventory(cluster: LocalCluster) -> dict[str, str]:
    """clusterctl's Provider inventory (installed through a yaml.v2.ConfigGroup): name -> resourceVersion."""
    async def go() -> dict[str, str]:
        async with kube_for(cluster) as k:
            view = await discover(k, [])
        return {p["metadata"]["name"]: str(p["metadata"]["resourceVersion"]) for p in view.providers}
    return asyncio.run(go())


def world(*clusters: LocalCluster) -> dict[str, object]:
    return {c.name: (resource_versions(c), deployments(c)) for c in clusters}


def test_a_refused_move_changes_nothing_a_failed_one_rolls_back_and_a_stopped_end_is_finished(
        fresh_clusters, tmp_path: Path) -> None:
    eph, tgt, original, p = installed_pivot(fresh_clusters, tmp_path / "proj")
    assert IRONIC in deployments(eph) and IRONIC not in deployments(tgt)

    # (a) the pivot, refused by the pre-flight (an owner chain leaves the move): nothing changes anywhere,
    #     without the pack and with it
    p.set_config("location", "target")
    with broken_owner_chain(eph):
        before = world(eph, tgt)
        plain = p.run("up", "--yes", "--skip-preview")
        assert plain.returncode != 0, plain.output[-3000:]
        assert "move refused by the pre-flight" in plain.output and "metal3/outsider" in plain.output
        assert world(eph, tgt) == before, "a refused up changed a cluster"
        packed = p.run("up", "--yes", "--skip-preview", "--policy-pack", str(ROOT / "policies"))
        assert packed.returncode != 0
        assert "owner-chain" in packed.output and "metal3/outsider" in packed.output, packed.output[-3000:]
        assert world(eph, tgt) == before, "a refused up with the pack changed a cluster"
    assert IRONIC in deployments(eph) and IRONIC not in deployments(tgt)

    # (b) a move that fails after the handover (the mover SIGKILLed mid-move): Ironic is on the target,
    #     objects on both sides; setting the location back and `up` rolls the objects back and hands
    #     Ironic back
    plain_env = dict(p.env_extra)
    p.env_extra.update(seam_env(kill_after=60))
    killed = p.run("up", "--yes", "--skip-preview")
    p.env_extra = plain_env
    assert killed.returncode != 0
    assert snapshot(eph) and snapshot(tgt)                      # really interrupted mid-move
    assert IRONIC in deployments(tgt) and IRONIC not in deployments(eph)
    p.set_config("location", "ephemeral")
    back = p.run("up", "--yes", "--skip-preview")
    assert back.returncode == 0, back.output[-3000:]
    assert check(eph, tgt, expect="ephemeral").ok
    assert snapshot(tgt) == {} and canonical_snapshot(eph) == original
    assert IRONIC in deployments(eph) and IRONIC not in deployments(tgt)
    p.run("up", "--yes", "--expect-no-changes", check=True)

    # (c) a pivot stopped after its last delete: the mover SIGKILLed right after its first unpause of a host
    #     in the target, one write at a time. Every object is in the target, which counting objects cannot
    #     tell from a finished move, and yet hosts are still paused; the next plain `up` finishes it, its
    #     preview showing what was owed
    p.set_config("location", "target")
    p.set_config("concurrency", "1")
    server = re.escape(load_kubeconfig(tgt.kubeconfig).cluster.server)
    p.env_extra = {**plain_env, **seam_env(kill_on=rf"^PATCH {server}/apis/metal3\.io/v1alpha1/namespaces/"
                                                   rf"{TOPOLOGY.namespace}/baremetalhosts/[^/?]+(\?|$)")}
    stopped = p.run("up", "--yes", "--skip-preview")
    p.env_extra = plain_env
    assert stopped.returncode != 0
    assert snapshot(eph) == {} and canonical_snapshot(tgt).keys() == original.keys()
    left = check(eph, tgt, expect="target").violations
    assert left and {v.code for v in left} == {Code.PAUSED}, left
    finished = p.run("up", "--yes", "--diff")       # its preview shows what is owed
    assert finished.returncode == 0, finished.output[-3000:]
    assert check(eph, tgt, expect="target").ok and canonical_snapshot(tgt) == original
    assert "finish" in finished.output and "unpauses" in finished.output, finished.output[-3000:]
    p.run("up", "--yes", "--expect-no-changes", check=True)

    # destroy (protect off): the stack forgets everything; the workload objects, Ironic + BMO on the
    # hosts' cluster and the providers' controllers on the target all stay
    installed = {c.name: (deployments(c), inventory(c)) for c in (eph, tgt)}
    assert installed["target"][1], "the stack installed no inventory on the target"
    p.run("destroy", "--yes", "--skip-preview", check=True)
    assert {c.name: (deployments(c), inventory(c)) for c in (eph, tgt)} == installed
    assert canonical_snapshot(tgt) == original
    state = json.loads(p.run("stack", "export", check=True).stdout)
    assert not state["deployment"].get("resources")

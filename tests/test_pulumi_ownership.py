"""The stack never silently adopts what it did not create (issue 16, item 3), with the plain pulumi CLI.

A BMO Deployment that something else put on the target (as metal3-dev-env's kubectl/kustomize does) is
found by `pulumi preview` of a pivot, which would otherwise declare BMO there and take it over
(pulumi-kubernetes 4.25 upserts): the preview fails naming the Deployment, who manages it and the two
choices, and writes nothing. Each choice then works: `ironic.install: false` leaves it alone,
`ironic.adopt: true` lets the stack take it over (server-side apply with force), after which it is the
stack's own and no longer refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from components.ownership import PULUMI_MANAGER, managers
from lab.cluster import LocalCluster, kube_for
from metal3_pivot.kube import DEPLOYMENTS, NAMESPACE
from tests.kit.env import PROGRAM
from tests.kit.move import deployments, resource_versions, seed_pair
from tests.kit.pulumi_cli import PulumiProject

pytestmark = [pytest.mark.pulumi, pytest.mark.cluster]

BMO_NS, BMO = "baremetal-operator-system", "baremetal-operator-controller-manager"


def install_bmo_by_hand(cluster: LocalCluster) -> None:
    """BMO's controller as a tool other than Pulumi creates it (its own field manager)."""
    labels = {"control-plane": "controller-manager"}

    async def go() -> None:
        async with kube_for(cluster) as k:
            await k.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": BMO_NS}},
                          manager="kubectl")
            await k.apply(DEPLOYMENTS, {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": BMO, "namespace": BMO_NS, "labels": labels},
                "spec": {"selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                             {"name": "manager", "image": "quay.io/metal3-io/baremetal-operator:v0.13.2"}]}}}},
                manager="kubectl")
    asyncio.run(go())


def bmo_managers(cluster: LocalCluster) -> tuple[str, ...]:
    async def go() -> tuple[str, ...]:
        async with kube_for(cluster) as k:
            return managers(await k.get(DEPLOYMENTS, BMO, BMO_NS))
    return asyncio.run(go())


def test_a_bmo_that_runs_on_the_target_already_is_found_in_preview(fresh_clusters, tmp_path: Path) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    install_bmo_by_hand(tgt)
    assert bmo_managers(tgt) == ("kubectl",)

    p = PulumiProject.create(tmp_path / "proj", "metal3-pivot", PROGRAM)
    p.set_kubeconfigs(eph.kubeconfig, tgt.kubeconfig)
    p.set_config("skipAwait", "true")
    p.run("config", "set", "--path", "providers.install", "false", check=True)   # the lab's target has the CRDs
    p.set_config("location", "target")              # the pivot: Ironic and BMO would be declared on the target

    before = {c.name: (resource_versions(c), deployments(c)) for c in (eph, tgt)}
    found = p.run("preview")
    assert found.returncode != 0
    assert (f"Deployment {BMO_NS}/{BMO} on the target cluster (declared by Ironic; managed by kubectl)"
            in found.output), found.output[-3000:]
    assert "pulumi config set --path ironic.install false" in found.output
    assert "pulumi config set --path ironic.adopt true" in found.output
    assert "Traceback" not in found.output
    up = p.run("up", "--yes", "--skip-preview")    # refused the same way: the check runs before any resource
    assert up.returncode != 0 and f"Deployment {BMO_NS}/{BMO}" in up.output
    assert {c.name: (resource_versions(c), deployments(c)) for c in (eph, tgt)} == before
    assert bmo_managers(tgt) == ("kubectl",)

    # choice 1: leave it managed elsewhere: the preview goes ahead and declares no Ironic, no BMO
    p.run("config", "set", "--path", "ironic.install", "false", check=True)
    elsewhere = p.run("preview", check=True)
    assert "ironic-deployment" not in elsewhere.output and f"Deployment {BMO_NS}/{BMO}" not in elsewhere.output

    # choice 2: let the stack own it: declared (adopted) and, after the up, written by Pulumi
    p.run("config", "set", "--path", "ironic.install", "true", check=True)
    p.run("config", "set", "--path", "ironic.adopt", "true", check=True)
    adopted = p.run("preview", check=True)
    assert f"ironic-deployment-{BMO_NS}-{BMO}" in adopted.output, adopted.output[-3000:]
    p.run("up", "--yes", check=True)
    assert any(m.startswith(PULUMI_MANAGER) for m in bmo_managers(tgt)), bmo_managers(tgt)
    p.run("config", "set", "--path", "ironic.adopt", "false", check=True)
    own = p.run("preview", check=True)      # its own now: no longer refused (only patchForce goes away)
    assert f"Deployment {BMO_NS}/{BMO}" not in own.output

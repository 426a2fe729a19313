"""The policy pack on real previews: `pulumi preview --policy-pack policies` against real clusters.

The clean stack passes every policy; one stack per policy violates it and the preview fails naming that
policy and its message, and nothing is written to either cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from lab.cli import seed_cluster, start_clusters
from lab.cluster import LocalCluster
from metal3_pivot import BMH_STATUS
from metal3_pivot.kube import Kube, load_kubeconfig
from tests.kit.env import ROOT, SESSION_DIR
from tests.kit.move import TOPOLOGY, broken_owner_chain, bundle_types, resource_versions, snapshot
from tests.kit.pulumi_cli import PulumiProject

pytestmark = [pytest.mark.pulumi, pytest.mark.cluster]

PROGRAM = f"""
    import os
    import runpy

    import pulumi
    import pulumi_kubernetes as k8s

    g = runpy.run_path({str(ROOT / "__main__.py")!r}, run_name="__main__")
    extra = os.environ.get("M3P_TEST_EXTRA")
    target = pulumi.ResourceOptions(provider=g["target"].provider)
    if extra == "second-ironic":
        labels = {{"app": "rogue-ironic"}}
        k8s.apps.v1.Deployment("second-ironic", metadata={{"name": "ironic", "namespace": "default",
                               "annotations": {{"pulumi.com/skipAwait": "true"}}}},
                               spec={{"selector": {{"matchLabels": labels}}, "template": {{
                                   "metadata": {{"labels": labels}},
                                   "spec": {{"containers": [{{"name": "ironic", "image": "ironic"}}]}}}}}},
                               opts=target)
    if extra == "leaky-configmap":
        k8s.core.v1.ConfigMap("leaky", metadata={{"name": "bmc-settings", "namespace": "default"}},
                              data={{"BMC_PASSWORD": "hunter2"}}, opts=target)
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, LocalCluster]]:
    base = SESSION_DIR / "policies"
    clusters = start_clusters(["ephemeral", "initialised"], base, attached=True)
    clusters.update(start_clusters(["target"], base, attached=True, with_crds=False))
    asyncio.run(seed_cluster(clusters["ephemeral"], TOPOLOGY))
    yield clusters
    for c in clusters.values():
        c.stop()


@pytest.fixture(scope="module")
def project(lab: dict[str, LocalCluster], tmp_path_factory: pytest.TempPathFactory) -> PulumiProject:
    p = PulumiProject.create(tmp_path_factory.mktemp("policies") / "proj", "metal3-pivot", PROGRAM)
    p.set_config("location", "target")
    p.set_kubeconfigs(lab["ephemeral"].kubeconfig, lab["target"].kubeconfig)
    p.set_config("skipAwait", "true")
    return p


def preview(p: PulumiProject, lab: dict[str, LocalCluster]) -> tuple[int, str]:
    before = {c.name: resource_versions(c) for c in lab.values()}
    result = p.run("preview", "--policy-pack", str(ROOT / "policies"))
    assert {c.name: resource_versions(c) for c in lab.values()} == before, "a preview wrote to a cluster"
    return result.returncode, result.output


def assert_violates(p: PulumiProject, lab: dict[str, LocalCluster], policy: str, message: str) -> None:
    rc, out = preview(p, lab)
    assert rc != 0, out[-3000:]
    assert f"[mandatory]  {policy}" in out, out[-3000:]
    assert message in out, out[-3000:]


def test_the_clean_stack_passes_every_policy(project: PulumiProject, lab: dict[str, LocalCluster]) -> None:
    rc, out = preview(project, lab)
    assert rc == 0, out[-4000:]
    assert "Policies:" in out and "metal3-pivot" in out


def test_single_ironic(project: PulumiProject, lab: dict[str, LocalCluster]) -> None:
    project.env_extra["M3P_TEST_EXTRA"] = "second-ironic"
    try:
        assert_violates(project, lab, "single-ironic", "2 Ironic deployments are declared")
    finally:
        del project.env_extra["M3P_TEST_EXTRA"]


def test_secrets_are_secret(project: PulumiProject, lab: dict[str, LocalCluster]) -> None:
    project.env_extra["M3P_TEST_EXTRA"] = "leaky-configmap"
    try:
        assert_violates(project, lab, "secrets-are-secret", "ConfigMap key BMC_PASSWORD looks like a credential")
    finally:
        del project.env_extra["M3P_TEST_EXTRA"]


def test_protect_object_location(project: PulumiProject, lab: dict[str, LocalCluster]) -> None:
    project.set_config("protect", "false")
    try:
        assert_violates(project, lab, "protect-object-location", "objects is not protected")
    finally:
        project.set_config("protect", "true")


def test_provisioning_network(project: PulumiProject, lab: dict[str, LocalCluster]) -> None:
    project.run("config", "set", "--path", "ironic.dhcpRange", "172.23.0.10,172.23.0.100", check=True)
    try:
        assert_violates(project, lab, "provisioning-network", "is not an ascending range inside 172.22.0.0/24")
    finally:
        project.run("config", "rm", "--path", "ironic.dhcpRange", check=True)


def test_target_initialised(project: PulumiProject, lab: dict[str, LocalCluster]) -> None:
    # a target that already has the CRDs (so the pre-flight passes) but that this stack does not initialise
    project.run("config", "set", "--secret", "--path", "target.kubeconfig",
                stdin=lab["initialised"].kubeconfig.read_text(), check=True)
    project.run("config", "set", "--path", "providers.install", "false", check=True)
    try:
        assert_violates(project, lab, "target-initialised", "installs no providers on the target")
    finally:
        project.run("config", "set", "--path", "providers.install", "true", check=True)
        project.run("config", "set", "--secret", "--path", "target.kubeconfig",
                    stdin=lab["target"].kubeconfig.read_text(), check=True)


def _kube(c: LocalCluster) -> Kube:
    return Kube(load_kubeconfig(c.kubeconfig), name=c.name)


def test_owner_chain(project: PulumiProject, lab: dict[str, LocalCluster]) -> None:
    """MovePreflight's `check` refuses the finding (no pack needed) and the engine still runs the pack's
    resource policies on it, so the preview names both the pre-flight and the policy."""
    with broken_owner_chain(lab["ephemeral"]):
        assert_violates(project, lab, "owner-chain", "its owner ConfigMap metal3/outsider does not move with it")
        _rc, out = preview(project, lab)
        assert "move refused by the pre-flight" in out, out[-3000:]


def test_bmh_status_annotation(project: PulumiProject, lab: dict[str, LocalCluster]) -> None:
    eph = lab["ephemeral"]
    host = sorted(k.name for k in snapshot(eph) if k.kind == "BareMetalHost")[0]
    rt = next(r for r in bundle_types().values() if r.kind == "BareMetalHost")

    async def edit(annotation: str | None, status: dict | None) -> None:
        async with _kube(eph) as k:
            await k.patch(rt, host, TOPOLOGY.namespace, {"metadata": {"annotations": {BMH_STATUS: annotation}}})
            await k.patch(rt, host, TOPOLOGY.namespace, {"status": status}, sub="status")

    saved = next(o for k, o in snapshot(eph).items() if k.kind == "BareMetalHost" and k.name == host)
    asyncio.run(edit(None, None))
    try:
        assert_violates(project, lab, "bmh-status-annotation", f"BareMetalHost.metal3.io metal3/{host}")
        assert "move refused by the pre-flight" in preview(project, lab)[1]
    finally:
        asyncio.run(edit(saved["metadata"]["annotations"][BMH_STATUS], saved["status"]))


def test_the_pack_is_the_one_the_pr_workflow_runs() -> None:
    workflow = (ROOT / ".github/workflows/preview.yml").read_text()
    assert "policyPacks: policies" in workflow and "command: preview" in workflow


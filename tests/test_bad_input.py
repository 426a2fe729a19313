"""Bad input to the engine CLI: a specific error, the documented exit code, and zero writes.

Unreadable, malformed or unknown kubeconfigs and contexts, an unreachable server, and every pre-flight
refusal (missing namespace or CRD, block-move, hosts without a status to carry or in a transient state,
a Cluster paused by someone else). "Zero writes": tests/kit/refusals.py. Huge, deeply nested and unicode
objects: tests/test_edge_objects.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator

import pytest

from lab.cluster import LocalCluster, free_port
from metal3_pivot import BMH_STATUS
from metal3_pivot.kube import Kube
from tests.kit.move import (
    TOPOLOGY,
    bundle_types,
    engine_cli,
    kube,
    snapshot,
)
from tests.kit.refusals import move_args, refused, start_lab

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, LocalCluster]]:
    clusters = start_lab("bad-input", bare=True)
    yield clusters
    for c in clusters.values():
        c.stop()


def patch(cluster: LocalCluster, kind: tuple[str, str], name: str, body: dict) -> None:
    async def go(k: Kube) -> None:
        rt = next(r for r in bundle_types().values() if (r.group, r.kind) == kind)
        await k.patch(rt, name, TOPOLOGY.namespace, body)

    async def run() -> None:
        async with kube(cluster) as k:
            await go(k)
    asyncio.run(run())


def first_name(cluster: LocalCluster, kind: str) -> str:
    return sorted(k.name for k in snapshot(cluster) if k.kind == kind)[0]


def test_unreadable_kubeconfig(lab, tmp_path) -> None:
    refused(lab, move_args(tmp_path / "nope.kubeconfig", lab["target"].kubeconfig), 2, "cannot read",
            "nope.kubeconfig")


def test_malformed_kubeconfig(lab, tmp_path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nclusters: [\n  oops")
    refused(lab, move_args(broken, lab["target"].kubeconfig), 2, "is not valid YAML")
    not_kc = tmp_path / "list"
    not_kc.write_text("- just\n- a list\n")
    refused(lab, move_args(not_kc, lab["target"].kubeconfig), 2, "is not a kubeconfig")
    # a client certificate without its key: said so, not a TypeError from deep in the TLS set-up
    keyless = tmp_path / "keyless"
    keyless.write_text(lab["target"].kubeconfig.read_text().replace("client-key-data", "other-key-data"))
    err = refused(lab, move_args(lab["ephemeral"].kubeconfig, keyless), 2,
                  "has a client certificate but no client key (client-key-data or client-key)")
    assert "other-key-data" not in err


def test_unknown_context(lab) -> None:
    err = refused(lab, [*move_args(lab["ephemeral"].kubeconfig, lab["target"].kubeconfig),
                        "--kubeconfig-context", "prod"], 2, "has no context 'prod'", "it has: ephemeral")
    assert "client-key-data" not in err


def test_unreachable_server(lab, tmp_path) -> None:
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(lab["target"].kubeconfig.read_text().replace(
        f"127.0.0.1:{lab['target'].api_port}", f"127.0.0.1:{free_port()}"))
    refused(lab, move_args(lab["ephemeral"].kubeconfig, dead), 3, "does not answer")


def test_missing_namespace(lab) -> None:
    args = move_args(lab["ephemeral"].kubeconfig, lab["target"].kubeconfig)
    args[args.index(TOPOLOGY.namespace)] = "metal4"
    refused(lab, args, 2, "namespace metal4", "exists in neither")


def test_missing_crd_in_target(lab) -> None:
    refused(lab, move_args(lab["ephemeral"].kubeconfig, lab["bare"].kubeconfig), 2,
            "kind BareMetalHost.metal3.io", "has no CRD")


# One object changed the way the row says, the move refused naming it, the object restored:
# (kind, name of the object, the change, the patch that undoes it, what the refusal must say)
Mischief = tuple[tuple[str, str], str, dict, dict, tuple[str, ...]]


# A block-move annotation is no bad input any more: the move pauses, then waits for it to go, as clusterctl
# does (tests/test_parity_rules.py, rule 1).


def host_in_a_transient_state(lab: dict[str, LocalCluster]) -> Mischief:
    name = first_name(lab["ephemeral"], "BareMetalHost")
    saved = next(o for k, o in snapshot(lab["ephemeral"]).items() if k.name == name and k.kind == "BareMetalHost")
    status = json.loads(saved["metadata"]["annotations"][BMH_STATUS])
    status["provisioning"]["state"] = "deprovisioning"
    return (("metal3.io", "BareMetalHost"), name, {"metadata": {"annotations": {BMH_STATUS: json.dumps(status)}}},
            {"metadata": {"annotations": {BMH_STATUS: saved["metadata"]["annotations"][BMH_STATUS]}}},
            ("'deprovisioning'",))


def cluster_paused_by_someone_else(_: dict[str, LocalCluster]) -> Mischief:
    return (("cluster.x-k8s.io", "Cluster"), "test1", {"spec": {"paused": True}}, {"spec": {"paused": None}},
            ("not by metal3-pivot",))


@pytest.mark.parametrize("mischief", [host_in_a_transient_state, cluster_paused_by_someone_else])
def test_an_object_that_must_not_move_yet_is_refused(lab, mischief: Callable[..., Mischief]) -> None:
    kind, name, change, undo, needles = mischief(lab)
    patch(lab["ephemeral"], kind, name, change)
    try:
        refused(lab, move_args(lab["ephemeral"].kubeconfig, lab["target"].kubeconfig), 2, *needles)
    finally:
        patch(lab["ephemeral"], kind, name, undo)


def test_host_without_status_to_carry(lab) -> None:
    name = first_name(lab["ephemeral"], "BareMetalHost")
    kind = ("metal3.io", "BareMetalHost")
    saved = next(o for k, o in snapshot(lab["ephemeral"]).items() if k.name == name and k.kind == "BareMetalHost")
    patch(lab["ephemeral"], kind, name, {"metadata": {"annotations": {BMH_STATUS: None}}})
    _set_status(lab["ephemeral"], name, None)      # BMO has not registered it yet: nothing to carry
    try:
        refused(lab, move_args(lab["ephemeral"].kubeconfig, lab["target"].kubeconfig), 2,
                f"BareMetalHost.metal3.io metal3/{name}", BMH_STATUS)
    finally:
        patch(lab["ephemeral"], kind, name,
              {"metadata": {"annotations": {BMH_STATUS: saved["metadata"]["annotations"][BMH_STATUS]}}})
        _set_status(lab["ephemeral"], name, saved["status"])


def test_dry_run_reports_the_same_refusals(lab) -> None:
    refused(lab, move_args(lab["ephemeral"].kubeconfig, lab["bare"].kubeconfig, "--dry-run"), 2, "has no CRD")


def _set_status(cluster: LocalCluster, name: str, status: dict | None) -> None:
    async def run() -> None:
        async with kube(cluster) as k:
            rt = next(r for r in bundle_types().values() if (r.group, r.kind) == ("metal3.io", "BareMetalHost"))
            await k.patch(rt, name, TOPOLOGY.namespace, {"status": status}, sub="status")
    asyncio.run(run())



def test_verify_reports_two_ironics(lab) -> None:
    from metal3_pivot.kube import DEPLOYMENTS

    labels = {"app.kubernetes.io/name": "ironic"}
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "ironic", "namespace": "default", "labels": labels},
           "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
               "containers": [{"name": "ironic", "image": "quay.io/metal3-io/ironic"}]}}}}

    async def each(create: bool) -> None:
        for name in ("ephemeral", "target"):
            async with kube(lab[name]) as k:
                if create:
                    await k.create(DEPLOYMENTS, dep)
                else:
                    await k.delete(DEPLOYMENTS, "ironic", "default")

    asyncio.run(each(True))
    try:
        out = engine_cli("verify", "--kubeconfig", str(lab["ephemeral"].kubeconfig), "--to-kubeconfig",
                         str(lab["target"].kubeconfig), "-n", TOPOLOGY.namespace)
        assert out.returncode == 6, out.stdout + out.stderr
        assert "2 Ironic deployments" in out.stdout and "at most one may manage the hosts" in out.stdout
    finally:
        asyncio.run(each(False))

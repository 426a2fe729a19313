"""Every object the stack declares can be created a second time, under another field manager, and agree.

pulumi-kubernetes creates each object by server-side apply under a field manager it draws at random per
create. An `up` killed between the API server's create and the state's save leaves the object with no
record, and the next `up` creates it again under another name, unforced. Where the server compares a value
whole (an atomic struct or list, an empty map) and stores something other than what was sent (its
defaults), that second apply is refused, and so is every later `up` (a kill sweep found it in BMO's
Deployment; docs/reliability.md). tests/test_pulumi_handover_kill.py checks it through the real CLI for
what the seeded lab declares; this checks every kind the stack declares on a real cluster, the webhook
configurations too (declared only where Deployments are awaited: not in the seeded lab).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components import manifests, webhooks
from components.config import IronicConfig, ProvidersConfig
from components.ironic import ironic_objects
from components.objects import with_server_defaults
from components.providers import objects_for
from lab.cluster import LocalCluster
from metal3_pivot.errors import ConflictError
from metal3_pivot.kube import CRD, Kube, ResourceType, load_kubeconfig

pytestmark = pytest.mark.cluster

Obj = dict[str, Any]
FIRST, SECOND = "pulumi-kubernetes-0a1b2c3d", "pulumi-kubernetes-4e5f6a7b"


def declared() -> list[Obj]:
    """What a stack with every provider's controllers, Ironic and the webhooks declares, as the release
    renders give it (before `with_server_defaults`), namespaces first. Aside: the CRDs (CrdSet applies them
    forced under one manager of its own) and the webhook certificates' Secrets (made of Pulumi outputs;
    a Secret has no field the server compares whole)."""
    config = ProvidersConfig()
    objs = [o for group in objects_for(config, Path(".")).values() for o in group
            if o["kind"] != "CustomResourceDefinition"]
    ironic = IronicConfig()
    objs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ironic.namespace}})
    objs += ironic_objects(ironic)
    ca = base64.b64encode(b"a CA").decode()
    for spec, namespace in [*((p, p.namespace) for p in manifests.PROVIDERS), (manifests.BMO, ironic.namespace)]:
        for hook in manifests.webhook_configurations(spec):
            done = webhooks.configured(hook, {str(hook["metadata"]["annotations"][webhooks.INJECT_CA_FROM]): ca},
                                       spec.namespace, namespace)
            assert done is not None
            objs.append(done)
    return sorted(objs, key=lambda o: o["kind"] != "Namespace")


async def _types(kube: Kube, objs: list[Obj]) -> dict[tuple[str, str], ResourceType]:
    """Each kind's REST path, from the API server's discovery."""
    out: dict[tuple[str, str], ResourceType] = {}
    for api_version in sorted({o["apiVersion"] for o in objs}):
        listing = await kube.request("GET", f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}")
        group, _, version = api_version.rpartition("/")
        for r in listing["resources"]:
            if "/" not in r["name"]:
                out[(api_version, r["kind"])] = ResourceType(group, version, r["kind"], r["name"], r["namespaced"])
    return out


async def _apply_twice(cluster: LocalCluster, objs: list[Obj], form: Callable[[Obj], Obj]) -> list[str]:
    """Apply each object as `form` gives it under FIRST, then again under SECOND, unforced (as a second
    create by pulumi-kubernetes); the names of those the second apply was refused for."""
    refused = []
    async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
        types = await _types(kube, objs)
        for obj in objs:
            rt = types[(obj["apiVersion"], obj["kind"])]
            await kube.apply(rt, form(obj), manager=FIRST, force=False)
            try:
                await kube.apply(rt, form(obj), manager=SECOND, force=False)
            except ConflictError as err:
                refused.append(f"{obj['kind']} {obj['metadata']['name']}: {err}")
    return refused


def test_every_declared_object_created_again_under_another_manager_agrees(fresh_clusters) -> None:
    objs = declared()
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "ClusterRole",
            "Service", "Provider"} <= kinds, kinds
    cluster = fresh_clusters(("again",), with_crds=False)["again"]
    # the inventory's CRD, which clusterctl installs first (its Providers are declared above)
    asyncio.run(_establish(cluster, manifests.inventory_crds()))
    refused = asyncio.run(_apply_twice(cluster, objs, with_server_defaults))
    assert refused == [], "\n".join(refused)


def test_without_the_defaults_written_out_the_second_create_is_refused(fresh_clusters) -> None:
    """The check above bites: the release forms of a Deployment reading the downward API, a webhook
    configuration and one of BMO's ClusterRoles (`labels: {}`, which Pulumi's SDK leaves out of what it
    sends, and `with_server_defaults` too) are each refused on their second create."""
    objs = declared()
    picked = [next(o for o in objs if o["kind"] == "Deployment" and _reads_downward_api(o)),
              next(o for o in objs if o["kind"] == "ValidatingWebhookConfiguration"),
              next(o for o in objs if o["kind"] == "ClusterRole" and o["metadata"].get("labels") == {})]
    cluster = fresh_clusters(("again",), with_crds=False)["again"]
    namespaces = [o for o in objs if o["kind"] == "Namespace"]
    refused = asyncio.run(_apply_twice(cluster, namespaces + picked, lambda o: o))
    assert [r.split(":")[0] for r in refused] == [f"{o['kind']} {o['metadata']['name']}" for o in picked], refused
    assert all("conflict" in r for r in refused), refused


def _reads_downward_api(obj: Obj) -> bool:
    return "'fieldRef'" in repr(obj["spec"])


async def _establish(cluster: LocalCluster, crds: list[Obj]) -> None:
    async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
        for crd in crds:
            await kube.apply(CRD, crd, manager="crdset", force=True)
        for crd in crds:
            for _ in range(100):
                got = await kube.get(CRD, crd["metadata"]["name"])
                conditions = ((got or {}).get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"CRD {crd['metadata']['name']} never Established")

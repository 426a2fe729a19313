"""ObjectLocation's own type token (issue 16, "the Pulumi way"), with the plain pulumi CLI on lab clusters.

A stack made when ObjectLocation had the generic token `pulumi-python:dynamic:Resource` (the program of
that time is reproduced below: the same provider and inputs under the old token) is updated by the current
program: the alias makes it the same resource under its new URN, so nothing is replaced (a replace of
ObjectLocation would be a create, i.e. a move, then a delete) and nothing in either cluster is written.
Then a pivot under the new token shows its progress on the resource, as `pulumi up` prints it.

Likewise a stack made when every CRD was its own pulumi-kubernetes resource moves to the CrdSet
(components/crdset.py) without deleting a CRD.
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from pathlib import Path

import pytest

from components.crdset import CRD
from components.crdset import TYPE as CRDSET_TYPE
from lab.cluster import kube_for
from lab.seams import seam_env
from tests.kit.env import PROGRAM, ROOT
from tests.kit.move import check, resource_versions, seed_pair
from tests.kit.pulumi_cli import PulumiProject, pivot_stack

pytestmark = [pytest.mark.pulumi, pytest.mark.cluster]

NEW_TYPE = "pulumi-python:dynamic/metal3:ObjectLocation"
OLD_TYPE = "pulumi-python:dynamic:Resource"

#: the program as it was before ObjectLocation had a token of its own: same provider, same inputs
OLD_PROGRAM = f"""
    import runpy

    import pulumi

    from components import object_location as ol


    class ObjectLocation(pulumi.dynamic.Resource):
        def __init__(self, name, *, opts=None, **declared):
            props = ol.declared_props(**declared)
            props.pop("urn")
            super().__init__(ol.ObjectLocationProvider(), name, props, opts)


    ol.ObjectLocation = ObjectLocation
    runpy.run_path({str(ROOT / "__main__.py")!r}, run_name="__main__")
"""


def resources(p: PulumiProject) -> dict[str, str]:
    """name -> type of every custom resource in the stack's state."""
    state = json.loads(p.run("stack", "export", check=True).stdout)
    return {r["urn"].rsplit("::", 1)[-1]: r["type"] for r in state["deployment"].get("resources") or []
            if r.get("custom") and not r["type"].startswith("pulumi:providers:")}


def test_a_stack_made_under_the_generic_token_is_updated_without_replace(fresh_clusters, tmp_path: Path) -> None:
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)

    p = PulumiProject.create(tmp_path / "proj", "metal3-pivot", OLD_PROGRAM)
    p.set_config("location", "ephemeral")
    p.set_kubeconfigs(eph.kubeconfig, tgt.kubeconfig)
    p.set_config("skipAwait", "true")
    # only the move: the lab's target already runs the providers' CRDs and inventory
    p.run("config", "set", "--path", "providers.install", "false", check=True)
    p.run("config", "set", "--path", "ironic.install", "false", check=True)
    p.run("up", "--yes", check=True)
    assert resources(p)["objects"] == OLD_TYPE

    # the current program: the same stack, one resource under a new URN, no replace, no write to a cluster
    (p.directory / "__main__.py").write_text(textwrap.dedent(PROGRAM))
    before = {c.name: resource_versions(c) for c in (eph, tgt)}
    preview = p.run("preview", "--diff", check=True)
    assert "replace" not in preview.output and "to create" not in preview.output, preview.output[-3000:]
    up = p.run("up", "--yes", check=True)
    assert "replace" not in up.output and "created" not in up.output, up.output[-3000:]
    assert resources(p)["objects"] == NEW_TYPE
    p.run("preview", "--expect-no-changes", check=True)
    assert {c.name: resource_versions(c) for c in (eph, tgt)} == before

    # a pivot under the new token (each write slowed down, so that the move lasts a few seconds): its
    # progress is on the resource, the latest step on its row while it updates, the milestones under it
    p.set_config("location", "target")
    p.env_extra.update(seam_env(delay=0.05))
    pivot = p.run("up", "--yes", check=True)
    assert check(eph, tgt, expect="target").ok
    rows = re.findall(rf"~  {re.escape(NEW_TYPE)} objects updating \(\d+s\) \[[^]]*\]; (.*)", pivot.stdout)
    steps = [r for r in rows if not r.startswith(("discovered", "moved"))]      # pausing, creating level ...
    assert any(r.startswith("discovered") for r in rows) and steps, pivot.stdout[-3000:]
    on_resource = pivot.stdout.split(f"{NEW_TYPE} (objects):", 1)
    assert len(on_resource) == 2, pivot.output[-3000:]
    block = on_resource[1].split("\n\n", 1)[0]
    assert "discovered" in block and re.search(r"moved \d+ objects from ephemeral to target", block), block
    assert not any(step in block for step in steps)     # steps are shown while they run, not kept
    assert "metal3-pivot: " not in pivot.output         # no line fell back to the provider's stderr


#: the program as it was before the CrdSet (components/crdset.py): each CRD one pulumi-kubernetes resource
#: under ProviderInstall, retain_on_delete, with the target's Kubernetes provider (same names, same options)
PER_CRD_PROGRAM = f"""
    import runpy

    import pulumi

    from components import clusters, objects, providers

    PROVIDERS = {{}}
    made = clusters.ManagementCluster.__init__


    def recording(self, type_token, name, *args, **kwargs):
        made(self, type_token, name, *args, **kwargs)
        PROVIDERS[name] = self.provider


    def per_crd(name, *, cluster, kubeconfig, context, crds, opts):
        prefix = name.removesuffix("-crds")
        with_provider = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=PROVIDERS[cluster]))
        return [objects.k8s_object(objects.resource_name(prefix, o), o, with_provider) for o in crds][-1]


    clusters.ManagementCluster.__init__ = recording
    providers.CrdSet = per_crd
    runpy.run_path({str(ROOT / "__main__.py")!r}, run_name="__main__")
"""

CRD_TYPE = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


def test_a_stack_with_one_resource_per_crd_moves_to_the_crdset_and_keeps_every_crd(fresh_clusters,
                                                                                     tmp_path: Path) -> None:
    """The per-CRD resources leave the state without a delete (they were retain_on_delete), the CrdSet
    applies the same CRDs over them, and the next preview has nothing to do."""
    eph = fresh_clusters(("ephemeral",))["ephemeral"]
    tgt = fresh_clusters(("target",), with_crds=False)["target"]     # a bare target: the stack installs it
    p = pivot_stack(tmp_path / "proj", eph.kubeconfig, tgt.kubeconfig, program=PER_CRD_PROGRAM)
    p.run("config", "set", "--path", "ironic.install", "false", check=True)
    p.run("up", "--yes", "--skip-preview", check=True, timeout=900)
    old = [name for name, typ in resources(p).items() if typ == CRD_TYPE]
    assert len(old) > 30 and CRDSET_TYPE not in resources(p).values()

    async def live() -> dict[str, str]:
        async with kube_for(tgt) as k:
            return {c["metadata"]["name"]: c["metadata"]["uid"] for c in await k.list(CRD)}
    before = asyncio.run(live())

    (p.directory / "__main__.py").write_text(textwrap.dedent(PROGRAM))
    preview = p.run("preview", "--json", check=True)
    ops = [(step["op"], step["urn"].split("::")[-2].rsplit("$", 1)[-1]) for step in json.loads(preview.stdout)["steps"]
           if step["op"] != "same"]
    assert {op for op, _ in ops} == {"create", "delete"}, ops               # no replace
    assert [typ for op, typ in ops if op == "create"] == [CRDSET_TYPE], ops
    assert {typ for op, typ in ops if op == "delete"} == {CRD_TYPE}, ops
    up = p.run("up", "--yes", "--skip-preview", check=True)
    now = resources(p)
    assert [typ for typ in now.values() if typ == CRDSET_TYPE] == [CRDSET_TYPE], up.output[-3000:]
    assert {name for name, typ in now.items() if typ == CRD_TYPE} < set(old)        # only clusterctl's own left
    assert asyncio.run(live()) == before                  # every CRD still there, the same objects (same UIDs)
    p.run("preview", "--expect-no-changes", check=True)

"""ObjectLocation's own type token (issue 16, "the Pulumi way"), with the plain pulumi CLI on lab clusters.

A stack made when ObjectLocation had the generic token `pulumi-python:dynamic:Resource` (the program of
that time is reproduced below: the same provider and inputs under the old token) is updated by the current
program: the alias makes it the same resource under its new URN, so nothing is replaced (a replace of
ObjectLocation would be a create, i.e. a move, then a delete) and nothing in either cluster is written.
Then a pivot under the new token shows its progress on the resource, as `pulumi up` prints it.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from lab.seams import seam_env
from tests.kit.env import PROGRAM, ROOT
from tests.kit.move import check, resource_versions, seed_pair
from tests.kit.pulumi_cli import PulumiProject

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
    p.run("config", "set", "--secret", "--path", "ephemeral.kubeconfig", stdin=eph.kubeconfig.read_text(), check=True)
    p.run("config", "set", "--secret", "--path", "target.kubeconfig", stdin=tgt.kubeconfig.read_text(), check=True)
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

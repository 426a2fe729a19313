"""Helpers of the live workflow tests: one call against a cluster, the stack that pivots the live lab."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lab.cluster import LocalCluster, kube_for
from lab.workflow import Lab
from tests.kit.env import PROGRAM
from tests.kit.pulumi_cli import PulumiProject


def live_stack(lab: Lab, directory: Path) -> PulumiProject:
    """The stack of the live workflow: both kubeconfigs as secret config, Deployments awaited."""
    p = PulumiProject.create(directory, "metal3-pivot", PROGRAM, stack="live")
    p.set_config("location", "ephemeral")
    p.run("config", "set", "--secret", "--path", "ephemeral.kubeconfig",
          stdin=(lab.base / "ephemeral" / "kubeconfig").read_text(), check=True)
    p.run("config", "set", "--secret", "--path", "target.kubeconfig", stdin=lab.target_kubeconfig.read_text(),
          check=True)
    p.run("config", "set", "--path", "namespaces[0]", lab.namespace, check=True)
    p.set_config("skipAwait", "true")
    p.set_config("awaitDeployments", "true")
    p.run("config", "set", "--path", "ironic.adopt", "true", check=True)   # dev-env installed them
    p.run("config", "set", "--path", "protect", "false", check=True)
    return p


def call(cluster: LocalCluster, fn: Any) -> Any:
    """`fn(kube)` against `cluster`, from synchronous test code."""
    async def go() -> Any:
        async with kube_for(cluster) as kube:
            return await fn(kube)
    return asyncio.run(go())

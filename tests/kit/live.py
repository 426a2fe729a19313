"""Helpers of the live tests: one call against a cluster, the stack that pivots the live lab, and the webhook
objects the stack installs for a provider (for tests that apply an install without an engine)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from components import manifests, webhooks
from lab.cluster import LocalCluster, kube_for
from lab.plane import certs
from lab.workflow import Lab
from tests.kit.env import PROGRAM
from tests.kit.pulumi_cli import PulumiProject


def live_stack(lab: Lab, directory: Path) -> PulumiProject:
    """The stack of the live workflow: both kubeconfigs as secret config, Deployments awaited."""
    p = PulumiProject.create(directory, "metal3-pivot", PROGRAM, stack="live")
    p.set_config("location", "ephemeral")
    p.set_kubeconfigs(lab.base / "ephemeral" / "kubeconfig", lab.target_kubeconfig)
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


def installed_webhooks(spec: manifests.ProviderSpec, namespace: str | None = None) -> list[dict[str, Any]]:
    """What ProviderInstall / Ironic declare for the provider's webhooks, without an engine: the serving
    Secret (the same certificate maker as the stack's WebhookCertificate) and the release's webhook
    configurations, `service:` references kept, the caBundle that certificate's."""
    ns = namespace or spec.namespace
    out = []
    cas = {}
    for cert in manifests.certificates(spec):
        md = cert["metadata"]
        moved = {**cert, "metadata": {**md, "namespace": ns}, "spec": {**cert["spec"], "dnsNames": [
            n.replace(f".{spec.namespace}.svc", f".{ns}.svc") for n in cert["spec"]["dnsNames"]]}}
        secret = certs.issue(moved)
        cas[f"{md['namespace']}/{md['name']}"] = certs.ca_bundle(secret)
        out.append(secret)
    for obj in manifests.webhook_configurations(spec):
        done = webhooks.configured(obj, cas, spec.namespace, ns)
        if done is not None:
            out.append(done)
    return out

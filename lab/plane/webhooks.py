"""What `clusterctl init` applies for a provider's webhooks, on clusters the lab installs itself.

For the dev-env's ephemeral cluster (the lab's `clusterctl init` + metal3-dev-env's BMO step) and the
direct API of lab/plane/managers.py: the release's webhook Service, the Secret its `Certificate` names
(issued by lab/plane/certs.py, cert-manager's part), the release's Validating/MutatingWebhookConfigurations
and the conversion webhooks of its CRDs, each `caBundle` filled where the release's
`cert-manager.io/inject-ca-from` asks, as cert-manager's CA injector would. The `service:` client
configs are the release's, unchanged: the API server reaches them through the Services' EndpointSlices,
which the lab writes for the Pods it runs (lab/plane/endpoints.py). Clusters the stack installs get all
of this from ProviderInstall / Ironic (components/webhooks.py); nothing here touches them.

As in a real cluster, a manager that is down then blocks writes of the kinds its webhooks guard
(failurePolicy Fail): the configurations belong to the install, not to the process.
"""

from __future__ import annotations

import copy
from typing import Any

from lab.plane import certs
from lab.plane.certs import INJECT_CA_FROM
from lab.plane.endpoints import SERVICES
from metal3_pivot import CRD, NAMESPACE, SECRET, VALIDATING_WEBHOOKS, Kube, ResourceType

Obj = dict[str, Any]

MUTATING_WEBHOOKS = ResourceType("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
                                 "mutatingwebhookconfigurations", namespaced=False)
WEBHOOK_KINDS = {"ValidatingWebhookConfiguration": VALIDATING_WEBHOOKS,
                 "MutatingWebhookConfiguration": MUTATING_WEBHOOKS}
FIELD_MANAGER = "metal3-lab-plane"


def injected_by(obj: Obj, certificate: str) -> bool:
    """Whether the release asks for the CA of `certificate` ("<ns>/<name>") in this object."""
    return bool((obj["metadata"].get("annotations") or {}).get(INJECT_CA_FROM) == certificate)


def webhook_configurations(release: list[Obj], certificate: str, ca: str) -> list[Obj]:
    """The release's admission webhook configurations for this certificate, with its CA injected."""
    out = []
    for obj in release:
        if obj.get("kind") not in WEBHOOK_KINDS or not injected_by(obj, certificate):
            continue
        obj = copy.deepcopy(obj)
        for hook in obj.get("webhooks") or []:
            hook["clientConfig"]["caBundle"] = ca
        out.append(obj)
    return out


def conversion_patches(release: list[Obj], certificate: str, ca: str) -> dict[str, Obj]:
    """{CRD name: merge patch} setting the release's conversion webhook, with the CA injected."""
    patches = {}
    for obj in release:
        conversion = (obj.get("spec") or {}).get("conversion") or {}
        if obj.get("kind") != "CustomResourceDefinition" or conversion.get("strategy") != "Webhook":
            continue
        if not injected_by(obj, certificate):
            continue
        webhook = copy.deepcopy(conversion["webhook"])
        webhook["clientConfig"]["caBundle"] = ca
        patches[obj["metadata"]["name"]] = {"spec": {"conversion": {"strategy": "Webhook", "webhook": webhook}}}
    return patches


def webhook_services(release: list[Obj]) -> list[Obj]:
    """The release's Services that its webhook configurations or conversions name."""
    named = set()
    for obj in release:
        hooks = obj.get("webhooks") or []
        ccs = [h["clientConfig"] for h in hooks]
        conversion = (obj.get("spec") or {}).get("conversion") or {} if obj.get("kind") == "CustomResourceDefinition" \
            else {}
        if conversion.get("webhook"):
            ccs.append(conversion["webhook"]["clientConfig"])
        named |= {(cc["service"]["namespace"], cc["service"]["name"]) for cc in ccs if "service" in cc}
    return [o for o in release if o.get("kind") == "Service"
            and (o["metadata"].get("namespace"), o["metadata"]["name"]) in named]


async def install(kube: Kube, release: list[Obj]) -> list[str]:
    """Apply what `clusterctl init` (with cert-manager) would for the release's webhooks; an existing
    Secret is kept (cert-manager keeps it too). Returns what was written, for the log."""
    written = []
    for cert in (o for o in release if o.get("kind") == "Certificate"):
        ns = cert["metadata"]["namespace"]
        secret = await kube.get(SECRET, cert["spec"]["secretName"], ns)
        if secret is None:
            await kube.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                             manager=FIELD_MANAGER)
            secret = await kube.create(SECRET, certs.issue(cert))
            written.append(f"Secret/{ns}/{cert['spec']['secretName']}")
        ref, ca = f"{ns}/{cert['metadata']['name']}", certs.ca_bundle(secret)
        for obj in webhook_configurations(release, ref, ca):
            obj = {k: v for k, v in obj.items() if k != "status"}
            await kube.apply(WEBHOOK_KINDS[obj["kind"]], obj, manager=FIELD_MANAGER)
            written.append(f"{obj['kind']}/{obj['metadata']['name']}")
        for name, patch in conversion_patches(release, ref, ca).items():
            if await kube.patch(CRD, name, None, patch, ok_missing=True) is not None:
                written.append(f"CustomResourceDefinition/{name} (conversion)")
    for svc in webhook_services(release):
        await kube.apply(SERVICES, svc, manager=FIELD_MANAGER)
        written.append(f"Service/{svc['metadata']['namespace']}/{svc['metadata']['name']}")
    return written

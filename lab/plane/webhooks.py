"""A provider's webhook configurations and CRD conversion webhooks, pointed at a manager on loopback.

The objects are the provider's release config (components/manifests.rendered: what `clusterctl init`
applies), not invented ones. Two things change, both because the manager is a local process and not a
Pod behind a Service:
- each `clientConfig.service` becomes `url: https://127.0.0.1:<port><path>`: the API server resolves a
  Service through its Endpoints, and Endpoints refuse loopback addresses, so a `service:` reference can
  never reach a process on 127.0.0.1;
- the `caBundle` is the one the lab's issuer wrote (lab/plane/certs.py), injected where the release's
  `cert-manager.io/inject-ca-from` annotation asks, as cert-manager's CA injector would.

Everything else (rules, failurePolicy Fail, sideEffects, matchPolicy) is the release's. As in a real
cluster, a manager that is down then blocks writes of the kinds its webhooks guard; stopping a manager
leaves its configurations in place for that reason (a scaled-down Deployment does the same). Only when
its Deployment is deleted (an uninstall: the Ironic handover takes BMO off the source cluster) are they
removed (`uninstall`), as deleting the install they would have come with removes them; otherwise a
gone BMO's webhook would refuse every later write of a BareMetalHost there, the move's included.
"""

from __future__ import annotations

import copy
from typing import Any

from lab.plane.certs import INJECT_CA_FROM
from metal3_pivot import CRD, VALIDATING_WEBHOOKS, Kube, ResourceType

Obj = dict[str, Any]

MUTATING_WEBHOOKS = ResourceType("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
                                 "mutatingwebhookconfigurations", namespaced=False)
WEBHOOK_KINDS = {"ValidatingWebhookConfiguration": VALIDATING_WEBHOOKS,
                 "MutatingWebhookConfiguration": MUTATING_WEBHOOKS}
FIELD_MANAGER = "metal3-lab-plane"


def _client_config(service: Obj, port: int, ca: str) -> Obj:
    return {"url": f"https://127.0.0.1:{port}{service.get('path') or '/'}", "caBundle": ca}


def injected_by(obj: Obj, certificate: str) -> bool:
    """Whether the release asks for the CA of `certificate` ("<ns>/<name>") in this object."""
    return bool((obj["metadata"].get("annotations") or {}).get(INJECT_CA_FROM) == certificate)


def webhook_configurations(release: list[Obj], certificate: str, port: int, ca: str) -> list[Obj]:
    """The release's admission webhook configurations for this certificate, served at 127.0.0.1:port."""
    out = []
    for obj in release:
        if obj.get("kind") not in WEBHOOK_KINDS or not injected_by(obj, certificate):
            continue
        obj = copy.deepcopy(obj)
        for hook in obj.get("webhooks") or []:
            service = hook["clientConfig"].get("service")
            if service is not None:
                hook["clientConfig"] = _client_config(service, port, ca)
        out.append(obj)
    return out


def conversion_patches(release: list[Obj], certificate: str, port: int, ca: str) -> dict[str, Obj]:
    """{CRD name: merge patch} setting the release's conversion webhook, served at 127.0.0.1:port."""
    patches = {}
    for obj in release:
        conversion = (obj.get("spec") or {}).get("conversion") or {}
        if obj.get("kind") != "CustomResourceDefinition" or conversion.get("strategy") != "Webhook":
            continue
        if not injected_by(obj, certificate):
            continue
        webhook = copy.deepcopy(conversion["webhook"])
        service = webhook["clientConfig"].get("service")
        if service is not None:
            webhook["clientConfig"] = _client_config(service, port, ca)
        patches[obj["metadata"]["name"]] = {"spec": {"conversion": {"strategy": "Webhook", "webhook": webhook}}}
    return patches


async def install(kube: Kube, release: list[Obj], certificate: str, port: int, ca: str) -> list[str]:
    """Apply the configurations and patch the conversion of those of the release's CRDs that the cluster
    has; returns what was written, for the log."""
    written = []
    for obj in webhook_configurations(release, certificate, port, ca):
        obj = {k: v for k, v in obj.items() if k != "status"}
        await kube.apply(WEBHOOK_KINDS[obj["kind"]], obj, manager=FIELD_MANAGER)
        written.append(f"{obj['kind']}/{obj['metadata']['name']}")
    for name, patch in conversion_patches(release, certificate, port, ca).items():
        if await kube.patch(CRD, name, None, patch, ok_missing=True) is not None:
            written.append(f"CustomResourceDefinition/{name} (conversion)")
    return written


async def uninstall(kube: Kube, written: list[str]) -> list[str]:
    """Delete the webhook configurations `install` wrote (CRD conversion stays: CRDs outlive their
    providers, and a conversion nobody serves only matters for reads of other versions)."""
    removed = []
    for item in written:
        kind, _, name = item.partition("/")
        if kind in WEBHOOK_KINDS and await kube.delete(WEBHOOK_KINDS[kind], name):
            removed.append(item)
    return removed

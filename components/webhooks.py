"""A provider's webhooks as the stack installs them: serving certificate, its Secret, the release's
webhook configurations and CRD conversion webhooks, each caBundle the stack's certificate.

What the release asks cert-manager for, the stack does itself (components/webhook_cert.py): for each
release `Certificate` a WebhookCertificate and the Secret it names; the CA goes into exactly the
webhook configurations and CRD conversions whose `cert-manager.io/inject-ca-from` names that
Certificate, as cert-manager's CA injector would put it. The `service:` client configs stay as released:
the API server reaches the webhook through the Service, as on any cluster. The annotation itself is
dropped: a cert-manager installed later would otherwise inject a CA of its own and fight the stack.

A provider deployed into another namespace than the release's (BMO into Ironic's) gets what a kustomize
`namespace:` would give it: Service references and certificate names in that namespace.

Where nothing runs the Deployments and the stack is told not to wait for them (`skipAwait` without
`awaitDeployments`: the lab's clusters without the live plane), the webhook configurations and
conversions are left out (`objects.servers_awaited`): a failurePolicy Fail webhook nobody serves would
refuse every write of its kinds, the move's included. Certificates and Secrets are declared either way.

Ordering, the callers' part: a webhook configuration (failurePolicy Fail) is declared after the
Deployment that serves it (it would refuse every write of its kinds until the manager answers), the
Secret before that Deployment (its volume), the conversion with the CRD (the API server calls it only
to convert between versions, and the managers convert nothing before they run).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components import manifests
from components.manifests import INJECT_CA_FROM, ProviderSpec
from components.objects import servers_awaited
from components.webhook_cert import WebhookCertificate

Obj = dict[str, Any]
#: names the release Certificate a stack-issued Secret stands for ("<release namespace>/<name>")
ISSUED_FOR = "metal3-pivot.io/issued-for"


def _moved(text: str, old: str, new: str) -> str:
    """A Service DNS name in `old` namespace, moved to `new` (`svc.old.svc...` -> `svc.new.svc...`)."""
    return text.replace(f".{old}.svc", f".{new}.svc") if old != new else text


def _client_config(cc: Obj, ca: Any, old: str, new: str) -> Obj:
    cc = dict(cc)
    if "service" in cc:
        svc = dict(cc["service"])
        if svc.get("namespace") == old:
            svc["namespace"] = new
        cc["service"] = svc
    cc["caBundle"] = ca
    return cc


def configured(obj: Obj, cas: Mapping[str, Any], old: str, new: str) -> Obj | None:
    """A release webhook configuration with its caBundle filled in from `cas` ("<ns>/<Certificate>" ->
    base64 CA, as the annotation names it), or None when its certificate is not one the stack issues."""
    ref = str((obj["metadata"].get("annotations") or {}).get(INJECT_CA_FROM, ""))
    if ref not in cas:
        return None
    obj = copy.deepcopy(obj)
    annotations = {k: v for k, v in (obj["metadata"].get("annotations") or {}).items() if k != INJECT_CA_FROM}
    obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "annotations"}
    if annotations:
        obj["metadata"]["annotations"] = annotations
    for hook in obj.get("webhooks") or []:
        hook["clientConfig"] = _client_config(hook["clientConfig"], cas[ref], old, new)
    return obj


def conversion(ref: str, conv: Obj, cas: Mapping[str, Any], old: str, new: str) -> Obj | None:
    """A release CRD's `spec.conversion` with its caBundle, or None when the stack does not issue `ref`."""
    if ref not in cas:
        return None
    conv = copy.deepcopy(conv)
    conv["webhook"]["clientConfig"] = _client_config(conv["webhook"]["clientConfig"], cas[ref], old, new)
    return conv


def as_served(objs: list[Obj], served: Served | None) -> list[Obj]:
    """A provider's objects as the stack installs them (copies where changed): cert-manager's objects and
    the release's webhook configurations left out (the stack's certificate and `served.configurations`
    stand for them), each CRD's conversion webhook the served one, or none where the stack serves none
    (nothing would answer it), and no CRD asking cert-manager for a CA. A pinned module's group carries
    none of these; a release components file carries them all."""
    conversions = served.conversions if served is not None else {}
    out = []
    for o in objs:
        if o["kind"] in manifests.CERT_MANAGER_KINDS or o["kind"] in manifests.WEBHOOK_KINDS:
            continue
        if o["kind"] == "CustomResourceDefinition":
            name, spec = o["metadata"]["name"], o.get("spec") or {}
            if name in conversions:
                o = {**o, "spec": {**spec, "conversion": conversions[name]}}
            elif (spec.get("conversion") or {}).get("strategy") == "Webhook":
                o = {**o, "spec": {**spec, "conversion": {"strategy": "None"}}}
            annotations = o["metadata"].get("annotations") or {}
            if INJECT_CA_FROM in annotations:
                kept = {k: v for k, v in annotations.items() if k != INJECT_CA_FROM}
                md = {k: v for k, v in o["metadata"].items() if k != "annotations"}
                o = {**o, "metadata": {**md, **({"annotations": kept} if kept else {})}}
        out.append(o)
    return out


def _b64(value: pulumi.Output[str]) -> pulumi.Output[str]:
    return value.apply(lambda s: base64.b64encode(s.encode()).decode())


@dataclass
class Served:
    """One provider's webhook objects, ready to declare (values may be Pulumi outputs)."""

    certificates: dict[str, WebhookCertificate] = field(default_factory=dict)   # release ref -> resource
    secrets: list[Obj] = field(default_factory=list)
    configurations: list[Obj] = field(default_factory=list)
    conversions: dict[str, Obj] = field(default_factory=dict)                   # CRD name -> spec.conversion


def serve(prefix: str, spec: ProviderSpec, opts: pulumi.ResourceOptions, namespace: str | None = None,
          labels: Mapping[str, str] | None = None) -> Served:
    """Declare the certificates of `spec`'s release (as resources, with `opts`: no Kubernetes provider) and
    return the objects that go with them. `namespace`: where the provider is deployed (the release's if
    None); `labels`: those the install puts on every object of the provider (clusterctl's)."""
    return serve_release(prefix, manifests.rendered(spec), spec.namespace, opts, namespace=namespace, labels=labels)


def serve_release(prefix: str, release: list[Obj], release_namespace: str, opts: pulumi.ResourceOptions,
                  namespace: str | None = None, labels: Mapping[str, str] | None = None) -> Served:
    """`serve` for a release given as its objects (a pinned module's render, or a components file the
    stack config names), deployed from `release_namespace`."""
    ns = namespace or release_namespace
    served = Served()
    for cert in manifests.certificates_of(release):
        md, cspec = cert["metadata"], cert["spec"]
        ref = f"{md.get('namespace', release_namespace)}/{md['name']}"
        res = WebhookCertificate(
            f"{prefix}-webhookcertificate-{ns}-{md['name']}", namespace=ns, secret_name=cspec["secretName"],
            dns_names=[_moved(n, release_namespace, ns) for n in cspec.get("dnsNames") or []],
            organizations=list((cspec.get("subject") or {}).get("organizations") or []), opts=opts)
        served.certificates[ref] = res
        meta: Obj = {"name": cspec["secretName"], "namespace": ns, "annotations": {ISSUED_FOR: ref}}
        if labels:
            meta["labels"] = dict(labels)
        served.secrets.append({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "kubernetes.io/tls",
                               "data": {"tls.crt": _b64(res.tlsCrt), "tls.key": _b64(res.tlsKey),
                                        "ca.crt": _b64(res.caCrt)}})
    if not servers_awaited():
        return served
    cas = {ref: _b64(res.caCrt) for ref, res in served.certificates.items()}
    for obj in manifests.webhook_configurations_of(release):
        done = configured(obj, cas, release_namespace, ns)
        if done is not None:
            if labels:
                done["metadata"]["labels"] = {**(done["metadata"].get("labels") or {}), **labels}
            served.configurations.append(done)
    for crd, (ref, conv) in manifests.conversions_of(release).items():
        c = conversion(ref, conv, cas, release_namespace, ns)
        if c is not None:
            served.conversions[crd] = c
    return served

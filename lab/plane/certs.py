"""Webhook serving certificates for the clusters the lab installs itself: cert-manager's part, played by the lab.

`clusterctl init` installs cert-manager, and every provider's release config carries a self-signed
`Issuer`, a `Certificate` (the webhook Service's DNS names, the Secret to write) and the annotation
`cert-manager.io/inject-ca-from: <ns>/<certificate>` on its webhook configurations and CRDs. Where the
lab stands in for `clusterctl init` (the dev-env's ephemeral cluster, the direct API of
lab/plane/managers.py), it issues each Certificate into the Secret it names, shaped as cert-manager
writes it (type kubernetes.io/tls, tls.crt / tls.key / ca.crt; a self-signed issuer's ca.crt is the
certificate itself), with the very certificate maker the stack's ProviderInstall uses
(components/webhook_cert.py), and hands out that CA for injection (lab/plane/webhooks.py). Clusters the
stack installs get their Secrets from the stack; the lab issues nothing there.
"""

from __future__ import annotations

import base64
from typing import Any

from components.webhook_cert import issue as issue_certificate

Obj = dict[str, Any]

INJECT_CA_FROM = "cert-manager.io/inject-ca-from"
ISSUED_BY = "metal3-pivot.lab/issued-for"     # marks Secrets this module wrote (cert-manager marks its own)


def issue(certificate: Obj) -> Obj:
    """The Secret cert-manager would write for this `Certificate` (selfSigned issuer)."""
    spec, md = certificate["spec"], certificate["metadata"]
    issued = issue_certificate(list(spec.get("dnsNames") or []),
                               list((spec.get("subject") or {}).get("organizations") or []))
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": spec["secretName"], "namespace": md["namespace"],
                         "annotations": {"cert-manager.io/certificate-name": md["name"],
                                         ISSUED_BY: f"{md['namespace']}/{md['name']}"}},
            "data": {k: base64.b64encode(issued[v].encode()).decode() for k, v in
                     (("tls.crt", "tlsCrt"), ("tls.key", "tlsKey"), ("ca.crt", "caCrt"))}}


def secret_files(secret: Obj) -> dict[str, bytes]:
    """A Secret's keys as the files a volume mount would show."""
    files = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    files.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return files


def ca_bundle(secret: Obj) -> str:
    """What the CA injector puts into `caBundle` (base64 of the PEM, as the API expects)."""
    return str((secret.get("data") or {})["ca.crt"])

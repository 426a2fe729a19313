"""Webhook serving certificates: the part cert-manager plays in a real install, played by the lab.

`clusterctl init` installs cert-manager, and every provider's release config carries a self-signed
`Issuer`, a `Certificate` (the webhook Service's DNS names, the Secret to write) and the annotation
`cert-manager.io/inject-ca-from: <ns>/<certificate>` on its webhook configurations and CRDs, which tells
cert-manager's CA injector to fill in their `caBundle`. No cert-manager runs in the lab (it would be
another set of controllers built and run for nothing the pivot touches), so this module does those two
jobs for the same objects: it issues each Certificate into the Secret it names, shaped as cert-manager
writes it (type kubernetes.io/tls with tls.crt, tls.key and ca.crt; a self-signed issuer's ca.crt is the
certificate itself), and hands out that CA for injection (lab/plane/webhooks.py). The one addition is a
127.0.0.1 SAN: the API server reaches the manager on loopback, not through the Service.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Obj = dict[str, Any]

INJECT_CA_FROM = "cert-manager.io/inject-ca-from"
ISSUED_BY = "metal3-pivot.lab/issued-for"     # marks Secrets this module wrote (cert-manager marks its own)


def issue(certificate: Obj) -> Obj:
    """The Secret cert-manager would write for this `Certificate` (selfSigned issuer), valid one year."""
    spec = certificate["spec"]
    key = ec.generate_private_key(ec.SECP256R1())
    orgs = (spec.get("subject") or {}).get("organizations") or []
    # cert-manager leaves the CN empty and puts the names in the SANs
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs])
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.get("dnsNames") or []]
    sans += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, True, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(key, hashes.SHA256()))
    crt = cert.public_bytes(serialization.Encoding.PEM)
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    md = certificate["metadata"]
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": spec["secretName"], "namespace": md["namespace"],
                         "annotations": {"cert-manager.io/certificate-name": md["name"],
                                         ISSUED_BY: f"{md['namespace']}/{md['name']}"}},
            "data": {k: base64.b64encode(v).decode() for k, v in
                     (("tls.crt", crt), ("tls.key", pem_key), ("ca.crt", crt))}}


def secret_files(secret: Obj) -> dict[str, bytes]:
    """A Secret's keys as the files a volume mount would show."""
    files = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    files.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return files


def ca_bundle(secret: Obj) -> str:
    """What the CA injector puts into `caBundle` (base64 of the PEM, as the API expects)."""
    return str((secret.get("data") or {})["ca.crt"])

"""WebhookCertificate: a provider's webhook serving certificate, issued by the stack as cert-manager would.

Every provider release (CAPI core, kubeadm bootstrap and control plane, CAPM3, IPAM, BMO) ships a
self-signed cert-manager `Issuer` and a `Certificate` for its webhook Service, and its Deployment mounts
the Secret that Certificate names. `clusterctl init` installs cert-manager to issue it. The stack does
not install cert-manager (one more set of controllers on every management cluster, for one Secret per
provider); this dynamic resource is the documented equivalent (docs/pulumi-layer.md): it issues what
cert-manager's selfSigned issuer would for the release's Certificate — its dnsNames and subject, a
2048-bit RSA key, valid 90 days, self-signed, so `ca.crt` is the certificate itself — and the component
declares the Secret (type kubernetes.io/tls, tls.crt / tls.key / ca.crt) from its outputs and puts
`ca.crt` into the caBundles the release asks cert-manager's CA injector to fill.

Stable across `pulumi up`s: the certificate is issued once (create) and kept in the stack's state, the
key as a Pulumi secret (encrypted in state, never printed). Renewal, as cert-manager's defaults: `diff`
asks for a replacement once fewer than `RENEW_BEFORE` (30 days) remain before `notAfter`, or when the
Certificate's names change; the Secret and caBundles follow the new outputs in the same update.

The provider keeps nothing on `self` and lives in an importable module (pickled by reference), like
ObjectLocation's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from components import engine_watch

#: in a provider plugin, notice a dead CLI (components/engine_watch.py); nothing happens elsewhere
engine_watch.start()

#: cert-manager's defaults for a Certificate that sets neither `duration` nor `renewBefore`
DURATION = dt.timedelta(days=90)
RENEW_BEFORE = dt.timedelta(days=30)

#: inputs: a change of any is a new certificate (a replace)
INPUTS = ("namespace", "secretName", "dnsNames", "organizations")
#: outputs; tlsKey is a Pulumi secret
OUTPUTS = ("tlsCrt", "tlsKey", "caCrt", "notAfter")

MODULE, NAME = "metal3", "WebhookCertificate"
TYPE = f"pulumi-python:dynamic/{MODULE}:{NAME}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def issue(dns_names: list[str], organizations: list[str], now: dt.datetime | None = None) -> dict[str, str]:
    """A self-signed serving certificate as cert-manager's selfSigned issuer makes it: no common name, the
    names as SANs (critical, since the subject may be empty), key usages digitalSignature +
    keyEncipherment, not a CA. PEM strings, and `notAfter` in ISO 8601."""
    now = now or _now()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations])
    not_after = now + DURATION
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_names]),
                           critical=not organizations)
            .sign(key, hashes.SHA256()))
    crt = cert.public_bytes(serialization.Encoding.PEM).decode()
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return {"tlsCrt": crt, "tlsKey": pem_key, "caCrt": crt,
            "notAfter": not_after.replace(microsecond=0).isoformat()}


def renewal_due(not_after: str | None, now: dt.datetime | None = None) -> bool:
    """Whether a certificate valid until `not_after` is to be replaced now (fewer than RENEW_BEFORE left;
    an unreadable or missing date counts as due: a new certificate is always safe)."""
    try:
        until = dt.datetime.fromisoformat(str(not_after))
    except ValueError:
        return True
    return (now or _now()) >= until - RENEW_BEFORE


class WebhookCertificateProvider(ResourceProvider):
    """Issue once, keep, replace when due. Nothing is written to any cluster here: the component declares
    the Secret from the outputs, so the Kubernetes provider owns it like every other object."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        names = news.get("dnsNames")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            failures.append(CheckFailure("dnsNames", "a non-empty list of DNS names (the webhook Service's)"))
        for key in ("namespace", "secretName"):
            if not isinstance(news.get(key), str) or not news[key]:
                failures.append(CheckFailure(key, f"{key} is required (the release Certificate's)"))
        return CheckResult({**news, "organizations": list(news.get("organizations") or [])}, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        inputs = {k: props.get(k) for k in INPUTS}
        issued = issue(list(props["dnsNames"]), list(props.get("organizations") or []))
        return CreateResult(id_=f"{props['namespace']}/{props['secretName']}", outs={**inputs, **issued})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [k for k in INPUTS if (olds.get(k) or None) != (news.get(k) or None)]
        if renewal_due(olds.get("notAfter")):
            replaces.append("notAfter")
        return DiffResult(changes=bool(replaces), replaces=replaces, stables=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Not reached (every change is a replace); re-issues, to be safe if it ever is."""
        return UpdateResult(outs={**{k: news.get(k) for k in INPUTS},
                                  **issue(list(news["dnsNames"]), list(news.get("organizations") or []))})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing outside the state: the Secret is its own resource."""


class WebhookCertificate(pulumi.dynamic.Resource, module=MODULE, name=NAME):
    """The serving certificate for one release `Certificate` (its namespace may be overridden, as a
    kustomize namespace would: e.g. BMO in Ironic's namespace)."""

    namespace: pulumi.Output[str]
    secretName: pulumi.Output[str]
    tlsCrt: pulumi.Output[str]
    tlsKey: pulumi.Output[str]
    caCrt: pulumi.Output[str]
    notAfter: pulumi.Output[str]

    def __init__(self, name: str, *, namespace: str, secret_name: str, dns_names: list[str],
                 organizations: list[str] | None = None, opts: pulumi.ResourceOptions | None = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["tlsKey"]))
        props: dict[str, Any] = {"namespace": namespace, "secretName": secret_name, "dnsNames": list(dns_names),
                                 "organizations": list(organizations or []), **dict.fromkeys(OUTPUTS)}
        super().__init__(WebhookCertificateProvider(), name, props, opts)

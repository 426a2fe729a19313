"""Unit tests of what the stack installs for the providers' webhooks (Pulumi mocks, no engine, no cluster).

The serving certificate is what cert-manager's selfSigned issuer would make for the release's
Certificate and renews on cert-manager's default rule; the webhook configurations and CRD conversions
are the release's with `service:` references unchanged and the stack's CA; each webhook configuration
is declared after the Deployment that serves it, each Secret before it.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from components import crdset, manifests, webhooks
from components.webhook_cert import (
    DURATION,
    RENEW_BEFORE,
    TYPE,
    WebhookCertificateProvider,
    issue,
    renewal_due,
)
from tests.kit.pulumi_mocks import mocks_on_own_loop

pytestmark = pytest.mark.unit

KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n"


class Recorder(pulumi.runtime.Mocks):
    """Records every resource, and every resource's depends_on (through a transformation on the component)."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.depends: dict[str, list[str]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        if args.typ == TYPE:   # the dynamic provider does not run under mocks: issue as its create would
            return f"{args.name}-id", WebhookCertificateProvider().create(dict(args.inputs)).outs
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}

    def transformation(self, args: pulumi.ResourceTransformationArgs) -> None:
        self.depends[args.name] = [r._name for r in (args.opts.depends_on or [])   # type: ignore[union-attr]
                                   if isinstance(r, pulumi.Resource)]


@pytest.fixture
def mocks() -> Iterator[Recorder]:
    yield from mocks_on_own_loop(Recorder())


#: how a secret value travels in the resource monitor's wire format (what mocks are handed)
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def _plain(value: Any) -> Any:
    """A value as declared; a Pulumi secret (the Secret's data, since the key is one) unwrapped."""
    return value["value"] if isinstance(value, dict) and SECRET_SIG in value else value


def declared_crds(by_type: dict[str, list[pulumi.runtime.MockResourceArgs]]) -> dict[str, dict[str, Any]]:
    """The CRDs an install declares: what its one CrdSet applies (components/crdset.py), each matching the
    digest the set shows in the state and the preview, and clusterctl's inventory CRD on its own."""
    (crds,) = by_type[crdset.TYPE]
    objs = crdset.fetch(crds.inputs["manifests"])
    assert crds.inputs["digests"] == {c["metadata"]["name"]: crdset.digest(c) for c in objs}
    assert crds.inputs["names"] == sorted(c["metadata"]["name"] for c in objs)
    alone = [r.inputs for r in by_type["kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"]]
    assert "providers.clusterctl.cluster.x-k8s.io" in {c["metadata"]["name"] for c in alone}
    assert all(c["metadata"]["name"].endswith(".clusterctl.cluster.x-k8s.io") for c in alone)
    return {c["metadata"]["name"]: c for c in [*objs, *alone]}


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


# ------------------------------------------------------------------------------------ the certificate

def test_issued_certificate_is_what_a_selfsigned_issuer_makes_for_the_release_certificate() -> None:
    now = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    names = ["capi-webhook-service.capi-system.svc", "capi-webhook-service.capi-system.svc.cluster.local"]
    out = issue(names, ["k8s-sig-cluster-lifecycle"], now=now)
    cert = _cert(out["tlsCrt"])
    assert out["caCrt"] == out["tlsCrt"]                                  # self-signed: its own CA
    assert cert.issuer == cert.subject
    assert cert.subject.rfc4514_string() == "O=k8s-sig-cluster-lifecycle"  # no CN, as cert-manager
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == names
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == DURATION
    assert out["notAfter"] == (now + DURATION).isoformat()
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    assert cert.signature_hash_algorithm is not None
    key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    assert "PRIVATE KEY" in out["tlsKey"]
    # an empty subject makes the SANs critical (RFC 5280), as cert-manager does
    bare = _cert(issue(["a.b.svc"], [], now=now)["tlsCrt"])
    assert bare.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_renewal_rule_replaces_within_30_days_of_expiry_and_otherwise_keeps() -> None:
    assert dt.timedelta(days=30) == RENEW_BEFORE
    until = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
    assert not renewal_due(until.isoformat(), now=until - dt.timedelta(days=31))
    assert renewal_due(until.isoformat(), now=until - dt.timedelta(days=30))
    assert renewal_due(until.isoformat(), now=until + dt.timedelta(days=1))
    assert renewal_due(None) and renewal_due("not a date")

    p = WebhookCertificateProvider()
    inputs = {"namespace": "capi-system", "secretName": "capi-webhook-service-cert",
              "dnsNames": ["capi-webhook-service.capi-system.svc"], "organizations": []}
    olds = p.create(inputs).outs
    assert p.diff("id", olds, inputs).changes is False                      # a second `pulumi up`: kept
    old_enough = {**olds, "notAfter": (dt.datetime.now(dt.UTC) + dt.timedelta(days=29)).isoformat()}
    renewed = p.diff("id", old_enough, inputs)
    assert renewed.changes and renewed.replaces == ["notAfter"] and not renewed.delete_before_replace
    moved = p.diff("id", olds, {**inputs, "dnsNames": ["x.y.svc"]})
    assert moved.changes and moved.replaces == ["dnsNames"]


def test_check_names_the_missing_inputs() -> None:
    result = WebhookCertificateProvider().check({}, {"namespace": "", "dnsNames": []})
    assert {f.property for f in result.failures} == {"dnsNames", "namespace", "secretName"}


# ------------------------------------------------------------------------------------ what is declared

def _outputs(mocks: Recorder) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in mocks.resources}


@pulumi.runtime.test
def test_provider_install_issues_each_release_certificate_and_declares_its_webhooks(mocks: Recorder) -> Any:
    from pathlib import Path

    from components.clusters import TargetCluster
    from components.config import ProvidersConfig
    from components.providers import ProviderInstall

    target = TargetCluster("target", KUBECONFIG)
    install = ProviderInstall("p", target, ProvidersConfig(), Path("."),
                              opts=pulumi.ResourceOptions(transformations=[mocks.transformation]))

    def verify(_: Any) -> None:
        by_type: dict[str, list[pulumi.runtime.MockResourceArgs]] = {}
        for r in mocks.resources:
            by_type.setdefault(r.typ, []).append(r)
        certs = {r.inputs["secretName"]: r for r in by_type[TYPE]}
        for spec in manifests.PROVIDERS:
            (release,) = manifests.certificates(spec)
            cert = certs[release["spec"]["secretName"]]
            assert cert.inputs["dnsNames"] == release["spec"]["dnsNames"]
            assert cert.inputs["namespace"] == spec.namespace
        assert set(certs) == {c["spec"]["secretName"] for s in manifests.PROVIDERS for c in manifests.certificates(s)}

        secrets = {r.inputs["metadata"]["name"]: r for r in by_type["kubernetes:core/v1:Secret"]}
        assert set(secrets) == set(certs)
        for name, secret in secrets.items():
            assert secret.inputs["type"] == "kubernetes.io/tls"
            assert SECRET_SIG in secret.inputs["data"]                        # the key is a Pulumi secret
            data = {k: base64.b64decode(v).decode() for k, v in _plain(secret.inputs["data"]).items()}
            assert data["tls.crt"] == data["ca.crt"] == certs[name].inputs.get("tlsCrt", data["tls.crt"])
            assert _cert(data["tls.crt"]).extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == certs[name].inputs["dnsNames"]
            # the Secret is declared before the Deployment that mounts it
        ca_of = {s.inputs["metadata"]["annotations"][webhooks.ISSUED_FOR]: _plain(s.inputs["data"])["ca.crt"]
                 for s in secrets.values()}

        configs = by_type["kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration"] + \
            by_type["kubernetes:admissionregistration.k8s.io/v1:MutatingWebhookConfiguration"]
        released = {o["metadata"]["name"]: o for s in manifests.PROVIDERS for o in manifests.webhook_configurations(s)}
        assert {c.inputs["metadata"]["name"] for c in configs} == set(released)
        for c in configs:
            rel = released[c.inputs["metadata"]["name"]]
            ref = rel["metadata"]["annotations"][manifests.INJECT_CA_FROM]
            assert manifests.INJECT_CA_FROM not in (c.inputs["metadata"].get("annotations") or {})
            for hook, rel_hook in zip(c.inputs["webhooks"], rel["webhooks"], strict=True):
                assert hook["clientConfig"]["service"] == rel_hook["clientConfig"]["service"]   # not re-pointed
                assert hook["clientConfig"]["caBundle"] == ca_of[ref]
                assert hook["failurePolicy"] == rel_hook["failurePolicy"]
            # declared after the Deployment (and Service) of its provider
            deps = mocks.depends[c.name]
            assert any("-deployment-" in d for d in deps) and any("-service-" in d for d in deps)
            namespace = rel["webhooks"][0]["clientConfig"]["service"]["namespace"]
            assert all(f"-{namespace}-" in d for d in deps)

        crds = declared_crds(by_type)
        conversions = {n: c for s in manifests.PROVIDERS for n, c in manifests.conversions(s).items()}
        assert len(conversions) == 28
        for name, (ref, conv) in conversions.items():
            got = crds[name]["spec"]["conversion"]
            assert got["strategy"] == "Webhook"
            assert got["webhook"]["clientConfig"]["service"] == conv["webhook"]["clientConfig"]["service"]
            assert got["webhook"]["clientConfig"]["caBundle"] == ca_of[ref]
        # Deployments come after the serving Secrets
        for r in by_type["kubernetes:apps/v1:Deployment"]:
            ns = r.inputs["metadata"]["namespace"]
            assert any(d.startswith(f"p-secret-{ns}-") for d in mocks.depends[r.name]), r.name

    return pulumi.Output.all(*[r.urn for r in install.resources]).apply(verify)


@pulumi.runtime.test
def test_ironic_carries_bmo_webhook_into_its_namespace_after_bmo(mocks: Recorder) -> Any:
    from components.clusters import TargetCluster
    from components.config import IronicConfig
    from components.ironic import Ironic

    target = TargetCluster("target", KUBECONFIG)
    ironic = Ironic("ironic", target.provider, IronicConfig(namespace="metal3"), "target",
                    opts=pulumi.ResourceOptions(transformations=[mocks.transformation]))

    def verify(_: Any) -> None:
        (cert,) = [r for r in mocks.resources if r.typ == TYPE]
        assert cert.inputs["namespace"] == "metal3" and cert.inputs["secretName"] == "bmo-webhook-server-cert"
        assert cert.inputs["dnsNames"] == ["baremetal-operator-webhook-service.metal3.svc",
                                           "baremetal-operator-webhook-service.metal3.svc.cluster.local"]
        (config,) = [r for r in mocks.resources if r.typ.endswith("ValidatingWebhookConfiguration")]
        hook = config.inputs["webhooks"][0]
        assert hook["clientConfig"]["service"]["namespace"] == "metal3"
        assert hook["clientConfig"]["service"]["name"] == "baremetal-operator-webhook-service"
        (secret,) = [r for r in mocks.resources if r.typ == "kubernetes:core/v1:Secret"]
        assert hook["clientConfig"]["caBundle"] == _plain(secret.inputs["data"])["ca.crt"]
        assert "ironic-deployment-metal3-baremetal-operator-controller-manager" in mocks.depends[config.name]
        assert "ironic-secret-metal3-bmo-webhook-server-cert" in mocks.depends[
            "ironic-deployment-metal3-baremetal-operator-controller-manager"]

    return pulumi.Output.all(*[r.urn for r in ironic.resources]).apply(verify)


def test_configured_leaves_certificates_the_stack_does_not_issue_alone() -> None:
    obj = {"kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "x", "annotations": {manifests.INJECT_CA_FROM: "ns/other"}},
           "webhooks": [{"clientConfig": {"service": {"name": "s", "namespace": "ns"}}}]}
    assert webhooks.configured(obj, {"ns/mine": "CA"}, "ns", "ns") is None
    done = webhooks.configured(obj, {"ns/other": "CA"}, "ns", "new")
    assert done is not None and "annotations" not in done["metadata"]
    assert done["webhooks"][0]["clientConfig"] == {"service": {"name": "s", "namespace": "new"}, "caBundle": "CA"}
    assert obj["metadata"]["annotations"]                                 # the release object is untouched


@pulumi.runtime.test
def test_without_anything_running_the_deployments_no_webhook_is_declared(mocks: Recorder,
                                                                         monkeypatch: pytest.MonkeyPatch) -> Any:
    """skipAwait without awaitDeployments (the lab's clusters without the live plane): a Fail webhook nobody
    serves would refuse every write of its kinds, so configurations and conversions stay out; the
    certificates and Secrets are declared as always."""
    from components import objects
    from components.clusters import TargetCluster
    from components.config import IronicConfig
    from components.ironic import Ironic

    monkeypatch.setitem(objects.SKIP_AWAIT, "value", True)
    monkeypatch.setitem(objects.SKIP_AWAIT, "deployments", False)
    assert not objects.servers_awaited()
    served = webhooks.serve("p", manifests.PROVIDERS[0], pulumi.ResourceOptions())
    assert served.secrets and not served.configurations and not served.conversions
    target = TargetCluster("target", KUBECONFIG)
    ironic = Ironic("ironic", target.provider, IronicConfig(), "target")

    def verify(_: Any) -> None:
        assert not [r for r in mocks.resources if r.typ.endswith("WebhookConfiguration")]
        assert [r for r in mocks.resources if r.typ == "kubernetes:core/v1:Secret"]
    return pulumi.Output.all(*[r.urn for r in ironic.resources]).apply(verify)


@pulumi.runtime.test
def test_adopting_providers_takes_over_their_webhook_secrets_and_configurations_too(mocks: Recorder) -> Any:
    """clusterctl init + cert-manager put Secrets and webhook configurations of the same names on a target:
    with `providers.adopt` they are taken over (patchForce) like the Deployments, not left to conflict."""
    from pathlib import Path

    from components.clusters import TargetCluster
    from components.config import ProvidersConfig
    from components.providers import ProviderInstall

    target = TargetCluster("target", KUBECONFIG)
    install = ProviderInstall("p", target, ProvidersConfig(adopt=True), Path("."))

    def verify(_: Any) -> None:
        hooked = [r for r in mocks.resources if r.typ in ("kubernetes:core/v1:Secret",
                                                          "kubernetes:admissionregistration.k8s.io/v1:"
                                                          "ValidatingWebhookConfiguration")]
        assert hooked
        assert all(r.inputs["metadata"]["annotations"]["pulumi.com/patchForce"] == "true" for r in hooked)

    return pulumi.Output.all(*[r.urn for r in install.resources]).apply(verify)


@pulumi.runtime.test
def test_components_files_get_the_stacks_certificates_instead_of_cert_managers(mocks: Recorder, tmp_path: Any) -> Any:
    """`providers.source` as release components files: what cert-manager would do for them (a Certificate
    and Issuer each, webhook configurations and CRD conversions asking for its CA) the stack does as for the
    pinned modules: the same certificates, Secrets, configurations and conversions, and no cert-manager
    object declared."""
    import shutil
    from pathlib import Path

    from components.clusters import TargetCluster
    from components.config import ProvidersConfig
    from components.providers import ProviderInstall

    files = []
    for spec in manifests.PROVIDERS:
        manifests.rendered(spec)
        path = tmp_path / f"{spec.name}-components.yaml"
        shutil.copy(manifests.RENDER_CACHE / f"{spec.name}-{manifests.version(spec)}.yaml", path)
        files.append({"path": str(path), "name": spec.provider_name, "type": spec.type,
                      "version": manifests.version(spec)})
    target = TargetCluster("target", KUBECONFIG)
    install = ProviderInstall("p", target, ProvidersConfig.model_validate({"source": files}), Path("."),
                              opts=pulumi.ResourceOptions(transformations=[mocks.transformation]))

    def verify(_: Any) -> None:
        by_type: dict[str, list[pulumi.runtime.MockResourceArgs]] = {}
        for r in mocks.resources:
            by_type.setdefault(r.typ, []).append(r)
        assert not [t for t in by_type if t.startswith("kubernetes:cert-manager.io")]
        certs = {r.inputs["secretName"]: r for r in by_type[TYPE]}
        assert set(certs) == {c["spec"]["secretName"] for s in manifests.PROVIDERS for c in manifests.certificates(s)}
        secrets = {r.inputs["metadata"]["name"]: r for r in by_type["kubernetes:core/v1:Secret"]}
        assert set(certs) <= set(secrets)
        ca_of = {s.inputs["metadata"]["annotations"][webhooks.ISSUED_FOR]: _plain(s.inputs["data"])["ca.crt"]
                 for s in secrets.values() if webhooks.ISSUED_FOR in (s.inputs["metadata"].get("annotations") or {})}
        configs = by_type["kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration"] + \
            by_type["kubernetes:admissionregistration.k8s.io/v1:MutatingWebhookConfiguration"]
        released = {o["metadata"]["name"]: o for s in manifests.PROVIDERS for o in manifests.webhook_configurations(s)}
        assert sorted(c.inputs["metadata"]["name"] for c in configs) == sorted(released)
        for c in configs:
            ref = released[c.inputs["metadata"]["name"]]["metadata"]["annotations"][manifests.INJECT_CA_FROM]
            assert manifests.INJECT_CA_FROM not in (c.inputs["metadata"].get("annotations") or {})
            assert all(h["clientConfig"]["caBundle"] == ca_of[ref] for h in c.inputs["webhooks"])
            assert c.inputs["metadata"]["labels"][manifests.CLUSTERCTL] == ""
        crds = declared_crds(by_type)
        conversions = {n: c for s in manifests.PROVIDERS for n, c in manifests.conversions(s).items()}
        for name, (ref, _) in conversions.items():
            assert crds[name]["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"] == ca_of[ref]
            assert manifests.INJECT_CA_FROM not in (crds[name]["metadata"].get("annotations") or {})

    return pulumi.Output.all(*[r.urn for r in install.resources]).apply(verify)

"""The management plane's rewriting rules, without a cluster: every webhook of every provider's release
config is pointed at loopback with the lab-issued CA, and the issued Secret is shaped as cert-manager's."""

from __future__ import annotations

import base64
import ipaddress

import pytest
from cryptography import x509

from lab.plane import certs, webhooks
from lab.plane.managers import PROVIDERS, PlaneError, binary_for, release_of, substitute

pytestmark = pytest.mark.unit

CA = base64.b64encode(b"not a real CA").decode()


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_every_release_webhook_is_served_on_loopback(provider: str) -> None:
    release = release_of(provider)
    cert = next(o for o in release if o["kind"] == "Certificate")
    ref = f"{cert['metadata']['namespace']}/{cert['metadata']['name']}"
    configs = webhooks.webhook_configurations(release, ref, 12345, CA)
    in_release = [h for o in release if o["kind"] in webhooks.WEBHOOK_KINDS for h in o["webhooks"]]
    served = [h for c in configs for h in c["webhooks"]]
    assert in_release and len(served) == len(in_release)
    for hook in served:
        cc = hook["clientConfig"]
        assert set(cc) == {"url", "caBundle"} and cc["caBundle"] == CA
        assert cc["url"].startswith("https://127.0.0.1:12345/"), cc
        assert hook["failurePolicy"] == "Fail"      # the release's, kept
    conversions = webhooks.conversion_patches(release, ref, 12345, CA)
    for patch in conversions.values():
        assert patch["spec"]["conversion"]["webhook"]["clientConfig"]["url"] == "https://127.0.0.1:12345/convert"
    if provider == "cluster-api":
        assert "clusters.cluster.x-k8s.io" in conversions and "machines.cluster.x-k8s.io" in conversions


def test_the_issued_secret_is_shaped_as_cert_managers() -> None:
    cert_obj = next(o for o in release_of("cluster-api") if o["kind"] == "Certificate")
    secret = certs.issue(cert_obj)
    assert secret["type"] == "kubernetes.io/tls" and secret["metadata"]["name"] == cert_obj["spec"]["secretName"]
    files = certs.secret_files(secret)
    assert set(files) == {"tls.crt", "tls.key", "ca.crt"} and files["ca.crt"] == files["tls.crt"]
    crt = x509.load_pem_x509_certificate(files["tls.crt"])
    sans = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(cert_obj["spec"]["dnsNames"]) <= set(sans.get_values_for_type(x509.DNSName))
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert certs.ca_bundle(secret) == secret["data"]["ca.crt"]


def test_images_map_to_the_binaries_bootstrap_builds() -> None:
    assert binary_for("registry.k8s.io/cluster-api/cluster-api-controller:v1.14.2") == "capi-manager"
    assert binary_for("quay.io/metal3-io/baremetal-operator@sha256:0123") == "baremetal-operator"
    assert binary_for("quay.io/metal3-io/ironic:latest") is None


def test_variables_are_substituted_as_clusterctl_does() -> None:
    assert substitute("--feature-gates=A=${EXP_A:=true},B=${EXP_B:=false}", {"EXP_B": "true"}) == \
        "--feature-gates=A=true,B=true"
    with pytest.raises(PlaneError, match="NO_DEFAULT"):
        substitute("${NO_DEFAULT}", {})

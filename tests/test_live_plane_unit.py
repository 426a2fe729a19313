"""The management plane's rules, without a cluster: every webhook of every provider's release config is
installed with its `service:` reference unchanged and the lab-issued CA, the issued Secret is shaped as
cert-manager's, and a Service selecting a Pod gets an EndpointSlice at the host's address."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509

from lab.plane import certs, endpoints, webhooks
from lab.plane.managers import PROVIDERS, PlaneError, binary_for, release_of, substitute

pytestmark = pytest.mark.unit

CA = base64.b64encode(b"not a real CA").decode()


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_every_release_webhook_keeps_its_service_and_gets_the_ca(provider: str) -> None:
    release = release_of(provider)
    cert = next(o for o in release if o["kind"] == "Certificate")
    ref = f"{cert['metadata']['namespace']}/{cert['metadata']['name']}"
    configs = webhooks.webhook_configurations(release, ref, CA)
    in_release = [h for o in release if o["kind"] in webhooks.WEBHOOK_KINDS for h in o["webhooks"]]
    served = [h for c in configs for h in c["webhooks"]]
    assert in_release and len(served) == len(in_release)
    for hook, released in zip(served, in_release, strict=True):
        cc = hook["clientConfig"]
        assert set(cc) == {"service", "caBundle"} and cc["caBundle"] == CA
        assert cc["service"] == released["clientConfig"]["service"]
        assert hook["failurePolicy"] == "Fail"      # the release's, kept
    conversions = webhooks.conversion_patches(release, ref, CA)
    for patch in conversions.values():
        cc = patch["spec"]["conversion"]["webhook"]["clientConfig"]
        assert cc["service"]["path"] == "/convert" and cc["caBundle"] == CA
    if provider == "cluster-api":
        assert "clusters.cluster.x-k8s.io" in conversions and "machines.cluster.x-k8s.io" in conversions
    services = webhooks.webhook_services(release)
    assert [s["metadata"]["name"] for s in services] == [
        released["clientConfig"]["service"]["name"] for released in in_release[:1]]


def test_the_issued_secret_is_shaped_as_cert_managers() -> None:
    cert_obj = next(o for o in release_of("cluster-api") if o["kind"] == "Certificate")
    secret = certs.issue(cert_obj)
    assert secret["type"] == "kubernetes.io/tls" and secret["metadata"]["name"] == cert_obj["spec"]["secretName"]
    files = certs.secret_files(secret)
    assert set(files) == {"tls.crt", "tls.key", "ca.crt"} and files["ca.crt"] == files["tls.crt"]
    crt = x509.load_pem_x509_certificate(files["tls.crt"])
    sans = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == cert_obj["spec"]["dnsNames"]   # no loopback SAN needed
    assert not sans.get_values_for_type(x509.IPAddress)
    assert certs.ca_bundle(secret) == secret["data"]["ca.crt"]


def test_a_pod_gets_a_slice_in_each_service_that_selects_it() -> None:
    release = release_of("ipam-metal3")
    service = next(o for o in release if o["kind"] == "Service")         # targetPort: ipam-webhook (a name)
    labels = next(o for o in release if o["kind"] == "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert endpoints.selects(service, labels) and not endpoints.selects(service, {"other": "pod"})
    es = endpoints.slice_for(service, {9443: 40001, "ipam-webhook": 40001}, "192.0.2.2", "ipam-lab")
    assert es is not None
    assert es["metadata"]["labels"] == {endpoints.SERVICE_NAME: "ipam-webhook-service",
                                        endpoints.MANAGED_BY: endpoints.LAB}
    assert es["ports"] == [{"name": "", "port": 40001, "protocol": "TCP"}]   # the Service port's name: none
    assert es["endpoints"][0]["addresses"] == ["192.0.2.2"]
    assert endpoints.slice_for(service, {8443: 1}, "192.0.2.2", "x") is None          # serves none of its ports


def test_only_addresses_the_api_accepts_as_pod_ips_are_used() -> None:
    assert endpoints.usable("192.0.2.2") and endpoints.usable("10.1.2.3")
    for bad in ("127.0.0.1", "169.254.1.1", "0.0.0.0", "::1", "fe80::1", "nonsense"):
        assert not endpoints.usable(bad)
    assert endpoints.usable(endpoints.host_address())


def test_images_map_to_the_binaries_bootstrap_builds() -> None:
    assert binary_for("registry.k8s.io/cluster-api/cluster-api-controller:v1.14.2") == "capi-manager"
    assert binary_for("quay.io/metal3-io/baremetal-operator@sha256:0123") == "baremetal-operator"
    assert binary_for("quay.io/metal3-io/ironic:latest") is None


def test_variables_are_substituted_as_clusterctl_does() -> None:
    assert substitute("--feature-gates=A=${EXP_A:=true},B=${EXP_B:=false}", {"EXP_B": "true"}) == \
        "--feature-gates=A=true,B=true"
    with pytest.raises(PlaneError, match="NO_DEFAULT"):
        substitute("${NO_DEFAULT}", {})


def test_a_changed_mounted_secret_restarts_the_process_like_a_changed_template() -> None:
    from lab.plane.runner import mounted_secrets, template_hash

    d = next(o for o in release_of("cluster-api") if o["kind"] == "Deployment")
    assert mounted_secrets(d) == ["capi-webhook-service-cert"]
    ns = d["metadata"]["namespace"]
    before = template_hash(d, {f"{ns}/capi-webhook-service-cert": "100"})
    assert template_hash(d, {f"{ns}/capi-webhook-service-cert": "100", "other/secret": "7"}) == before
    assert template_hash(d, {f"{ns}/capi-webhook-service-cert": "101"}) != before     # re-issued: a new "Pod"
    changed = {**d, "spec": {**d["spec"], "template": {**d["spec"]["template"], "metadata": {"labels": {}}}}}
    assert template_hash(changed, {f"{ns}/capi-webhook-service-cert": "100"}) != before

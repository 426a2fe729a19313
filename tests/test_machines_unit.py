"""The machine agent's reading of user data, and the lab's PKI with a given CA: no cluster, no process.

What cloud-init would do with CABPK's cloud-config (render `{{ ds.meta_data.* }}`, decode write_files,
find the kubeadm command), BMO's meta_data defaults, kubeadm's CA hash, and a local cluster's
certificates signed by a CA it was given (the workload cluster's `<cluster>-ca`).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lab.cluster import _cert, _name, write_pki
from lab.data.topology import LiveTopology, TopologyError, live_objects
from lab.machines.bmc import LocalBmcs
from lab.machines.node_agent import MachineError, ca_cert_hash, meta_data_for, parse_user_data, render

pytestmark = pytest.mark.unit

BMH = {"metadata": {"name": "node-0", "namespace": "metal3", "uid": "0b6f3b5e-1111-4222-8333-444455556666"}}

CLOUD_CONFIG = """## template: jinja
#cloud-config

write_files:
-   path: /etc/kubernetes/pki/ca.crt
    owner: root:root
    permissions: '0640'
    content: |
      CERT
-   path: /etc/blob
    encoding: gzip+base64
    content: {blob}
-   path: /etc/b64
    encoding: b64
    content: {b64}
-   path: /run/kubeadm/kubeadm.yaml
    owner: root:root
    permissions: '0640'
    content: |
      ---
      apiVersion: kubeadm.k8s.io/v1beta4
      kind: ClusterConfiguration
      clusterName: test1
      controlPlaneEndpoint: 127.0.0.1:6443
      kubernetesVersion: v1.34.1
      ---
      apiVersion: kubeadm.k8s.io/v1beta4
      kind: InitConfiguration
      nodeRegistration:
        kubeletExtraArgs:
        - name: node-labels
          value: metal3.io/uuid={{{{ ds.meta_data.uuid }}}}
        name: '{{{{ ds.meta_data.name }}}}'
runcmd:
  - 'rm /etc/cni/net.d/* || true'
  - 'kubeadm init --config /run/kubeadm/kubeadm.yaml  && echo success > /run/cluster-api/bootstrap-success.complete'
"""


def cloud_config() -> str:
    return CLOUD_CONFIG.format(blob=base64.b64encode(gzip.compress(b"zipped")).decode(),
                               b64=base64.b64encode(b"plain bytes").decode())


def test_meta_data_is_bmos_defaults_overlaid_with_the_rendered_secret() -> None:
    meta = meta_data_for(BMH, "name: test1-abcde\nexternalv4IP: 192.168.111.100\n")
    assert meta["uuid"] == BMH["metadata"]["uid"]
    assert meta["metal3-name"] == "node-0" and meta["metal3-namespace"] == "metal3"
    assert meta["local-hostname"] == "node-0"
    assert meta["name"] == "test1-abcde"            # CAPM3's metaData wins over BMO's default
    assert meta["externalv4IP"] == "192.168.111.100"


def test_init_user_data_is_rendered_decoded_and_understood() -> None:
    meta = meta_data_for(BMH, "name: test1-abcde\n")
    ud = parse_user_data(render(cloud_config(), meta))
    assert (ud.command, ud.config_path, ud.control_plane) == ("init", "/run/kubeadm/kubeadm.yaml", False)
    assert ud.files["/etc/blob"] == b"zipped" and ud.files["/etc/b64"] == b"plain bytes"
    assert ud.files["/etc/kubernetes/pki/ca.crt"] == b"CERT\n"
    docs = ud.kubeadm_documents()
    registration = docs["InitConfiguration"]["nodeRegistration"]
    assert registration["name"] == "test1-abcde"
    assert registration["kubeletExtraArgs"][0]["value"] == f"metal3.io/uuid={BMH['metadata']['uid']}"
    assert docs["ClusterConfiguration"]["controlPlaneEndpoint"] == "127.0.0.1:6443"


def test_user_data_without_the_jinja_header_is_left_as_is() -> None:
    text = cloud_config().replace("## template: jinja\n", "")
    assert "{{ ds.meta_data.name }}" in render(text, {"name": "x"})


def test_a_missing_meta_data_key_and_a_missing_kubeadm_command_fail_with_the_reason() -> None:
    with pytest.raises(MachineError, match=r"ds\.meta_data\.uuid"):
        render(cloud_config(), {"name": "x"})
    with pytest.raises(MachineError, match="neither `kubeadm init` nor `kubeadm join`"):
        parse_user_data("#cloud-config\nruncmd:\n  - echo hi\n")


def test_a_join_is_recognised_with_its_config() -> None:
    ud = parse_user_data("#cloud-config\nruncmd:\n"
                         "  - [kubeadm, join, --config, /run/kubeadm/kubeadm-join-config.yaml]\n")
    assert (ud.command, ud.config_path) == ("join", "/run/kubeadm/kubeadm-join-config.yaml")
    with pytest.raises(MachineError, match="does not write"):
        ud.kubeadm_documents()


def _rsa_ca() -> tuple[bytes, bytes, rsa.RSAPrivateKey]:
    """A CA like KCP's `<cluster>-ca`: RSA 2048, PKCS#1 PEM key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _name("kubernetes")
    cert = _cert(name, key, name, key, ca=True)  # type: ignore[arg-type]
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()), key)


def test_kubeadms_ca_hash_is_the_sha256_of_the_public_key_info() -> None:
    crt, _, key = _rsa_ca()
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert ca_cert_hash(crt) == "sha256:" + hashlib.sha256(spki).hexdigest()


def test_a_cluster_pki_can_be_signed_by_a_given_ca(tmp_path: Path) -> None:
    crt, key_pem, key = _rsa_ca()
    write_pki(tmp_path, (crt, key_pem))
    assert (tmp_path / "ca.crt").read_bytes() == crt and (tmp_path / "ca.key").read_bytes() == key_pem
    for leaf in ("serving.crt", "admin.crt"):
        cert = x509.load_pem_x509_certificate((tmp_path / leaf).read_bytes())
        assert cert.issuer == x509.load_pem_x509_certificate(crt).subject
        key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                                cert.signature_hash_algorithm)  # type: ignore[arg-type]
    # what a client holding only the given CA does: trust the serving certificate
    ctx = ssl.create_default_context(cadata=crt.decode())
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_live_objects_fit_the_rack(tmp_path: Path) -> None:
    rack = LocalBmcs("rack", tmp_path, count=2, redfish_port=8000, http_port=8080)
    objs = live_objects(LiveTopology(api_port=6443), rack)
    hosts = [o for o in objs if o["kind"] == "BareMetalHost"]
    assert [h["spec"]["bmc"]["address"] for h in hosts] == [rack.address(s) for s in rack.systems]
    assert all(h["metadata"]["annotations"]["inspect.metal3.io"] == "disabled" for h in hosts)
    assert not any("status" in o for o in objs), "the controllers write the statuses"
    kinds = [o["kind"] for o in objs]
    assert kinds.index("Cluster") < kinds.index("KubeadmControlPlane") and "MachineDeployment" in kinds
    with pytest.raises(TopologyError, match="has 2 machines"):
        live_objects(LiveTopology(api_port=6443, workers=2), rack)

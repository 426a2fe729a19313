"""tools/preview_config.py: the PR preview stack's config keeps what a PR may change, drops every secret."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools.preview_config import preview_config

pytestmark = pytest.mark.unit

STACK = """
encryptionsalt: v1:abc
config:
  metal3-pivot:location: target
  metal3-pivot:ephemeral:
    kubeconfig: {secure: v1:AAAA}
    context: kind-kind
  metal3-pivot:target:
    kubeconfigPath: /home/op/.kube/target
  metal3-pivot:bmcPassword: {secure: v1:BBBB}
  metal3-pivot:ironic:
    provisioningIp: 172.22.0.2
    token: {secure: v1:CCCC}
  metal3-pivot:namespaces: [metal3]
"""


def test_secrets_and_admin_kubeconfigs_are_dropped(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.lab.yaml"
    stack.write_text(STACK)
    out = preview_config(stack, tmp_path / "e.ro", tmp_path / "t.ro")["config"]
    text = yaml.safe_dump(out)
    assert "secure" not in text and "AAAA" not in text and "encryptionsalt" not in text
    assert out["metal3-pivot:location"] == "target" and out["metal3-pivot:namespaces"] == ["metal3"]
    assert out["metal3-pivot:ironic"] == {"provisioningIp": "172.22.0.2"}
    assert "metal3-pivot:bmcPassword" not in out
    assert out["metal3-pivot:ephemeral"] == {"kubeconfigPath": str((tmp_path / "e.ro").resolve())}
    assert out["metal3-pivot:target"] == {"kubeconfigPath": str((tmp_path / "t.ro").resolve())}

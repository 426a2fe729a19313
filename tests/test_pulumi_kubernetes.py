"""The real pulumi CLI + our language host + the built kubernetes plugin against a real local cluster.

Run by `make test` inside a network namespace with only loopback (tools/offline), so a plugin download
attempt would fail the run; the test also asserts that isolation when it is in force.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lab.cluster import LocalCluster
from tests.kit.env import tool_env
from tests.kit.pulumi_cli import PulumiProject

pytestmark = [pytest.mark.pulumi, pytest.mark.cluster]

PROGRAM = """
    import pulumi
    import pulumi_kubernetes as k8s

    cfg = pulumi.Config()
    provider = k8s.Provider("ephemeral", kubeconfig=cfg.require_secret("kubeconfig"),
                            cluster_identifier="ephemeral")
    opts = pulumi.ResourceOptions(provider=provider)
    ns = k8s.core.v1.Namespace("ns", metadata={"name": "m3p-basic"}, opts=opts)
    k8s.core.v1.Secret("bmc", metadata={"name": "node-0-bmc-secret", "namespace": ns.metadata.name},
                       string_data={"username": "admin", "password": cfg.require_secret("bmcPassword")},
                       opts=opts)
"""

BMC_PASSWORD = "bmc-pw-9f3e2a-do-not-print"


def offline() -> bool:
    try:
        socket.create_connection(("proxy.golang.org", 443), timeout=3).close()
    except OSError:
        return True
    return False


def kubectl(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args], env=tool_env(),
                          capture_output=True, text=True, timeout=60)


def test_preview_up_noop_destroy_offline(tmp_path: Path, fresh_clusters) -> None:
    if os.environ.get("METAL3_PIVOT_OFFLINE") == "1":
        assert offline(), "tools/offline should have cut every route out"
    cluster = fresh_clusters(("ephemeral",), with_crds=False)["ephemeral"]
    project = PulumiProject.create(tmp_path / "proj", "k8s-basic", PROGRAM)
    # automatic plugin acquisition stays ON: with no route out, any download attempt would fail the run
    project.env_extra["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "false"
    kubeconfig = cluster.kubeconfig.read_text()
    project.set_config("kubeconfig", kubeconfig, secret=True)
    project.set_config("bmcPassword", BMC_PASSWORD, secret=True)

    preview = project.run("preview", "--diff", check=True)
    assert "+ 4 to create" in preview.output, preview.output
    project.run("up", "--yes", check=True)
    assert kubectl(cluster, "get", "secret", "-n", "m3p-basic", "node-0-bmc-secret").returncode == 0
    again = project.run("up", "--yes", "--expect-no-changes", check=True)
    assert "4 unchanged" in again.output

    start = time.monotonic()
    project.run("destroy", "--yes", check=True)
    took = time.monotonic() - start
    assert took < 60, f"destroy took {took:.0f} s: is the namespace controller running?"
    gone = kubectl(cluster, "get", "namespace", "m3p-basic")
    assert gone.returncode != 0 and "NotFound" in gone.stderr

    everything = project.all_text()
    assert not any("downloading" in r.output.lower() for r in project.transcript)
    client_key = next(line.split(":", 1)[1].strip() for line in kubeconfig.splitlines()
                      if "client-key-data" in line)
    assert client_key[:40] not in everything
    assert BMC_PASSWORD not in everything

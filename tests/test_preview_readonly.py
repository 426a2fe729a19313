"""PR previews with read-only rights: `pulumi preview` of the local stack, as the PR workflow runs it.

The identity is docs/preview-rbac.yaml's ServiceAccount (get/list/watch only), applied to both lab
clusters; its token comes from the TokenRequest API; the preview stack's config is written from
stacks/Pulumi.local.yaml by tools/preview_config.py, with local state and a throw-away passphrase, as
.github/workflows/preview.yml does. The preview of the pivot must work (pre-flight, counts, policies)
and write nothing; an `up` with the same rights must be refused by the API server (the rights really
are read-only).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml

from lab.cli import seed_cluster
from lab.cluster import LocalCluster, kube_for
from metal3_pivot.kube import ResourceType
from tests.kit.env import PROGRAM, ROOT
from tests.kit.move import TOPOLOGY, deployments, resource_versions
from tests.kit.pulumi_cli import PulumiProject
from tools.preview_config import preview_config

pytestmark = [pytest.mark.pulumi, pytest.mark.cluster]

RBAC = ROOT / "docs" / "preview-rbac.yaml"
KINDS = {
    "Namespace": ResourceType("", "v1", "Namespace", "namespaces", namespaced=False),
    "ServiceAccount": ResourceType("", "v1", "ServiceAccount", "serviceaccounts"),
    "ClusterRole": ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    "ClusterRoleBinding": ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding",
                                       "clusterrolebindings", namespaced=False),
}


def read_only_kubeconfig(cluster: LocalCluster, out: Path) -> Path:
    """Apply the preview RBAC with the admin kubeconfig, then a kubeconfig for the ServiceAccount's token."""
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]

    async def go() -> str:
        async with kube_for(cluster) as k:
            for d in docs:
                await k.create(KINDS[d["kind"]], d)
            sa = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]
            path = f"/api/v1/namespaces/{sa['namespace']}/serviceaccounts/{sa['name']}/token"
            answer = await k.request("POST", path, body={"apiVersion": "authentication.k8s.io/v1",
                                                         "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
            assert answer is not None
            return str(answer["status"]["token"])
    token = asyncio.run(go())
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    out.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "preview",
        "clusters": admin["clusters"],
        "users": [{"name": "pulumi-preview", "user": {"token": token}}],
        "contexts": [{"name": "preview", "context": {"cluster": admin["clusters"][0]["name"],
                                                     "user": "pulumi-preview"}}]}))
    out.chmod(0o600)
    return out


def test_the_preview_works_with_read_only_rights_and_writes_nothing(fresh_clusters, tmp_path: Path) -> None:
    eph = fresh_clusters(("ephemeral",))["ephemeral"]
    tgt = fresh_clusters(("target",), with_crds=False)["target"]      # a bare target: the stack would install it
    asyncio.run(seed_cluster(eph, TOPOLOGY))
    ro = {c.name: read_only_kubeconfig(c, tmp_path / f"{c.name}.ro") for c in (eph, tgt)}

    p = PulumiProject.create(tmp_path / "proj", "metal3-pivot", PROGRAM, stack="pr-preview")
    config = preview_config(ROOT / "stacks" / "Pulumi.local.yaml", ro["ephemeral"], ro["target"])
    assert not any("secure" in str(v) for v in config["config"].values())
    config["config"]["metal3-pivot:location"] = "target"           # the pull request proposes the pivot
    (p.directory / "Pulumi.pr-preview.yaml").write_text(yaml.safe_dump(config))

    before = {c.name: (resource_versions(c), deployments(c)) for c in (eph, tgt)}
    preview = p.run("preview", "--diff", "--policy-pack", str(ROOT / "policies"))
    assert preview.returncode == 0, preview.output[-4000:]
    hosts = TOPOLOGY.clusters * (TOPOLOGY.control_planes + TOPOLOGY.workers + TOPOLOGY.spare_hosts)
    (p.directory / "preview.out").write_text(preview.output)
    assert re.search(rf"BareMetalHost\s*: {hosts}\b", preview.output), preview.output[:6000]
    # pulumi-kubernetes' server-side dry run needs patch/create: refused, it falls back to a client-side
    # preview of the object and says so in one info line (tried with both apply modes: both dry-run)
    assert "is forbidden" in preview.output
    assert "Policy Packs run:" in preview.output and "metal3-pivot|local|" in preview.output
    assert {c.name: (resource_versions(c), deployments(c)) for c in (eph, tgt)} == before

    up = p.run("up", "--yes", "--skip-preview")
    (p.directory / "up.out").write_text(up.output)
    assert up.returncode != 0 and "forbidden" in up.output.lower(), up.output[-3000:]
    assert {c.name: (resource_versions(c), deployments(c)) for c in (eph, tgt)} == before
    assert "client-key-data" not in p.all_text()


def test_the_pr_workflow_gets_read_only_rights_and_forks_nothing() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/preview.yml").read_text())
    text = (ROOT / ".github/workflows/preview.yml").read_text()
    triggers = workflow[True]                      # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"pull_request"}          # never pull_request_target (secrets with PR code)
    paths = triggers["pull_request"]["paths"]
    assert {"pyproject.toml", "tools/versions.toml", "__main__.py", "components/**", "policies/**",
            "tools/bootstrap.py", "langhost/**"} <= set(paths)
    job = workflow["jobs"]["preview"]
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    # the real stack's passphrase and backend never reach the job; only the read-only kubeconfigs do
    secrets = set(re.findall(r"\$\{\{ secrets\.(\w+)", text))
    assert secrets == {"PREVIEW_EPHEMERAL_KUBECONFIG", "PREVIEW_TARGET_KUBECONFIG", "GITHUB_TOKEN"}
    rules = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] == "ClusterRole")["rules"]
    assert {v for r in rules for v in r["verbs"]} == {"get", "list", "watch"}

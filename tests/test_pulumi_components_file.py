"""`providers.source` with release components files, in a real `pulumi preview` (issue 16, item 2).

The files are built from the pinned modules exactly as a release's `*-components.yaml` is: the kustomize
render of each provider's config/default, clusterctl's `${VAR:=default}` variables left in. One of them
is given a variable without a default (the bootstrap provider's token TTL), as some providers' releases
have: the preview stops before anything is declared, naming it and how to set it. Once it is set (stack
config) and another value comes from the environment, the preview of a pivot onto a bare target passes
the policy pack (the inventory rule: every provider of the ephemeral cluster is declared on the target,
at least as new) and declares what `clusterctl init` would install from those files: values
substituted, no `${` left in any object, clusterctl's labels on every object of the files, one
`Provider` inventory object per file. Nothing is written to either cluster.

Then `pulumi up` (location=ephemeral: the install alone, no move) installs them on the target: the release
files' cert-manager Certificates and Issuers are not declared (the lab runs no cert-manager, and neither
does the stack need one): the stack issues each serving certificate itself, as for the pinned modules
(components/webhooks.py), and the Deployments find the Secrets they mount.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from components import manifests
from lab.cli import seed_cluster
from lab.cluster import kube_for
from metal3_pivot import SECRET, ResourceType
from tests.kit.env import PROGRAM, ROOT
from tests.kit.move import TOPOLOGY, deployments, resource_versions
from tests.kit.pulumi_cli import PulumiProject

pytestmark = [pytest.mark.pulumi, pytest.mark.cluster]

CLUSTERCTL = "clusterctl.cluster.x-k8s.io"
PROVIDER = "cluster.x-k8s.io/provider"
TTL = "KUBEADM_BOOTSTRAP_TOKEN_TTL"
CRDS = ResourceType("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                    namespaced=False)


def release_files(folder: Path) -> list[dict[str, str]]:
    """One components file per clusterctl provider, as its release ships it, and its providers.source entry."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for spec in manifests.PROVIDERS:
        manifests.rendered(spec)        # renders into the cache (kubectl kustomize) when not there yet
        path = folder / f"{spec.name}-components.yaml"
        shutil.copy(manifests.RENDER_CACHE / f"{spec.name}-{manifests.version(spec)}.yaml", path)
        out.append({"path": str(path), "name": spec.provider_name, "type": spec.type,
                    "version": manifests.version(spec)})
    return out


def steps(preview_json: str) -> list[dict[str, Any]]:
    return [s for s in json.loads(preview_json).get("steps", []) if s.get("newState")]


def test_release_components_files_install_as_clusterctl_init_would(fresh_clusters, tmp_path: Path) -> None:
    clusters = fresh_clusters(("ephemeral",))
    clusters.update(fresh_clusters(("target",), with_crds=False))      # a bare target: the stack installs
    eph, tgt = clusters["ephemeral"], clusters["target"]
    asyncio.run(seed_cluster(eph, TOPOLOGY))
    files = release_files(tmp_path / "release")
    bootstrap = Path(files[1]["path"])
    text = bootstrap.read_text()
    assert f"${{{TTL}:=15m}}" in text
    bootstrap.write_text(text.replace(f"${{{TTL}:=15m}}", f"${{{TTL}}}"))   # required: no default

    p = PulumiProject.create(tmp_path / "proj", "metal3-pivot", PROGRAM)
    p.set_kubeconfigs(eph.kubeconfig, tgt.kubeconfig)
    p.set_config("skipAwait", "true")
    p.set_config("location", "target")
    p.run("config", "set-all", "--path", *[arg for i, f in enumerate(files) for key, value in f.items()
                                           for arg in ("--plaintext", f"providers.source[{i}].{key}={value}")],
          check=True)
    p.env_extra.pop(TTL, None)
    before = {c.name: (resource_versions(c), deployments(c)) for c in (eph, tgt)}

    missing = p.run("preview")
    assert missing.returncode != 0
    assert (f"providers.source[1] ({bootstrap}): clusterctl variable(s) with no value and no default: {TTL}."
            in missing.output), missing.output[-3000:]
    assert f"pulumi config set --path 'providers.variables.{TTL}' VALUE" in missing.output
    assert "Traceback" not in missing.output

    p.run("config", "set", "--path", f"providers.variables.{TTL}", "20m", check=True)
    p.run("config", "set", "--path", "providers.variables.EXP_MACHINE_POOL", "false", check=True)
    p.env_extra["CAPI_DIAGNOSTICS_ADDRESS"] = ":9440"          # from the environment pulumi runs in
    p.env_extra["EXP_MACHINE_POOL"] = "true"                   # the stack config wins over the environment
    packed = p.run("preview", "--policy-pack", str(ROOT / "policies"))
    assert packed.returncode == 0, packed.output[-5000:]
    assert "Policies:" in packed.output and "metal3-pivot" in packed.output, packed.output[-3000:]
    preview = p.run("preview", "--json")            # what is declared, object by object
    assert preview.returncode == 0, preview.output[-5000:]
    assert {c.name: (resource_versions(c), deployments(c)) for c in (eph, tgt)} == before, "a preview wrote"

    (tmp_path / "preview.json").write_text(preview.stdout)
    declared = steps(preview.stdout)
    k8s = [{**s["newState"], "inputs": s["newState"].get("inputs") or {}} for s in declared
           if s["newState"]["type"].startswith("kubernetes:") and s["newState"].get("custom")]
    assert "${" not in json.dumps([s["inputs"] for s in k8s])
    by_name = {(s["type"].rsplit(":", 1)[-1], s["inputs"].get("metadata", {}).get("name")): s["inputs"] for s in k8s}
    args = {name: inputs["spec"]["template"]["spec"]["containers"][0].get("args", [])
            for (kind, name), inputs in by_name.items() if kind == "Deployment"}
    assert "--diagnostics-address=:9440" in args["capi-controller-manager"]            # environment
    assert any(a.startswith("--feature-gates=MachinePool=false,") for a in args["capi-controller-manager"])
    assert "--bootstrap-token-ttl=20m" in args["capi-kubeadm-bootstrap-controller-manager"]     # stack config
    assert "--diagnostics-address=:8443" in args["capm3-controller-manager"]            # the release's default
    assert by_name[("ConfigMap", "capm3-capm3fasttrack-configmap")]["data"] == {"CAPM3_FAST_TRACK": "false"}

    # clusterctl's labels on every object of the files, their namespace on every namespaced one
    from_files = [s for s in k8s if s["inputs"].get("metadata", {}).get("labels", {}).get(PROVIDER)
                  in {manifests.manifest_label(f["name"], f["type"]) for f in files}]
    namespaced = {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Certificate",
                  "Issuer"}
    for s in k8s:
        kind, md = s["type"].rsplit(":", 1)[-1], s["inputs"].get("metadata", {})
        if kind in namespaced and md.get("namespace") in {"capi-system", "capm3-system", "metal3-ipam-system",
                                                          "capi-kubeadm-bootstrap-system",
                                                          "capi-kubeadm-control-plane-system"}:
            assert s in from_files, (kind, md)
            assert md["labels"][CLUSTERCTL] == "", (kind, md)
    assert len(from_files) > 50
    inventory = {s["inputs"]["metadata"]["name"]: s["inputs"] for s in k8s
                 if s["type"] == f"kubernetes:{CLUSTERCTL}/v1alpha3:Provider"}
    assert {name: (i["providerName"], i["type"], i["version"], i["metadata"]["namespace"], i["metadata"]["labels"])
            for name, i in inventory.items()} == {
        spec.name: (spec.provider_name, spec.type, manifests.version(spec), spec.namespace,
                    {CLUSTERCTL: "", PROVIDER: spec.name, f"{CLUSTERCTL}/core": "inventory"})
        for spec in manifests.PROVIDERS}

    # the install itself (location=ephemeral: nothing moves), with the stack's certificates for cert-manager's
    p.set_config("location", "ephemeral")
    up = p.run("up", "--yes", "--skip-preview", timeout=900)
    assert up.returncode == 0, up.output[-5000:]
    assert {(ns, name) for ns, name in deployments(tgt)} >= {
        ("capi-system", "capi-controller-manager"), ("capm3-system", "capm3-controller-manager"),
        ("capi-kubeadm-bootstrap-system", "capi-kubeadm-bootstrap-controller-manager")}

    async def installed() -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
        async with kube_for(tgt) as k:
            secrets = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in await k.list(SECRET)}
            crds = [c["metadata"]["name"] for c in await k.list(CRDS)]
        return secrets, crds
    secrets, crds = asyncio.run(installed())
    for spec in manifests.PROVIDERS:
        for cert in manifests.certificates(spec):
            secret = secrets[(spec.namespace, cert["spec"]["secretName"])]
            assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert not [c for c in crds if c.endswith(".cert-manager.io")]

#!/usr/bin/env python3
"""Regenerate the Go consumer modules under tools/go/ from tools/versions.toml.

A maintainer runs this when a pinned version changes; the resulting go.mod and go.sum are committed so
that tools/bootstrap.py builds reproducibly and needs no checksum-database lookups. Why a consumer
module at all: `go install M@V` refuses modules whose go.mod has `replace` directives (pulumi, etcd,
kubernetes, cluster-api), so each tool gets a tiny module that requires the upstream one and copies
only its *non-local* replaces. Separate modules keep Go's minimal version selection from forcing one
grpc or k8s.io version on every binary.

Usage: python3 tools/consumers.py [NAME ...]     (no names: all of them)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toolchain import GO_DIR, go_env, load_versions, module_dir


def go(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    if args[:2] == ("mod", "edit") and len(args) == 2:
        return ""  # nothing to edit
    result = subprocess.run(["go", *args], cwd=cwd, env=env or go_env(), text=True, capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"go {' '.join(args)} failed in {cwd}:\n{result.stderr}")
    return result.stdout


def upstream_gomod(module: str, version: str) -> dict[str, object]:
    """The upstream module's go.mod as `go mod edit -json` sees it."""
    env = go_env() | {"GONOSUMDB": "github.com/metal3-io"}   # Metal3's sums are not in the public database
    info = json.loads(go("mod", "download", "-json", f"{module}@{version}", cwd=Path(tempfile.gettempdir()), env=env))
    parsed: dict[str, object] = json.loads(go("mod", "edit", "-json", info["GoMod"], cwd=Path(tempfile.gettempdir())))
    return parsed


def non_local_replaces(gomod: dict[str, object]) -> list[str]:
    flags = []
    for rep in gomod.get("Replace") or []:  # type: ignore[union-attr]
        new = rep["New"]
        if new.get("Version"):
            old = rep["Old"]["Path"] + (f"@{rep['Old']['Version']}" if rep["Old"].get("Version") else "")
            flags.append(f"-replace={old}={new['Path']}@{new['Version']}")
    return flags


def fresh(name: str) -> Path:
    path = GO_DIR / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    go("mod", "init", f"metal3-pivot/tools/{name}", cwd=path)
    return path


def gen_pulumi(v: dict) -> None:
    p = v["pulumi"]
    path = fresh("pulumi")
    go("mod", "edit", *non_local_replaces(upstream_gomod(p["module"], p["version"])), cwd=path)
    go("get", "-tool", f"{p['module']}/cmd/pulumi@{p['version']}", cwd=path)
    go("get", f"github.com/pulumi/pulumi/sdk/v3@{p['version']}", cwd=path)


def gen_kubernetes_provider(v: dict) -> None:
    """The provider's main package is four files from its module zip; they are copied next to the
    committed go.mod at build time (never committed: not our code)."""
    p = v["kubernetes-provider"]
    path = fresh("kubernetes-provider")
    upstream = upstream_gomod(p["module"], p["version"])
    go("mod", "edit", *non_local_replaces(upstream), cwd=path)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(path / "go.mod", work / "go.mod")
        src = module_dir(p["module"], p["version"]) / "cmd" / "pulumi-resource-kubernetes"
        for f in ("main.go", "generate.go", "schema.json", "terraform-mapping.json"):
            shutil.copy(src / f, work / f)
            os.chmod(work / f, 0o644)
        go("get", f"{p['module']}/pkg/provider@{p['version']}", f"{p['module']}/pkg/version@{p['version']}",
           f"github.com/pulumi/pulumi/pkg/v3/codegen/schema@{p['schema-pin']}", cwd=work)
        go("mod", "tidy", cwd=work)
        shutil.copy(work / "go.mod", path / "go.mod")
        shutil.copy(work / "go.sum", path / "go.sum")


def gen_kubernetes(v: dict) -> None:
    """k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local folders;
    we replace each with the published staging version instead, generated from the release go.mod."""
    k = v["kubernetes"]
    path = fresh("kubernetes")
    upstream = upstream_gomod(k["module"], k["version"])
    staging = [r["Path"] for r in upstream.get("Require") or [] if r["Version"] == "v0.0.0"]  # type: ignore[union-attr]
    edits = [f"-replace={m}={m}@{k['staging']}" for m in staging]
    edits.append(f"-go={upstream['Go']}")
    for gd in upstream.get("GoDebug") or []:  # type: ignore[union-attr]
        edits.append(f"-godebug={gd['Key']}={gd['Value']}")
    go("mod", "edit", *edits, cwd=path)
    go("get", "-tool", *(f"{k['module']}/cmd/{c}@{k['version']}"
                         for c in ("kube-apiserver", "kube-controller-manager", "kubectl")), cwd=path)


def gen_etcd(v: dict) -> None:
    e = v["etcd"]
    path = fresh("etcd")
    mods = [f"go.etcd.io/etcd/{m}/v3@{e['version']}" for m in ("api", "client/pkg", "client", "pkg")]
    go("get", "-tool", f"{e['module']}@{e['version']}", cwd=path)
    go("get", *mods, cwd=path)


def gen_clusterctl(v: dict) -> None:
    c = v["clusterctl"]
    path = fresh("clusterctl")
    go("mod", "edit", *non_local_replaces(upstream_gomod(c["module"], c["version"])), cwd=path)
    go("get", f"{c['module']}/api@{c['version']}", cwd=path)
    go("get", "-tool", f"{c['module']}/cmd/clusterctl@{c['version']}", cwd=path)


def gen_crds(v: dict) -> None:
    """Not a build: a module whose go.sum pins the provider modules we take CRDs from (Metal3's modules
    are not in the checksum database, so an unpinned download would need GONOSUMDB)."""
    path = fresh("crds")
    env = go_env() | {"GONOSUMDB": "github.com/metal3-io", "GOFLAGS": "-mod=mod"}
    for spec in v["crds"].values():
        go("mod", "edit", f"-require={spec['module']}@{spec['version']}", cwd=path)
        go("mod", "download", f"{spec['module']}@{spec['version']}", cwd=path, env=env)


def plane_package(spec: dict, sub: str) -> str:
    """A plane binary's Go package: `.` is the module root (CAPM3, IPAM, BMO have their main there)."""
    return spec["module"] if sub == "." else f"{spec['module']}/{sub}"


def gen_plane(name: str) -> object:
    """A management-plane controller's consumer: the upstream module's non-local replaces, plus `pins`
    for the submodules its own go.mod points at local folders (a dependency's replaces are ignored)."""
    def generate(v: dict) -> None:
        spec = v["plane"][name]
        path = fresh(name)
        env = go_env() | {"GONOSUMDB": "github.com/metal3-io"}   # Metal3's sums are not in the public database
        edits = non_local_replaces(upstream_gomod(spec["module"], spec["version"]))
        edits += [f"-replace={mod}={mod}@{ver}" for mod, ver in spec.get("pins", {}).items()]
        go("mod", "edit", *edits, cwd=path)
        go("get", "-tool", *(f"{plane_package(spec, sub)}@{spec['version']}" for sub in spec["binaries"].values()),
           cwd=path, env=env)
    return generate


GENERATORS = {
    "pulumi": gen_pulumi,
    "kubernetes-provider": gen_kubernetes_provider,
    "kubernetes": gen_kubernetes,
    "etcd": gen_etcd,
    "clusterctl": gen_clusterctl,
    "crds": gen_crds,
    **{name: gen_plane(name) for name in load_versions()["plane"]},
}

if __name__ == "__main__":
    versions = load_versions()
    for name in sys.argv[1:] or list(GENERATORS):
        print(f"==> {name}", flush=True)
        GENERATORS[name](versions)

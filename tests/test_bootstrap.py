"""The toolchain bootstrap: a fresh clone on a machine that has built the tools rebuilds none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.env import ROOT


def test_a_fresh_clone_finds_every_tool_cached(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # PATH without this checkout's tools, so "found" can only mean "found in the per-version cache"
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not p.startswith(str(ROOT / ".tools")) and not p.startswith(str(ROOT / ".venv")))
    result = subprocess.run(["python3", "tools/bootstrap.py", "--check"], cwd=clone, capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, PATH=path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "missing" not in result.stdout
    for tool in ("pulumi", "kubernetes-provider", "etcd", "kubernetes", "clusterctl",
                 "capi-managers", "capm3-manager", "ipam-manager", "baremetal-operator", "ironic"):
        assert f"bootstrap: {tool} " in result.stdout and "cached in" in result.stdout, result.stdout


def test_versions_are_pinned_in_one_file() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from toolchain import load_versions

    v = load_versions()
    assert v["pulumi"]["version"] == "v3.274.1"
    assert v["kubernetes-provider"]["stamp"] == "4.25.0"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"pulumi-kubernetes=={v["python"]["pulumi-kubernetes"]}"' in pyproject
    assert f'"pulumi=={v["python"]["pulumi"]}"' in pyproject


def test_the_management_plane_is_pinned_with_a_consumer_module_each() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from toolchain import GO_DIR, load_versions

    plane = load_versions()["plane"]
    assert plane["capi-managers"]["version"] == "v1.14.2"
    assert {n: p["version"] for n, p in plane.items() if n != "capi-managers"} == {
        "capm3-manager": "v1.13.2", "ipam-manager": "v1.13.2", "baremetal-operator": "v0.13.2"}
    for name, spec in plane.items():
        gomod = (GO_DIR / name / "go.mod").read_text()
        assert (GO_DIR / name / "go.sum").exists(), f"{name}: go.sum must be committed (no checksum lookups)"
        assert f"{spec['module']} {spec['version']}" in gomod, f"{name}: go.mod does not require {spec['module']}"
        for mod, ver in spec.get("pins", {}).items():
            assert f"{mod} => {mod} {ver}" in gomod, f"{name}: go.mod lacks the pin {mod} => {ver}"


def test_the_ironic_virtualenv_is_pinned_whole() -> None:
    """Ironic's own venv installs from a committed constraints file that pins every package it resolves."""
    sys.path.insert(0, str(ROOT / "tools"))
    from toolchain import load_versions

    spec = load_versions()["ironic"]
    pins = dict(line.split("==") for line in (ROOT / spec["constraints"]).read_text().splitlines()
                if line and not line.startswith("#"))
    assert pins["ironic"] == spec["ironic"] and pins["sushy-tools"] == spec["sushy-tools"]
    assert len(pins) > 100  # the whole resolved set, not only the two top-level pins


@pytest.mark.unit
def test_a_machine_with_everything_cached_needs_no_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The language host's files and the CRD modules come from Go's module cache: without Go on PATH they
    are found there (module paths spelled as the cache spells them), and what is not there is a clear
    error naming the module, not a traceback about a missing `go` binary."""
    sys.path.insert(0, str(ROOT / "tools"))
    import toolchain

    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "mod"))
    folder = tmp_path / "mod" / "github.com" / "!burnt!sushi" / "toml@v1.3.2"
    folder.mkdir(parents=True)
    assert toolchain.module_dir("github.com/BurntSushi/toml", "v1.3.2") == folder
    with pytest.raises(toolchain.GoMissingError, match=r"sdk/v3@v3.274.1 is not in the Go module cache"):
        toolchain.module_dir("github.com/pulumi/pulumi/sdk/v3", "v3.274.1")

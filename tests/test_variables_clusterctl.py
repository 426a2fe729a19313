"""Our clusterctl variable substitution against clusterctl itself: `clusterctl generate yaml --from FILE`
(clusterctl v1.14.2, built by tools/bootstrap.py) runs the same processor `clusterctl init` runs on a
components file. No cluster; a few seconds. The rules' cases: tests/kit/variable_cases.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import manifests
from components.variables import lookup, substitute
from tests.kit.env import tool_env
from tests.kit.variable_cases import BAD, CASES, EMPTY, MISSING, SET, UNSET

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)     # the releases are megabytes of YAML


def clusterctl_yaml(path: Path, env: dict[str, str], home: Path) -> list[Any] | None:
    """The documents clusterctl makes of the file, or None when it refuses it."""
    base = tool_env(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), CLUSTERCTL_DISABLE_VERSIONCHECK="true")
    for name in ("A", "B", "C"):
        base.pop(name, None)
    out = subprocess.run(["clusterctl", "generate", "yaml", "--from", str(path)], env={**base, **env},
                         capture_output=True, text=True, timeout=60)
    return None if out.returncode else [d for d in yaml.load_all(out.stdout, Loader=LOADER) if d is not None]


@pytest.mark.parametrize(("env", "column"), [(UNSET, 1), (SET, 2), (EMPTY, 3)], ids=["unset", "set", "empty"])
def test_every_case_matches_clusterctl(tmp_path: Path, env: dict[str, str], column: int) -> None:
    accepted = [case for case in CASES if case[column] not in (MISSING, BAD)]
    path = tmp_path / "cases.yaml"
    # the accepted cases in one file (one clusterctl run), each refused case on its own
    path.write_text("".join(f"k{i}: {case[0]}\n" for i, case in enumerate(accepted)))
    theirs = clusterctl_yaml(path, env, tmp_path)
    assert theirs is not None
    ours = yaml.safe_load(substitute(path.read_text(), lookup({}, env)))
    assert ours == theirs[0]
    assert ours == {f"k{i}": case[column] for i, case in enumerate(accepted)}
    for case in CASES:
        if case[column] in (MISSING, BAD):
            path.write_text(f"a: {case[0]}\n")
            assert clusterctl_yaml(path, env, tmp_path) is None, case


def test_each_pinned_release_substitutes_as_clusterctl_does(tmp_path: Path) -> None:
    """Every provider's release config (the kustomize render of config/default, variables in), with one
    value set: the same objects from clusterctl and from us."""
    env = {"CAPM3_FAST_TRACK": "true", "EXP_MACHINE_POOL": "false"}
    for spec in manifests.PROVIDERS:
        manifests.rendered(spec)
        release = manifests.RENDER_CACHE / f"{spec.name}-{manifests.version(spec)}.yaml"
        text = release.read_text()
        assert "${" in text or spec.name == "baremetal-operator"
        theirs = clusterctl_yaml(release, env, tmp_path)
        ours = [d for d in yaml.load_all(substitute(text, lookup({}, env)), Loader=LOADER) if d is not None]
        assert ours == theirs, spec.name
        assert "${" not in repr(ours)

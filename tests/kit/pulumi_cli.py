"""Drive the real pulumi CLI from tests: a throw-away project, a file:// backend, passphrase secrets.

Why the CLI and not the Automation API: it is what users and the PR workflow run, and it exercises the
language host the way the engine starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components import file_backend_url
from lab.cli import seed_cluster
from lab.cluster import LocalCluster
from metal3_pivot.graph import ObjKey
from tests.kit.env import PROGRAM, ROOT, tool_env
from tests.kit.move import TOPOLOGY, canonical_snapshot

PASSPHRASE = "metal3-pivot-test-passphrase"


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class PulumiProject:
    directory: Path
    stack: str = "dev"
    backend: str = ""                  # default: a file:// folder inside the project
    env_extra: dict[str, str] = field(default_factory=dict)
    transcript: list[Result] = field(default_factory=list)

    @classmethod
    def create(cls, directory: Path, name: str, program: str, stack: str = "dev",
               extra_yaml: str = "", backend: str = "") -> PulumiProject:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "Pulumi.yaml").write_text(
            f"name: {name}\nruntime:\n  name: python\n  options:\n    virtualenv: {ROOT / '.venv'}\n{extra_yaml}")
        (directory / "__main__.py").write_text(textwrap.dedent(program))
        (directory / "state").mkdir(exist_ok=True)
        project = cls(directory, stack, backend)
        project.run("stack", "init", stack, check=True)
        return project

    @property
    def env(self) -> dict[str, str]:
        return tool_env(PULUMI_BACKEND_URL=self.backend or file_backend_url(self.directory / "state"),
                        PULUMI_CONFIG_PASSPHRASE=PASSPHRASE, **self.env_extra)

    def command(self, *args: str) -> list[str]:
        cmd = ["pulumi", *args, "--non-interactive", "--cwd", str(self.directory)]
        if args[:2] != ("stack", "init"):
            cmd += ["--stack", self.stack]
        return cmd

    def start(self, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """In the background (concurrency tests); collect with `finish`."""
        return subprocess.Popen(self.command(*args), env={**self.env, **(env_extra or {})}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def finish(self, proc: subprocess.Popen[str], timeout: float = 300) -> Result:
        out, err = proc.communicate(timeout=timeout)
        result = Result([str(a) for a in proc.args], proc.returncode, out, err)  # type: ignore[union-attr]
        self.transcript.append(result)
        return result

    def run(self, *args: str, check: bool = False, stdin: str | None = None, timeout: float = 600) -> Result:
        """One CLI call; its duration goes to stderr, so a failing test shows which step was slow."""
        cmd = self.command(*args)
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, env=self.env, input=stdin, capture_output=True, text=True, timeout=timeout)
        finally:
            print(f"pulumi {' '.join(args)}: {time.monotonic() - started:.1f} s", file=sys.stderr)
        result = Result(cmd, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        self.transcript.append(result)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{result.output}")
        return result

    def set_config(self, key: str, value: str, *, secret: bool = False) -> None:
        args = ["config", "set", key] + (["--secret"] if secret else [])
        self.run(*args, stdin=value, check=True)

    def set_kubeconfigs(self, ephemeral: Path, target: Path) -> None:
        """Both clusters' kubeconfigs as the stack's secret config (`ephemeral.kubeconfig`,
        `target.kubeconfig`), passed on stdin so they never appear on a command line."""
        for side, path in (("ephemeral", ephemeral), ("target", target)):
            self.run("config", "set", "--secret", "--path", f"{side}.kubeconfig", stdin=path.read_text(), check=True)

    def all_text(self) -> str:
        """Everything a secret must never appear in: outputs so far, the state, the stack file."""
        parts = [r.output for r in self.transcript]
        for f in self.directory.rglob("*"):
            if f.is_file() and f.suffix in (".json", ".yaml", ".log", ".bak", ".gz", ""):
                with contextlib.suppress(OSError):
                    parts.append(f.read_text(errors="replace"))
        return "\n".join(parts)


def pivot_stack(directory: Path, ephemeral: Path, target: Path, *, program: str = PROGRAM, stack: str = "dev",
                backend: str = "") -> PulumiProject:
    """The stack as the pivot tests start it, given both clusters' kubeconfigs: the objects declared in
    the ephemeral cluster, no waiting on Deployments (no kubelet runs their pods here), and `protect` off so
    that a test may destroy it or take ObjectLocation out."""
    project = PulumiProject.create(directory, "metal3-pivot", program, stack=stack, backend=backend)
    project.set_config("location", "ephemeral")
    project.set_kubeconfigs(ephemeral, target)
    project.set_config("skipAwait", "true")
    project.run("config", "set", "--path", "protect", "false", check=True)
    return project


def installed_pivot(fresh_clusters: Callable[..., dict[str, LocalCluster]], directory: Path,
                    ) -> tuple[LocalCluster, LocalCluster, dict[ObjKey, Any], PulumiProject]:
    """Where the tests of a pivot through `pulumi up` on seeded clusters start: the ephemeral cluster with
    its CRDs and TOPOLOGY seeded, a bare target (the stack installs it), the seeded objects as they are
    (to compare the moved ones with), and `pivot_stack` after its first `up` (the providers on the target,
    Ironic on the ephemeral cluster, nothing moved)."""
    eph = fresh_clusters(("ephemeral",))["ephemeral"]
    tgt = fresh_clusters(("target",), with_crds=False)["target"]
    asyncio.run(seed_cluster(eph, TOPOLOGY))
    original = canonical_snapshot(eph)
    project = pivot_stack(directory, eph.kubeconfig, tgt.kubeconfig)
    project.run("up", "--yes", "--skip-preview", check=True)
    return eph, tgt, original, project


def object_records(resources: list[dict[str, Any]]) -> set[str]:
    """The URNs of the Kubernetes objects pulumi-kubernetes created in a stack's exported resources (not
    its providers, not the components around them, not our dynamic resources)."""
    return {r["urn"] for r in resources
            if r.get("custom") and r["type"].startswith("kubernetes:") and not r["type"].startswith("kubernetes:yaml")}


def forget_objects(project: PulumiProject, scratch: Path) -> set[str]:
    """Take every Kubernetes object's record out of the stack's state (and every reference to them), as an
    `up` killed between each create and its record leaves it: the objects stay on the clusters, the state
    knows none of them. Returns the URNs taken out."""
    state = json.loads(project.run("stack", "export", check=True).stdout)
    resources = state["deployment"]["resources"]
    gone = object_records(resources)
    state["deployment"]["resources"] = [r for r in resources if r["urn"] not in gone]
    for r in state["deployment"]["resources"]:
        r["dependencies"] = [d for d in r.get("dependencies") or [] if d not in gone]
        for deps in (r.get("propertyDependencies") or {}).values():
            deps[:] = [d for d in deps if d not in gone]
        if r.get("deletedWith") in gone:
            del r["deletedWith"]
    scratch.write_text(json.dumps(state))
    project.run("stack", "import", "--file", str(scratch), check=True)
    return gone

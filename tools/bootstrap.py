#!/usr/bin/env python3
"""Install everything the project's commands need, offline-capable after the first run.

    python3 tools/bootstrap.py            # venv + every tool; prints what it used, built or reused
    python3 tools/bootstrap.py --check    # say what is missing, build nothing

Why it looks the way it does:
- Nothing may be downloaded at run time and only PyPI and the Go module proxy are reachable, so every
  binary is built from a pinned Go module (tools/versions.toml, consumer modules in tools/go/).
- A tool already on PATH at a compatible version is used as is: a user with an official Pulumi install
  or their own Kubernetes binaries is never forced to build.
- Builds land in a per-version cache outside the checkout (~/.cache/metal3-pivot/tools/NAME-VERSION), so
  a fresh clone on the same machine rebuilds nothing; the checkout only gets symlinks in .tools/bin.
- Ironic and sushy-tools (the live plane's Ironic and BMCs) are Python: they come from PyPI into a
  virtualenv of their own in that cache (tools/python/ironic-constraints.txt pins the whole set).

Standard library only: it creates the virtualenv, so it cannot depend on it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toolchain import GO_DIR, ROOT, GoMissingError, cache_root, go_env, go_or_cached, load_versions, module_dir

BIN = ROOT / ".tools" / "bin"
VENV = ROOT / ".venv"
BUILD_DATE = "2026-01-01T00:00:00Z"  # fixed, so builds are byte-identical run to run


class BootstrapError(Exception):
    """A step failed; the message says which tool, which step, and what to do."""


@dataclass
class Tool:
    name: str                      # cache folder prefix and consumer module name
    version: str
    binaries: list[str]            # what ends up in .tools/bin
    consumer: str                  # tools/go/<consumer>
    packages: dict[str, str] = field(default_factory=dict)   # binary -> Go package to build
    ldflags: list[str] = field(default_factory=list)
    tags: str = ""
    cold_estimate: str = ""
    # a version already on PATH is good enough when this matches what `<binary> <version_args>` prints
    version_args: list[str] = field(default_factory=list)
    compatible: str = ""           # regex over the version output

    @property
    def cache_dir(self) -> Path:
        return cache_root() / "tools" / f"{self.name}-{self.version}"


def tools() -> list[Tool]:
    v = load_versions()
    return [*base_tools(v), *plane_tools(v)]


#: cold build on the project's machine (docs/toolchain.md), printed before each build
PLANE_COLD = {"capi-managers": "5 min", "capm3-manager": "1.5 min", "ipam-manager": "2.5 min",
              "baremetal-operator": "4 min"}


def capi_stamp(version: str) -> list[str]:
    major, minor = version.lstrip("v").split(".")[:2]
    return [f"-X sigs.k8s.io/cluster-api/version.{k}={val}" for k, val in
            (("gitVersion", version), ("gitMajor", major), ("gitMinor", minor),
             ("gitTreeState", "clean"), ("buildDate", BUILD_DATE))]


def plane_tools(v: dict) -> list[Tool]:
    """The live management plane's controllers ([plane.*] in versions.toml; lab/plane/ runs them).
    Never taken from PATH: a manager is matched to the CRDs and webhook configurations of its exact
    release, which its binary cannot be asked for without a cluster."""
    out = []
    for name, spec in v["plane"].items():
        ldflags = []
        if spec["module"] == "sigs.k8s.io/cluster-api":
            ldflags = capi_stamp(spec["version"])
        elif spec["module"] == "github.com/metal3-io/baremetal-operator":   # logged as "Component: ..."
            ldflags = [f"-X github.com/metal3-io/baremetal-operator/pkg/version.{k}={val}" for k, val in
                       (("Raw", spec["version"]), ("BuildTime", BUILD_DATE))]
        packages = {binary: spec["module"] if sub == "." else f"{spec['module']}/{sub}"
                    for binary, sub in spec["binaries"].items()}
        out.append(Tool(name, spec["version"], list(packages), name, packages=packages, ldflags=ldflags,
                        cold_estimate=PLANE_COLD.get(name, "5 min")))
    return out


def base_tools(v: dict) -> list[Tool]:
    """What the engine, the stack and the lab's clusters need."""
    pv, kv = v["pulumi"]["version"], v["kubernetes"]["version"]
    ev, cv = v["etcd"]["version"], v["clusterctl"]["version"]
    kube_major, kube_minor = kv.lstrip("v").split(".")[:2]
    kube_stamp = [f"-X {pkg}.{k}={val}" for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
                  for k, val in (("gitVersion", kv), ("gitMajor", kube_major), ("gitMinor", kube_minor),
                                 ("gitTreeState", "clean"), ("buildDate", BUILD_DATE))]
    kp = v["kubernetes-provider"]
    return [
        Tool("pulumi", pv, ["pulumi"], "pulumi",
             packages={"pulumi": "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"},
             ldflags=[f"-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={pv}"],
             cold_estimate="3.5 min", version_args=["version"], compatible=r"^v3\.(27[2-9]|2[89]\d|[3-9]\d\d)\."),
        Tool("kubernetes-provider", kp["stamp"], ["pulumi-resource-kubernetes"], "kubernetes-provider",
             packages={"pulumi-resource-kubernetes": "."},
             ldflags=[f"-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version={kp['stamp']}"],
             cold_estimate="7.5 min"),
        Tool("etcd", ev, ["etcd"], "etcd", packages={"etcd": "go.etcd.io/etcd/server/v3"},
             cold_estimate="40 s", version_args=["--version"], compatible=r"etcd Version: 3\.6\."),
        Tool("kubernetes", kv, ["kube-apiserver", "kube-controller-manager", "kubectl"], "kubernetes",
             packages={b: f"k8s.io/kubernetes/cmd/{b}"
                       for b in ("kube-apiserver", "kube-controller-manager", "kubectl")},
             ldflags=kube_stamp, tags="selinux,notest,grpcnotrace", cold_estimate="5 min",
             version_args=["--version"], compatible=rf"Kubernetes {re.escape(kv)}\b"),
        Tool("clusterctl", cv, ["clusterctl"], "clusterctl",
             packages={"clusterctl": "sigs.k8s.io/cluster-api/cmd/clusterctl"},
             ldflags=capi_stamp(cv),
             cold_estimate="1.5 min", version_args=["version", "-o", "short"], compatible=r"^v1\.1[34]\."),
    ]


# ---------------------------------------------------------------------------------------------- output

def say(msg: str) -> None:
    print(f"bootstrap: {msg}", flush=True)


def run_logged(cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path, what: str) -> None:
    """Run a long command, heartbeat every 30 s so a cold build is visibly alive, keep its log."""
    start = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(30):
            say(f"  ... {what}: {int(time.monotonic() - start)} s")

    threading.Thread(target=heartbeat, daemon=True).start()
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}  (in {cwd})\n")
        out.flush()
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    done.set()
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise BootstrapError(f"{what} failed (exit {rc}).\n--- last lines of {log} ---\n{tail}")


def consumer_digest(consumer: str) -> str:
    h = hashlib.sha256()
    for f in ("go.mod", "go.sum"):
        h.update((GO_DIR / consumer / f).read_bytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- tools

def on_path(binary: str) -> Path | None:
    """A binary on PATH that is not one of our own links (those are re-decided every run)."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d).resolve() != BIN.resolve()]
    found = shutil.which(binary, path=os.pathsep.join(dirs))
    return Path(found) if found else None


def usable_from_path(tool: Tool) -> dict[str, Path] | None:
    if not tool.compatible:
        return None
    found: dict[str, Path] = {}
    for binary in tool.binaries:
        path = on_path(binary)
        if path is None:
            return None
        try:
            out = subprocess.run([str(path), *tool.version_args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if not re.search(tool.compatible, (out.stdout + out.stderr).strip(), re.M):
            return None
        found[binary] = path
    return found


def is_built(tool: Tool) -> bool:
    stamp = tool.cache_dir / ".stamp"
    return (stamp.exists() and stamp.read_text().strip() == consumer_digest(tool.consumer)
            and all((tool.cache_dir / b).exists() for b in tool.binaries))


def build(tool: Tool, index: int, total: int) -> None:
    say(f"[{index}/{total}] building {tool.name} {tool.version} from Go modules (cold: ~{tool.cold_estimate})")
    logs = cache_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{tool.name}-{tool.version}.log"
    log.write_text("")
    out_dir = tool.cache_dir
    tmp_out = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir(parents=True)
    env = go_env()
    with tempfile.TemporaryDirectory(prefix=f"m3p-{tool.name}-") as tmp:
        work = Path(tmp)
        for f in ("go.mod", "go.sum"):
            shutil.copy(GO_DIR / tool.consumer / f, work / f)
        if tool.name == "kubernetes-provider":
            prepare_kubernetes_provider(work, env, log)
        for binary, package in tool.packages.items():
            cmd = ["go", "build", "-trimpath", "-ldflags", " ".join(["-s", "-w", *tool.ldflags]), "-o",
                   str(tmp_out / binary)]
            if tool.tags:
                cmd += ["-tags", tool.tags]
            t0, cpu0 = time.monotonic(), _children_cpu()
            run_logged([*cmd, package], cwd=work, env=env, log=log, what=f"{tool.name}: go build {binary}")
            # CPU seconds as well: on a shared machine the wall time says more about the neighbours
            say(f"  {tool.name}: built {binary} in {time.monotonic() - t0:.0f} s "
                f"({_children_cpu() - cpu0:.0f} CPU-s)")
    (tmp_out / ".stamp").write_text(consumer_digest(tool.consumer))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp_out.rename(out_dir)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def prepare_kubernetes_provider(work: Path, env: dict[str, str], log: Path) -> None:
    """The provider's main package ships inside its module zip: copy the four files next to our go.mod
    and generate the two embedded JSON files main.go expects."""
    kp = load_versions()["kubernetes-provider"]
    src = module_dir(kp["module"], kp["version"]) / "cmd" / "pulumi-resource-kubernetes"
    for f in ("main.go", "generate.go", "schema.json", "terraform-mapping.json"):
        shutil.copy(src / f, work / f)
        os.chmod(work / f, 0o644)
    run_logged(["go", "run", "generate.go"], cwd=work, env=env | {"VERSION": kp["stamp"]}, log=log,
               what="kubernetes-provider: go run generate.go")


def link(binary: str, target: Path) -> None:
    """Symlink, except `pulumi`: the CLI looks for its bundled plugins (language host, dynamic provider)
    beside its *resolved* path first and warns on every run when it falls back to PATH, so ours gets a
    hard link (a copy across filesystems) and the plugins sit beside it in .tools/bin."""
    BIN.mkdir(parents=True, exist_ok=True)
    dest = BIN / binary
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    if binary != "pulumi":
        dest.symlink_to(target)
        return
    try:
        os.link(target.resolve(), dest)
    except OSError:
        shutil.copy2(target.resolve(), dest)


def pulumi_home() -> Path:
    return Path(os.environ.get("PULUMI_HOME") or os.path.expanduser("~/.pulumi"))


def kubernetes_plugin_installed(version: str) -> bool:
    d = pulumi_home() / "plugins" / f"resource-kubernetes-v{version}"
    return (d / "pulumi-resource-kubernetes").exists()


def install_kubernetes_plugin(tool: Tool) -> None:
    """Registered in the plugin cache (not on PATH, where the CLI warns on every run)."""
    if kubernetes_plugin_installed(tool.version):
        return
    pulumi = BIN / "pulumi"
    subprocess.run([str(pulumi), "plugin", "install", "resource", "kubernetes", tool.version, "--file",
                    str(tool.cache_dir / "pulumi-resource-kubernetes")], check=True,
                   env=os.environ | {"PULUMI_SKIP_UPDATE_CHECK": "true"}, capture_output=True)
    say(f"registered kubernetes plugin {tool.version} in {pulumi_home() / 'plugins'}")


# ---------------------------------------------------------------------------------------------- ironic

def ironic_cache_dir() -> Path:
    return cache_root() / "tools" / f"ironic-{load_versions()['ironic']['ironic']}"


def ironic_digest() -> str:
    """What the Ironic virtualenv was installed from: the pins, the full constraints set and the Python
    minor version (a venv is tied to its interpreter). Any change reinstalls; nothing else does."""
    spec = load_versions()["ironic"]
    h = hashlib.sha256()
    h.update(f"{spec['ironic']} {spec['sushy-tools']} {sys.version_info.major}.{sys.version_info.minor}".encode())
    h.update((ROOT / spec["constraints"]).read_bytes())
    return h.hexdigest()[:16]


def ironic_installed() -> bool:
    d = ironic_cache_dir()
    stamp = d / ".stamp"
    return (stamp.exists() and stamp.read_text().strip() == ironic_digest()
            and all((d / "venv" / "bin" / e).exists() for e in load_versions()["ironic"]["entry-points"]))


def install_ironic() -> float:
    """Ironic + sushy-tools into a virtualenv of their own, outside the checkout.

    Not the project's .venv: Ironic brings ~115 packages (oslo.*, eventlet, SQLAlchemy 2.1, numpy) whose
    pins would fight the project's. Installed in place (a venv's scripts carry its absolute path, so it
    cannot be built elsewhere and renamed); the stamp is written last, so an interrupted install is
    redone from scratch on the next run.
    """
    spec = load_versions()["ironic"]
    d = ironic_cache_dir()
    say(f"installing ironic {spec['ironic']} + sushy-tools {spec['sushy-tools']} into {d / 'venv'} "
        "(pip, from PyPI; cold: ~1.5 min)")
    start = time.monotonic()
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    log = cache_root() / "logs" / f"ironic-{spec['ironic']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    run_logged([sys.executable, "-m", "venv", str(d / "venv")], cwd=ROOT, env=env, log=log, what="ironic: venv")
    run_logged([str(d / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "-c",
                str(ROOT / spec["constraints"]), f"ironic=={spec['ironic']}", f"sushy-tools=={spec['sushy-tools']}"],
               cwd=ROOT, env=env, log=log, what="ironic: pip install (check that PyPI is reachable)")
    (d / ".stamp").write_text(ironic_digest())
    return time.monotonic() - start


def ensure_ironic(*, check: bool) -> bool:
    """Install when missing (or just report it with --check); link the entry points the lab runs."""
    spec = load_versions()["ironic"]
    if not ironic_installed():
        if check:
            return False
        say(f"ironic {spec['ironic']}: installed in {install_ironic():.0f} s")
    else:
        say(f"ironic {spec['ironic']}: cached in {ironic_cache_dir()}")
    if not check:
        for entry in spec["entry-points"]:
            link(entry, ironic_cache_dir() / "venv" / "bin" / entry)
    return True


# ---------------------------------------------------------------------------------------------- language host

def install_language_host() -> str:
    """An official pulumi-language-python on PATH wins; otherwise ours (langhost/), through a launcher
    that runs it with the project's virtualenv. The exec script and the dynamic-provider plugin ship in
    the pulumi SDK module and must sit beside the host, so they are copied from there."""
    official = on_path("pulumi-language-python")
    # found before anything is removed: a bootstrap that cannot find the SDK leaves the host it had
    sdk = None if official else module_dir("github.com/pulumi/pulumi/sdk/v3", load_versions()["pulumi"]["version"])
    for name in ("pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python"):
        if (BIN / name).is_symlink() or (BIN / name).exists():
            (BIN / name).unlink()
    if official is not None or sdk is None:
        return f"official {official}"
    BIN.mkdir(parents=True, exist_ok=True)
    for name, rel in (("pulumi-language-python-exec", "python/cmd/pulumi-language-python-exec"),
                      ("pulumi-resource-pulumi-python", "python/dist/pulumi-resource-pulumi-python")):
        shutil.copy(sdk / rel, BIN / name)
        os.chmod(BIN / name, 0o755)
    launcher = BIN / "pulumi-language-python"
    launcher.write_text("#!/bin/sh\n# metal3-pivot's minimal Python language host (langhost/): docs/architecture.md\n"
                        f'exec "{VENV}/bin/python" -u -m langhost --exec-dir "$(dirname "$0")" "$@"\n')
    os.chmod(launcher, 0o755)
    return "ours (langhost/)"


# ---------------------------------------------------------------------------------------------- python

def ensure_venv() -> None:
    """The project's virtualenv (Pulumi.yaml names it); reinstalled only when pyproject.toml changes."""
    pyproject = ROOT / "pyproject.toml"
    digest = hashlib.sha256(pyproject.read_bytes()).hexdigest()[:16]
    stamp = VENV / ".metal3-pivot-stamp"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return
    say("creating the virtualenv .venv (pip, from PyPI)")
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    rc = subprocess.run([*pip, "-e", f"{ROOT}[dev]"]).returncode
    if rc != 0:
        raise BootstrapError("pip install of the project into .venv failed: check that PyPI is reachable "
                             "(pip's message above names the package)")
    stamp.write_text(digest)


def ensure_crd_modules() -> None:
    """The CRDs installed into the local clusters come from these pinned modules' folders; their go.sum
    (tools/go/crds) verifies the download. lab/data/crds.py reads the folders from .tools/crd-modules.json."""
    env = go_env() | {"GOFLAGS": "-mod=mod"}
    found = {}
    for key, spec in load_versions()["crds"].items():
        cached = go_or_cached(spec["module"], spec["version"])
        if cached is not None:
            found[key] = {"dir": str(cached), "version": spec["version"]}
            continue
        ref = f"{spec['module']}@{spec['version']}"
        rc = subprocess.run(["go", "mod", "download", "-json", ref], cwd=GO_DIR / "crds", env=env,
                            capture_output=True, text=True)
        info = json.loads(rc.stdout or "{}")
        if rc.returncode != 0 or "Dir" not in info:
            raise BootstrapError(f"crds: downloading {ref} failed: {info.get('Error') or rc.stderr}")
        found[key] = {"dir": info["Dir"], "version": spec["version"]}
    (ROOT / ".tools").mkdir(exist_ok=True)
    (ROOT / ".tools" / "crd-modules.json").write_text(json.dumps(found, indent=2))


# ---------------------------------------------------------------------------------------------- postgresql

PG_SERVER = ("initdb", "pg_ctl", "postgres")


def postgres_bin() -> Path | None:
    """Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin (lab/postgres.py looks there too)."""
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if all(os.access(d / b, os.X_OK) for b in PG_SERVER):
            return d
    found = shutil.which("pg_ctl")
    return Path(os.path.realpath(found)).parent if found and shutil.which("initdb") else None


def ensure_postgres() -> str:
    """The team-backend tests start a real PostgreSQL; the server comes from Debian's archive, not Go.

    Debian's package would create and start a system-wide "main" server: we only want the binaries (the
    tests run their own throw-away server), so `create_main_cluster = false` is set first when the
    package's cluster configuration does not exist yet.
    """
    found = postgres_bin()
    if found:
        return f"using {found}"
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise BootstrapError("PostgreSQL is not installed and cannot be installed here (needs root and apt-get); "
                             "install Debian's `postgresql` package, or any PostgreSQL >= 12 with initdb and "
                             "pg_ctl on PATH")
    conf = Path("/etc/postgresql-common/createcluster.conf")
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("# written by metal3-pivot's bootstrap: binaries only, no system-wide server\n"
                        "create_main_cluster = false\n")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    log = cache_root() / "logs" / "apt-postgresql.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    run_logged(["apt-get", "update", "-q"], cwd=ROOT, env=env, log=log, what="apt-get update")
    run_logged(["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "Dpkg::Options::=--force-confold",
                "postgresql"], cwd=ROOT, env=env, log=log, what="apt-get install postgresql")
    found = postgres_bin()
    if not found:
        raise BootstrapError(f"apt-get installed postgresql but initdb/pg_ctl are not found (log: {log})")
    return f"installed Debian's postgresql ({found})"


# ---------------------------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report what is missing; build nothing")
    parser.add_argument("--only", action="append", help="only this tool (repeatable)")
    parser.add_argument("--tests", action="store_true",
                        help="also what only the test suite needs (PostgreSQL for the team-backend tests)")
    parser.add_argument("--venv-only", action="store_true",
                        help="only the virtualenv (pip, from PyPI; no Go build): enough for `make lint`")
    args = parser.parse_args()
    start = time.monotonic()
    if args.venv_only:
        try:
            ensure_venv()
        except BootstrapError as err:
            print(f"bootstrap: ERROR: {err}", file=sys.stderr)
            return 1
        say(f"virtualenv ready in {time.monotonic() - start:.0f} s: {VENV}")
        return 0
    all_tools = [t for t in tools() if not args.only or t.name in args.only]
    missing = []
    try:
        if not args.check and not args.only:
            ensure_venv()
        for i, tool in enumerate(all_tools, 1):
            from_path = usable_from_path(tool)
            if from_path:
                for b, p in from_path.items():
                    link(b, p)
                say(f"{tool.name}: using {', '.join(str(p) for p in from_path.values())} from PATH")
                continue
            if not is_built(tool):
                if args.check:
                    missing.append(tool.name)
                    continue
                if shutil.which("go") is None:
                    raise BootstrapError(f"{tool.name} {tool.version} is neither on PATH nor cached, and Go is "
                                         "not installed: install Go >= 1.26 or put the tool on PATH")
                build(tool, i, len(all_tools))
            else:
                say(f"{tool.name} {tool.version}: cached in {tool.cache_dir}")
            if tool.name == "kubernetes-provider":
                continue  # registered in the plugin cache instead: on PATH the CLI warns every run
            for b in tool.binaries:
                link(b, tool.cache_dir / b)
        if (not args.only or "ironic" in args.only) and not ensure_ironic(check=args.check):
            missing.append("ironic")
        if args.check:
            if missing:
                say(f"missing: {', '.join(missing)}")
                return 1
            return 0
        if not args.only or "kubernetes-provider" in args.only:
            install_kubernetes_plugin(next(t for t in tools() if t.name == "kubernetes-provider"))
        if not args.only:
            say(f"python language host: {install_language_host()}")
            ensure_crd_modules()
        if (args.tests and not args.only) or (args.only and "postgresql" in args.only):
            say(f"postgresql: {ensure_postgres()}")
    except (BootstrapError, GoMissingError) as err:
        print(f"bootstrap: ERROR: {err}\nbootstrap: what to do: fix the cause above and run "
              "`python3 tools/bootstrap.py` again; finished tools are kept.", file=sys.stderr)
        return 1
    say(f"ready in {time.monotonic() - start:.0f} s; tools in {BIN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

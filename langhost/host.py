"""A minimal Pulumi language host for Python programs, served over the SDK's own gRPC stubs.

Why it exists: the pulumi CLI needs an executable `pulumi-language-python` for every `runtime: python`
project and for directory policy packs, and upstream's (a Go module) is not served where this project is
built. tools/bootstrap.py installs this one only where no official host is on PATH.

What it does, and no more: run the program through the SDK's `pulumi-language-python-exec` shim (which
must sit beside the launcher, as the engine expects), report the resource plugins the program's
virtualenv needs, and run policy packs. Everything else answers Unimplemented, which the engine
tolerates.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

#: the exit code the exec shim uses for "the error was already reported to the engine"
EXIT_ALREADY_REPORTED = 32

HOST_VERSION = "3.272.0"  # the SDK we were written against; shown by `pulumi about`

# Runs inside the *program's* virtualenv: the resource plugins its packages carry. A package declares one
# with `pulumi-plugin.json` at its root (`"resource": true`, and usually its name and version); found
# there directly rather than through every distribution's file list, which took ~0.1 s of each CLI run.
# A plugin file without name or version takes them from the distribution that installed the package.
_LIST_PLUGINS = r"""
import glob, json, os, sys
out = []
for base in dict.fromkeys(p for p in sys.path if p and os.path.isdir(p)):
    for path in sorted(glob.glob(os.path.join(base, "*", "pulumi-plugin.json"))):
        try:
            with open(path) as f:
                meta = json.load(f)
        except Exception:
            continue
        if not meta.get("resource"):
            continue
        name, version = meta.get("name"), meta.get("version")
        if not (name and version):
            import importlib.metadata as md
            package = os.path.basename(os.path.dirname(path))
            try:
                dist = md.distribution((md.packages_distributions().get(package) or [package])[0])
            except md.PackageNotFoundError:
                continue        # a stray plugin file no installed distribution owns
            name = name or dist.metadata["Name"]
            version = version or dist.version
        out.append({"name": name, "version": version, "server": meta.get("server", "")})
print(json.dumps(out))
"""

_LIST_DISTRIBUTIONS = r"""
import importlib.metadata as md, json
print(json.dumps(sorted({(d.metadata["Name"], d.version) for d in md.distributions()})))
"""


class ProgramError(Exception):
    """The program's virtualenv is unusable; the message says what to fix."""


def python_for(info: Any, pwd: str = "") -> str:
    """The interpreter of the program's virtualenv (Pulumi.yaml `runtime.options.virtualenv`), or ours.

    A relative virtualenv is relative to the project root, as the official host treats it.
    """
    venv = ""
    root = pwd
    if info is not None:
        options = dict(info.options.items()) if info.HasField("options") else {}
        venv = str(options.get("virtualenv") or "")
        root = info.root_directory or info.program_directory or pwd
    if not venv:
        venv = os.environ.get("PULUMI_RUNTIME_VIRTUALENV", "")
    if not venv:
        return sys.executable
    path = Path(venv) if os.path.isabs(venv) else Path(root or ".") / venv
    python = path / "bin" / "python"
    if not python.exists():
        raise ProgramError(f"the virtualenv {path} named in Pulumi.yaml has no bin/python: "
                           "create it (python3 tools/bootstrap.py does) or fix runtime.options.virtualenv")
    return str(python)


def venv_env(python: str) -> dict[str, str]:
    env = dict(os.environ)
    venv = Path(python).parent.parent
    if (venv / "pyvenv.cfg").exists():
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["PULUMI_RUNTIME_VIRTUALENV"] = str(venv)
    return env


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):  # type: ignore[misc]
    def __init__(self, engine_address: str, exec_script: Path) -> None:
        self.engine_address = engine_address
        self.exec_script = exec_script
        self.children: set[subprocess.Popen[Any]] = set()     # programs and policy packs running now
        self.children_lock = threading.Lock()

    def _track(self, proc: subprocess.Popen[Any]) -> None:
        with self.children_lock:
            self.children.add(proc)

    def _untrack(self, proc: subprocess.Popen[Any]) -> None:
        with self.children_lock:
            self.children.discard(proc)

    def stop_children(self, grace: float = 5.0) -> None:
        """Ends the programs and policy packs this host started: SIGTERM (a program to its whole session, which
        it leads), then SIGKILL after `grace` seconds. For an engine that died alone: a program whose resource
        monitor is gone does not always end (seen: still running minutes later), and this host's Run waits
        for it."""
        with self.children_lock:
            procs = list(self.children)
        for proc in procs:
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)

    # -- identity --------------------------------------------------------------------------------------
    def Handshake(self, request: Any, context: Any) -> Any:
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=HOST_VERSION)

    def About(self, request: Any, context: Any) -> Any:
        python = python_for(request.info if request.HasField("info") else None)
        version = subprocess.run([python, "--version"], capture_output=True, text=True).stdout.split()[-1]
        return language_pb2.AboutResponse(executable=python, version=version,
                                          metadata={"host": "metal3-pivot langhost"})

    # -- plugins and dependencies ------------------------------------------------------------------------
    def _plugins(self, info: Any, pwd: str) -> list[dict[str, str]]:
        python = python_for(info, pwd)
        out = subprocess.run([python, "-c", _LIST_PLUGINS], capture_output=True, text=True, env=venv_env(python))
        if out.returncode != 0:
            raise ProgramError(f"listing the program's Pulumi packages failed:\n{out.stderr}")
        plugins: list[dict[str, str]] = json.loads(out.stdout)
        for p in plugins:
            if not p["version"].startswith("v"):
                p["version"] = "v" + p["version"]
        return plugins

    def GetRequiredPackages(self, request: Any, context: Any) -> Any:
        try:
            plugins = self._plugins(request.info, request.info.root_directory)
        except ProgramError as err:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        return language_pb2.GetRequiredPackagesResponse(packages=[
            plugin_pb2.PackageDependency(name=p["name"], kind="resource", version=p["version"], server=p["server"])
            for p in plugins])

    def GetRequiredPlugins(self, request: Any, context: Any) -> Any:
        try:
            plugins = self._plugins(request.info if request.HasField("info") else None, request.pwd)
        except ProgramError as err:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        return language_pb2.GetRequiredPluginsResponse(plugins=[
            plugin_pb2.PluginDependency(name=p["name"], kind="resource", version=p["version"], server=p["server"])
            for p in plugins])

    def GetProgramDependencies(self, request: Any, context: Any) -> Any:
        python = python_for(request.info if request.HasField("info") else None, request.pwd)
        out = subprocess.run([python, "-c", _LIST_DISTRIBUTIONS], capture_output=True, text=True)
        deps = json.loads(out.stdout or "[]")
        return language_pb2.GetProgramDependenciesResponse(
            dependencies=[language_pb2.DependencyInfo(name=n, version=v) for n, v in deps])

    def InstallDependencies(self, request: Any, context: Any) -> Iterator[Any]:
        """The project's bootstrap prepares the virtualenv; installing here would hide a broken setup."""
        return iter(())

    # -- running -----------------------------------------------------------------------------------------
    def Run(self, request: Any, context: Any) -> Any:
        try:
            python = python_for(request.info if request.HasField("info") else None, request.pwd)
        except ProgramError as err:
            return language_pb2.RunResponse(error=str(err))
        program = request.program or "."
        if request.HasField("info") and request.info.entry_point:
            program = request.info.entry_point
        args = [python, "-u", str(self.exec_script),
                "--monitor", request.monitor_address, "--engine", self.engine_address,
                "--project", request.project, "--stack", request.stack, "--pwd", request.pwd,
                "--dry_run", "true" if request.dryRun else "false", "--parallel", str(request.parallel)]
        if request.HasField("info") and request.info.root_directory:
            args += ["--root_directory", request.info.root_directory]
        if request.organization:
            args += ["--organization", request.organization]
        args += [program, *request.args]
        env = venv_env(python)
        # an empty config must be `{}`: the SDK's set_all_config fails on `null`
        env["PULUMI_CONFIG"] = json.dumps(dict(request.config))
        env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        # own session: the engine's SIGINT to the plugin on shutdown must not hit the program mid-flight
        # (it ends on its own when the engine ends normally; stop_children ends it when the engine died)
        proc = subprocess.Popen(args, cwd=request.pwd or None, env=env, start_new_session=True)
        self._track(proc)
        try:
            rc = proc.wait()
        finally:
            self._untrack(proc)
        if rc == 0:
            return language_pb2.RunResponse()
        if rc == EXIT_ALREADY_REPORTED:
            return language_pb2.RunResponse(bail=True)
        return language_pb2.RunResponse(error=f"Program exited with non-zero exit code: {rc}")

    def RunPlugin(self, request: Any, context: Any) -> Iterator[Any]:
        """Policy packs (kind analyzer): `python -u -m pulumi.policy ARGS PACKDIR`, output streamed back."""
        info = request.info if request.HasField("info") else None
        pack_dir = (info.program_directory if info is not None and info.program_directory else request.program)
        try:
            python = python_for(info, request.pwd)
        except ProgramError as err:
            yield language_pb2.RunPluginResponse(stderr=str(err).encode())
            yield language_pb2.RunPluginResponse(exitcode=1)
            return
        env = venv_env(python)
        for item in request.env:
            key, _, value = item.partition("=")
            env[key] = value
        proc = subprocess.Popen([python, "-u", "-m", "pulumi.policy", *request.args, pack_dir],
                                cwd=request.pwd or None, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._track(proc)
        try:
            yield from self._stream(proc)
        finally:
            self._untrack(proc)

    def _stream(self, proc: subprocess.Popen[bytes]) -> Iterator[Any]:
        chunks: list[Any] = []
        cond = threading.Condition()

        def pump(stream: Any, field: str) -> None:
            for data in iter(lambda: stream.read1(65536), b""):
                with cond:
                    chunks.append(language_pb2.RunPluginResponse(**{field: data}))
                    cond.notify()
            with cond:
                chunks.append(None)
                cond.notify()

        readers = [threading.Thread(target=pump, args=(proc.stdout, "stdout"), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, "stderr"), daemon=True)]
        for t in readers:
            t.start()
        finished = 0
        while finished < 2:
            with cond:
                while not chunks:
                    cond.wait()
                item = chunks.pop(0)
            if item is None:
                finished += 1
            else:
                yield item
        yield language_pb2.RunPluginResponse(exitcode=proc.wait())


def _signal(proc: subprocess.Popen[Any], sig: int) -> None:
    """To the program's session when it leads one (Run starts it so), else to the process alone."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def serve(engine_address: str, exec_script: Path) -> tuple[grpc.Server, LanguageHost]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_receive_message_length", 400 * 1024 * 1024)])
    host = LanguageHost(engine_address, exec_script)
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(host, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    return server, host



def engine_answers(address: str) -> bool:
    """A TCP connect to the engine's gRPC address: refused means nothing listens there any more. Anything else
    (a timeout on a busy machine) proves nothing and counts as an answer."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except ConnectionRefusedError:
        return False
    except (OSError, ValueError):
        return True


def stop_when_engine_gone(server: grpc.Server, host: LanguageHost, period: float = 2.0) -> threading.Thread:
    """Ends the programs this host runs, then stops the server (and so this process), once the engine that
    started it is gone: two refused connects in a row. Why: a CLI that dies alone (SIGKILL, a fatal error
    in its Go runtime) never sends the SIGINT that ends its plugins, and this host would serve an empty
    port forever, beside a program that does not end either; upstream's Go plugins check the engine's
    health for the same reason (sdk/go/common/util/rpcutil/health.go, every five minutes)."""
    def watch() -> None:
        refused = 0
        while True:
            time.sleep(period)
            refused = 0 if engine_answers(host.engine_address) else refused + 1
            if refused >= 2:
                host.stop_children()
                server.stop(grace=None)
                return
    thread = threading.Thread(target=watch, name="engine-watch", daemon=True)
    thread.start()
    return thread

"""Our Python language host, driven by the real pulumi CLI (no cluster needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.pulumi_cli import PulumiProject

pytestmark = pytest.mark.pulumi


def test_failing_program_shows_the_users_traceback_and_fails(tmp_path: Path) -> None:
    project = PulumiProject.create(tmp_path, "lh-fail", """
        def build_things():
            raise ValueError("seed inventory is inconsistent: host-7")

        build_things()
    """)
    result = project.run("preview")
    assert result.returncode != 0
    assert "Traceback" in result.output
    assert "build_things" in result.output
    assert "ValueError: seed inventory is inconsistent: host-7" in result.output


def test_empty_config_runs(tmp_path: Path) -> None:
    project = PulumiProject.create(tmp_path, "lh-empty", """
        import pulumi
        pulumi.export("config_keys", sorted(pulumi.runtime.get_config_env().keys()))
    """)
    up = project.run("up", "--yes", check=True)
    assert "+ 1 created" in up.output
    out = project.run("stack", "output", "--json", check=True)
    assert json.loads(out.stdout) == {"config_keys": []}
    # a second run with nothing changed reports no changes
    project.run("preview", "--expect-no-changes", check=True)


def test_secret_config_reaches_the_program_as_a_secret(tmp_path: Path) -> None:
    project = PulumiProject.create(tmp_path, "lh-secret", """
        import pulumi
        cfg = pulumi.Config()
        token = cfg.require_secret("token")
        plain = cfg.require("region")
        pulumi.export("token", token)
        pulumi.export("token_length", token.apply(len))
        pulumi.export("region", plain)
    """)
    project.set_config("token", "tok-4c1d-never-printed", secret=True)
    project.set_config("region", "lab-1")
    project.run("up", "--yes", check=True)
    out = json.loads(project.run("stack", "output", "--json", check=True).stdout)
    assert out["region"] == "lab-1"
    assert out["token"] == "[secret]"           # marked secret by the SDK: it came in as a secret
    assert out["token_length"] == "[secret]"    # and secrecy propagates through apply
    assert "tok-4c1d-never-printed" not in project.all_text()  # not in any output, state or stack file
    shown = json.loads(project.run("stack", "output", "--json", "--show-secrets", check=True).stdout)
    assert shown["token"] == "tok-4c1d-never-printed"


def test_refresh_and_destroy(tmp_path: Path) -> None:
    project = PulumiProject.create(tmp_path, "lh-cycle", """
        import pulumi
        pulumi.export("n", 1)
    """)
    project.run("up", "--yes", check=True)
    project.run("refresh", "--yes", check=True)
    project.run("destroy", "--yes", check=True)


@pytest.mark.unit
def test_the_host_loads_the_grpc_stubs_without_the_sdk_and_leaves_the_sdk_importable() -> None:
    """The launcher imports only the SDK's gRPC stubs (the SDK's own import is ~0.15 s of each of the
    host's two starts per CLI run); the stand-in packages must not outlive that import."""
    probe = (
        "import sys, langhost.__main__ as m\n"
        "assert 'pulumi' not in sys.modules and 'pulumi.runtime' not in sys.modules, 'stand-ins left behind'\n"
        "assert 'pulumi.runtime.proto.language_pb2' in sys.modules\n"
        "import pulumi, pulumi.runtime.proto as proto\n"
        "assert pulumi.Output and proto.language_pb2.RunRequest\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.unit
def test_the_host_exits_once_its_engine_is_gone(tmp_path: Path) -> None:
    """A CLI that dies alone never stops its plugins: the host must notice and go (langhost/host.py,
    stop_when_engine_gone), not serve an empty port forever."""
    import socket
    import time

    (tmp_path / "pulumi-language-python-exec").write_text("")
    engine = socket.create_server(("127.0.0.1", 0))
    root = Path(__file__).resolve().parent.parent
    host = subprocess.Popen([sys.executable, "-m", "langhost", "--exec-dir", str(tmp_path),
                             f"127.0.0.1:{engine.getsockname()[1]}"], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None and host.stdout.readline().strip().isdigit()   # its port: serving
        time.sleep(5)
        assert host.poll() is None, "the host left while its engine still listened"
        engine.close()
        assert host.wait(timeout=15) == 0
    finally:
        host.kill()
        host.wait()

"""`make demo` end to end, and its secrets audit (lab/audit.py).

The demo is metal3-dev-env's CI workflow on the live plane (lab/demo.py): dev-env, the target cluster
provisioned through the live controllers and Ironic, the providers installed on it with `pulumi up`, the
pivot and the move back with `pulumi up` (preview with the policy pack first), each followed by
metal3-dev-env's checks against the live controllers and Ironic and the machines' own record (nothing
re-provisioned or power-cycled), a --to-directory backup, the secrets audit, and de-provisioning. This is
the suite's "workflow end to end with `pulumi up`" test. The audit searches the stack state, every move
log the run wrote, the lab's logs and the captured output for both kubeconfigs' client key and
certificate and for the BMC passwords; the backup must be a 0700 folder of 0600 files. The audit's own
checks are proven to find what they look for (negative controls).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab import audit
from lab.data import live_metadata
from lab.data.seed_objects import Topology
from tests.kit.env import ROOT, tool_env

TOPOLOGY = Topology(namespace="metal3", clusters=1, control_planes=3, workers=2, spare_hosts=1)


def test_audit_finds_what_it_looks_for(tmp_path: Path) -> None:
    needles = audit.bmc_needles(TOPOLOGY)
    password = next(v for k, v in needles.items() if k.startswith("BMC password of") and "base64" not in k)
    assert password.startswith(b"bmc-") and len(needles) == 2 * 6
    leaky = tmp_path / "state" / "leak.json"
    leaky.parent.mkdir()
    leaky.write_bytes(b'{"x": "' + password + b'"}')
    encoded = tmp_path / "state" / "encoded.log"
    encoded.write_bytes(base64.b64encode(password))
    clean = tmp_path / "state" / "clean.log"
    clean.write_text("nothing here")
    backup = tmp_path / "backup"
    backup.mkdir(mode=0o700)
    (backup / "secret.yaml").write_bytes(password)            # allowed inside a backup, when 0600
    (backup / "secret.yaml").chmod(0o644)
    report = audit.audit(audit.files_under(tmp_path), needles, [backup])
    assert report.files == 3                                  # the backup's content is not searched
    assert {f.path.name for f in report.findings} == {"leak.json", "encoded.log", "secret.yaml"}
    assert "mode 0644, must be 0600" in str(next(f for f in report.findings if f.path.name == "secret.yaml"))
    assert report.summary().startswith("secrets audit: 3 findings in 3 files")


def test_audit_kubeconfig_needles(tmp_path: Path) -> None:
    pem = b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKEYBODYKEYBODYKEYBODYKEYBODY\n-----END EC PRIVATE KEY-----\n"
    kc = tmp_path / "kubeconfig"
    key = base64.b64encode(pem).decode()
    kc.write_text(f"apiVersion: v1\nusers:\n- name: admin\n  user:\n    client-key-data: {key}\n")
    needles = audit.kubeconfig_needles(kc, "test")
    assert needles["test client-key-data (decoded)"] == b"MHcCAQEEIKEYBODYKEYBODYKEYBODYKEYBODY"
    out = tmp_path / "out.log"
    out.write_bytes(b"...MHcCAQEEIKEYBODYKEYBODYKEYBODYKEYBODY...")
    assert [f.what for f in audit.audit([out], needles).findings] == ["contains the test client-key-data (decoded)"]


@pytest.mark.pulumi
@pytest.mark.cluster
@pytest.mark.timeout(2700)        # the whole live workflow: ~10 min alone, more beside another test file
def test_demo_end_to_end_leaks_no_secret(tmp_path: Path) -> None:
    env = tool_env(METAL3_PIVOT_CACHE=str(tmp_path / "cache"), PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true")
    env.pop("PULUMI_BACKEND_URL", None)
    env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    try:
        demo = subprocess.run([sys.executable, "-m", "lab.demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=2400)
    finally:
        subprocess.run([sys.executable, "-m", "lab.cli", "down"], cwd=ROOT, env=env, capture_output=True, timeout=120)
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output[-4000:]
    summary = re.search(r"secrets audit: (\d+) findings in (\d+) files", output)
    assert summary, output[-4000:]
    findings, files = int(summary.group(1)), int(summary.group(2))
    assert findings == 0, output[-4000:]
    moves = list((tmp_path / "cache" / "logs" / "moves").glob("*.log"))
    assert len(moves) >= 2                                    # the pivot's and the move back's logs
    assert files >= len(moves) + 3                            # + state, output, cluster logs
    backup = ROOT / ".lab" / "backup"
    assert oct(os.stat(backup).st_mode & 0o777) == "0o700"
    assert all(oct(f.stat().st_mode & 0o777) == "0o600" for f in backup.rglob("*") if f.is_file())
    assert output.count("verify: OK") == 2, output[-4000:]
    # step 5 after the pivot and after the move back: every check passed, printed
    assert output.count("all checks passed on") == 2, output[-4000:]
    assert "[FAIL]" not in output and "no power, media or boot change reached any machine: none" in output
    assert "7. de-provision (hosts available again)" in output
    # what the live controllers left, for the benchmark's seed (lab/data/live_metadata.py)
    captured = live_metadata.load(ROOT / ".lab" / "live-metadata.json")
    assert captured["Machine"].objects == 2 and captured["BareMetalHost"].objects >= 2, captured
    assert output.count("Ironics alive at once: at most 1 ") == 2, output[-4000:]

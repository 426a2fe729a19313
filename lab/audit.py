"""Secrets audit: search what a run wrote for credentials that must never appear in plaintext.

What is searched for: the client key and client certificate of each kubeconfig (their base64 text as the
kubeconfig holds it, and the PEM body once decoded), bearer tokens, and the seeded BMC passwords (the
distinctive `bmc-<hex>` strings of lab/data/seed_objects.py, as text and as the base64 a Secret holds).
Where: every file under the given roots (gzip files decompressed). A backup folder of
`metal3-pivot move --to-directory` holds Secrets by design: it is not searched, but it must be mode 0700
with every file 0600 (anything else is a finding).

    python -m lab.audit --kubeconfig .lab/ephemeral/kubeconfig --kubeconfig .lab/target/kubeconfig \\
        --root .state --root ~/.cache/metal3-pivot/logs/moves --since-minutes 10 [--backup DIR]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.data.seed_objects import Topology, build


@dataclass(frozen=True)
class Finding:
    path: Path
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


@dataclass
class AuditReport:
    files: int = 0
    findings: list[Finding] = field(default_factory=list)
    needles: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        return (f"secrets audit: {len(self.findings)} findings in {self.files} files "
                f"({self.needles} secrets searched for)")


def kubeconfig_needles(path: Path, label: str) -> dict[str, bytes]:
    """Credentials of a kubeconfig, each in the forms a leak would take."""
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, bytes] = {}
    for user in config.get("users") or []:
        creds = user.get("user") or {}
        for field_name in ("client-key-data", "client-certificate-data", "token"):
            value = creds.get(field_name)
            if not value:
                continue
            what = f"{label} {field_name}"
            out[what] = str(value)[:64].encode()
            if field_name != "token":
                pem = base64.b64decode(value).decode(errors="replace")
                body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
                out[f"{what} (decoded)"] = body[:64].encode()
    return out


def bmc_needles(topology: Topology) -> dict[str, bytes]:
    """The seeded BMC passwords, as text and as the base64 a Secret's data holds."""
    return password_needles([so.obj for so in build(topology)])


def password_needles(objs: list[dict[str, Any]]) -> dict[str, bytes]:
    """The `password` of every BMC credentials Secret among `objs`, as text and as base64."""
    out: dict[str, bytes] = {}
    for obj in objs:
        if obj["kind"] != "Secret":
            continue
        name = obj["metadata"]["name"]
        if "password" in (obj.get("data") or {}):
            encoded = obj["data"]["password"]
            out[f"BMC password of {name}"] = base64.b64decode(encoded)
            out[f"BMC password of {name} (base64)"] = encoded.encode()
        elif "password" in (obj.get("stringData") or {}):
            plain = str(obj["stringData"]["password"]).encode()
            out[f"BMC password of {name}"] = plain
            out[f"BMC password of {name} (base64)"] = base64.b64encode(plain)
    return out


def files_under(root: Path, *, since: float | None = None, suffixes: tuple[str, ...] = ()) -> list[Path]:
    if root.is_file():
        candidates = [root]
    elif root.is_dir():
        candidates = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    else:
        return []
    return sorted(p for p in candidates if (since is None or p.stat().st_mtime >= since)
                  and (not suffixes or p.name.endswith(suffixes)))


def _content(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        with contextlib.suppress(OSError):
            data = gzip.decompress(data)
    return data


def check_backup(directory: Path) -> list[Finding]:
    """A --to-directory backup: the folder 0700, every file 0600."""
    found = []
    if not directory.is_dir():
        return [Finding(directory, "backup folder missing")]
    paths = [directory, *directory.rglob("*")]
    for p in paths:
        mode = stat.S_IMODE(p.stat().st_mode)
        want = 0o700 if p.is_dir() else 0o600
        if mode != want:
            found.append(Finding(p, f"mode {mode:04o}, must be {want:04o} (holds Secrets)"))
    return found


def audit(files: list[Path], needles: dict[str, bytes], backups: Sequence[Path] = ()) -> AuditReport:
    report = AuditReport(needles=len(needles))
    skip = [b.resolve() for b in backups]
    for path in dict.fromkeys(files):
        if any(path.resolve().is_relative_to(b) for b in skip):
            continue
        report.files += 1
        data = _content(path)
        report.findings.extend(Finding(path, f"contains the {what}") for what, needle in needles.items()
                               if needle and needle in data)
    for b in backups:
        report.findings.extend(check_backup(b))
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kubeconfig", action="append", default=[], help="a kubeconfig whose credentials to look for")
    p.add_argument("--root", action="append", default=[], help="a file or folder to search (repeatable)")
    p.add_argument("--since-minutes", type=float, help="only files modified in the last N minutes")
    p.add_argument("--backup", action="append", default=[], help="a --to-directory backup: permissions checked")
    p.add_argument("--hosts", type=int, default=6, help="hosts of the seeded topology (its BMC passwords)")
    a = p.parse_args()
    needles: dict[str, bytes] = {}
    for i, kc in enumerate(a.kubeconfig):
        needles.update(kubeconfig_needles(Path(kc), f"kubeconfig {i + 1}"))
    needles.update(bmc_needles(Topology(namespace="metal3", clusters=1, control_planes=3,
                                        workers=max(0, a.hosts - 4), spare_hosts=1)))
    since = time.time() - a.since_minutes * 60 if a.since_minutes else None
    files = [f for r in a.root for f in files_under(Path(r).expanduser(), since=since)]
    report = audit(files, needles, [Path(b) for b in a.backup])
    for f in report.findings:
        print(f)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""A real PostgreSQL server on loopback, for the team state backend (`pulumi login postgres://...`).

Debian's `postgresql` package provides the binaries (tools/bootstrap.py installs it when missing). The
server refuses to run as root, so when we are root it runs as the `postgres` system user: the data
folder is handed to that user and every server command goes through `runuser`. Its data lives in a
temporary folder and `stop()` shuts it down completely (the suite's orphan check looks for it).

Authentication is real: a `pulumi` role with a password over TCP (scram-sha-256), like a shared server;
only the local socket in the data folder trusts the OS user, to create that role.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lab.cluster import free_port

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")

#: A Pulumi state backend writes the whole stack (6 MB with the providers' CRD schemas) at every
#: resource step. lz4 instead of pglz for the stored text takes ~0.08 s instead of ~0.2 s per write here
#: (Debian builds PostgreSQL >= 14 with lz4, and the bootstrap installs Debian's); no flush wait at commit
#: (a crash of this throw-away server may lose the last commits, which nothing here survives anyway).
TUNING = "-c default_toast_compression=lz4 -c synchronous_commit=off"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def bin_dir() -> Path:
    """Where initdb/pg_ctl live: Debian keeps them out of PATH, in /usr/lib/postgresql/<major>/bin."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]),
                            reverse=True):
        if all(os.access(os.path.join(candidate, b), os.X_OK) for b in SERVER_BINARIES):
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    raise PostgresUnavailable("PostgreSQL is not installed: run `python3 tools/bootstrap.py` (it installs "
                              "Debian's postgresql package) or `apt-get install postgresql`")


def psql_binary() -> str:
    path = shutil.which("psql") or str(bin_dir() / "psql")
    return path


@dataclass
class LocalPostgres:
    """One throw-away server; `url` is what `pulumi login` takes."""

    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="m3p-pg-")))
    port: int = field(default_factory=free_port)
    database: str = "pulumi"
    user: str = "pulumi"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    running: bool = False

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def url(self) -> str:
        return (f"postgres://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"
                "?sslmode=disable&table=pulumi_state")

    def _as_server_user(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        return [_runuser(), "-u", "postgres", "--", *cmd]

    def _run(self, cmd: list[str], what: str) -> str:
        proc = subprocess.run(self._as_server_user(cmd), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"postgres: {what} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}")
        return proc.stdout

    def start(self) -> LocalPostgres:
        binaries = bin_dir()
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.base, pg.pw_uid, pg.pw_gid)
        os.chmod(self.base, 0o700)
        pwfile = self.base / "superuser.pw"
        self._run([str(binaries / "initdb"), "-D", str(self.data), "--auth-local=trust",
                   "--auth-host=scram-sha-256", "-U", "postgres", "--encoding=UTF8", "--no-instructions"],
                  "initdb")
        self._run([str(binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "server.log"), "-w",
                   "-t", "60", "-o", f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 {TUNING}", "start"],
                  "start")
        self.running = True
        pwfile.unlink(missing_ok=True)
        self.sql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        self.sql(f"CREATE DATABASE {self.database} OWNER {self.user}")
        return self

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run SQL as the server's superuser over the local socket; returns unaligned rows."""
        return self._run([psql_binary(), "-h", str(self.base), "-p", str(self.port), "-U", "postgres", "-d",
                          database, "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", statement], "psql")

    def stop(self) -> None:
        if self.running:
            self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], "stop")
            self.running = False
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_processes(base: Path) -> list[int]:
    """Pids of postgres processes whose data folder is under `base` (the orphan check)."""
    found = []
    needle = str(base)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "postgres" in cmd and needle in cmd:
            found.append(int(proc.name))
    return found


def _runuser() -> str:
    """util-linux's runuser lives in /usr/sbin, which a minimal PATH (`env -i`, some CI runners) lacks."""
    for candidate in (shutil.which("runuser"), "/usr/sbin/runuser", "/sbin/runuser"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise PostgresUnavailable("runuser (util-linux) is needed to run PostgreSQL's server as the `postgres` user "
                              "when the tests run as root: install util-linux")

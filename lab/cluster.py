"""Real local management clusters: etcd + kube-apiserver + kube-controller-manager on loopback.

Why these three and nothing lighter: the pivot's worst failures are objects lost to the garbage
collector (an ownerReference to a UID that does not exist, an owner deleted before its dependents), and
a namespace that never finishes terminating. Only a real controller-manager running the
garbage-collector and namespace controllers shows them, so every test cluster runs one.

Two lifetimes:
- `attached=True` (pytest fixtures): children get PR_SET_PDEATHSIG, so even a SIGKILLed test run leaves
  no process behind.
- `attached=False` (`metal3-lab up`): children outlive the command; `metal3-lab down` stops them using
  the pids recorded in the cluster's folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from metal3_pivot import Kube, load_kubeconfig

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
_PR_SET_PDEATHSIG = 1


class ClusterError(Exception):
    """A local cluster could not be started or stopped; the message names the component and its log."""


# ---------------------------------------------------------------------------------------------- certificates

def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: CertificateIssuerPrivateKeyTypes, *, ca: bool = False,
          server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    else:
        usage = [x509.ExtendedKeyUsageOID.SERVER_AUTH] if server else [x509.ExtendedKeyUsageOID.CLIENT_AUTH]
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def load_certificate(pem: bytes) -> x509.Certificate:
    """A PEM certificate; one with serial number 0 is accepted quietly: CAPI's `<cluster>-ca` has it
    (util/secret newSelfSignedCACert: `SerialNumber: 0`), which cryptography warns about (RFC 5280)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
        return x509.load_pem_x509_certificate(pem)


def write_pki(pki: Path, ca_pem: tuple[bytes, bytes] | None = None) -> None:
    """One CA signs the serving cert and the admin client cert (O=system:masters).

    `ca_pem` (certificate, private key) is a CA to use instead of a fresh one: a workload cluster the
    lab boots for a machine runs with the CA its user data carries (the `<cluster>-ca` KCP generated),
    so that the kubeconfig KCP writes against that CA works against it, as after `kubeadm init`."""
    pki.mkdir(parents=True, exist_ok=True)
    ca_key: CertificateIssuerPrivateKeyTypes
    if ca_pem is None:
        ca_key = _key()
        ca_name = _name("metal3-pivot-local-ca")
        ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    else:
        ca = load_certificate(ca_pem[0])
        loaded = serialization.load_pem_private_key(ca_pem[1], password=None)
        if not isinstance(loaded, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ClusterError(f"the given CA key is a {type(loaded).__name__}: give an RSA or EC key")
        ca_key, ca_name = loaded, ca.subject
    serving_key = _key()
    serving = _cert(_name("kube-apiserver"), serving_key, ca_name, ca_key, server=True)
    admin_key = _key()
    admin = _cert(_name("admin", "system:masters"), admin_key, ca_name, ca_key)
    sa_key = _key()
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        **({"ca.key": ca_pem[1]} if ca_pem is not None else {}),
        "serving.crt": serving.public_bytes(serialization.Encoding.PEM), "serving.key": _pem_key(serving_key),
        "admin.crt": admin.public_bytes(serialization.Encoding.PEM), "admin.key": _pem_key(admin_key),
        "sa.key": _pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    for name, data in files.items():
        (pki / name).write_bytes(data)
        os.chmod(pki / name, 0o600)


# ---------------------------------------------------------------------------------------------- cluster

#: where free_port keeps its reservations: one empty file per port handed out, shared by every process
#: on the machine (pytest workers, `metal3-lab`, the demo)
PORT_RESERVATIONS = Path(os.environ.get("M3P_PORT_DIR", "/tmp/m3p-ports"))
#: how long a handed-out port stays reserved: longer than any gap between picking a port and binding
#: it (a workload cluster's controlPlaneEndpoint port is picked when its topology is written and bound
#: when its host is provisioned, minutes later)
PORT_HOLD_SECONDS = 30 * 60


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback TCP port nobody listens on and nobody else will be handed soon.

    Why not just bind port 0: the kernel picks that from the ephemeral range, the same range it draws
    the source ports of outgoing connections from. Between our close and the child's bind (etcd's
    peer listener: seconds) one of the thousands of client connections a test run opens can take it,
    and etcd dies with "address already in use" (a CI failure). So ports come from below the
    ephemeral range (above it where it starts too low), at random, and each is reserved machine-wide
    by an O_EXCL file so two workers never pick the same one while neither has bound it yet.
    """
    low, high = _ephemeral_range()
    # below the range (from 10000: the well-known and registered ports stay clear); above it when the
    # range starts too low to leave room
    candidates = range(10000, low) if low > 11000 else range(high + 1, 65536)
    if not candidates:
        raise ClusterError(f"the ephemeral port range {low}-{high} leaves no room for the lab's ports: "
                           "narrow net.ipv4.ip_local_port_range")
    if not PORT_RESERVATIONS.is_dir():
        PORT_RESERVATIONS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # shared by every user's runs, like /tmp itself
            PORT_RESERVATIONS.chmod(0o1777)
    rng = random.SystemRandom()
    for _ in range(2000):
        port = rng.choice(candidates)
        if not _reserve(port):
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise ClusterError(f"no free loopback port in {candidates.start}-{candidates.stop - 1} after 2000 tries: "
                       f"clear {PORT_RESERVATIONS}")


def _reserve(port: int) -> bool:
    """Take `port` unless another process holds a fresh reservation for it."""
    path = PORT_RESERVATIONS / str(port)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        return True
    except FileExistsError:
        try:
            if time.time() - path.stat().st_mtime < PORT_HOLD_SECONDS:
                return False
            os.utime(path)  # a stale reservation: renew it for us (a race here costs one retried bind)
            return True
        except OSError:
            return False
    except OSError:  # an unwritable reservations folder must not stop the lab: fall back to bind alone
        return True


def _pdeathsig() -> None:
    """Runs in the child: die with the parent (Linux), so an interrupted test leaves no orphan."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class LocalCluster:
    name: str
    directory: Path
    etcd_port: int = 0
    etcd_peer_port: int = 0
    api_port: int = 0
    kcm_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)
    #: ports to serve on instead of free ones (0: pick free), e.g. a workload cluster's controlPlaneEndpoint
    fixed_api_port: int = 0
    fixed_etcd_port: int = 0
    #: (certificate, key) PEM of the CA to run with instead of a fresh one; not saved in cluster.json
    #: (pki/ca.crt and pki/ca.key hold it)
    ca_pem: tuple[bytes, bytes] | None = field(default=None, repr=False)
    #: an etcd data folder (of a cluster stopped cleanly) to start from instead of an empty one; not saved
    #: in cluster.json. The suite starts most clusters from one that holds the CRDs and inventory already
    #: (lab/cli.py: start_clusters): the API server establishing 42 CRDs is most of a cluster's start
    etcd_seed: Path | None = field(default=None, repr=False)

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    def log(self, component: str) -> Path:
        return self.directory / "logs" / f"{component}.log"

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, *, attached: bool = True, timeout: float = 60.0) -> LocalCluster:
        start_all([self], attached=attached, timeout=timeout)
        return self

    def _prepare(self) -> None:
        for tool in COMPONENTS:
            if shutil.which(tool) is None:
                raise ClusterError(f"{tool} is not on PATH: run `python3 tools/bootstrap.py` and put "
                                   ".tools/bin first on PATH (the Makefile does)")
        if self.directory.exists():
            shutil.rmtree(self.directory)
        (self.directory / "logs").mkdir(parents=True)
        write_pki(self.pki, self.ca_pem)
        if self.etcd_seed is not None:
            shutil.copytree(self.etcd_seed, self.directory / "etcd")
        self.etcd_port, self.etcd_peer_port, self.api_port, self.kcm_port = (free_port() for _ in range(4))
        self.etcd_port = self.fixed_etcd_port or self.etcd_port
        self.api_port = self.fixed_api_port or self.api_port
        self._write_kubeconfig()

    def _launch(self, component: str, attached: bool) -> None:
        args = {"etcd": self._etcd_args, "kube-apiserver": self._apiserver_args,
                "kube-controller-manager": self._kcm_args}[component]()
        self._spawn(component, args, attached)

    def _wait_healthy(self, component: str, deadline: float) -> None:
        url = {"etcd": f"http://127.0.0.1:{self.etcd_port}/health", "kube-apiserver": f"{self.server}/readyz",
               "kube-controller-manager": f"https://127.0.0.1:{self.kcm_port}/healthz"}[component]
        self._wait(url, component, deadline, client_cert=component == "kube-apiserver")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM in reverse start order, SIGKILL after `grace`; safe to call twice."""
        for component in reversed(COMPONENTS):
            pid = self.pids.get(component)
            if not pid:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.02)
            self.pids.pop(component, None)
        if self.directory.exists():
            self._save()

    def kill(self) -> None:
        """SIGKILL every component at once and reap them: for a throwaway cluster, whose data nobody reads
        again (a test's), `stop`'s graceful shutdown is ~1 s per cluster for nothing."""
        for pid in self.pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self.pids.values():
            while _alive(pid):
                time.sleep(0.02)
        self.pids.clear()
        if self.directory.exists():
            self._save()

    def restart(self, component: str, *, down_for: float = 0.0, timeout: float = 60.0) -> None:
        """Kill one component (SIGKILL, like a crash) and start it again: for the reliability tests."""
        pid = self.pids[component]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.02)
        time.sleep(down_for)
        self._launch(component, attached=True)
        self._wait_healthy(component, time.monotonic() + timeout)

    def running(self) -> bool:
        return bool(self.pids) and all(_alive(p) for p in self.pids.values())

    # -- internals ---------------------------------------------------------------------------------------
    def _spawn(self, component: str, args: list[str], attached: bool) -> None:
        log = self.log(component).open("ab")
        proc = subprocess.Popen([component, *args], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.directory, start_new_session=not attached,
                                preexec_fn=_pdeathsig if attached else None)
        log.close()
        self.pids[component] = proc.pid
        self._procs = getattr(self, "_procs", {})
        self._procs[component] = proc  # keeps the Popen alive so its zombie is reaped

    def _wait(self, url: str, component: str, deadline: float, client_cert: bool = False) -> None:
        if client_cert:
            ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
            ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        else:  # the controller-manager's self-signed serving cert: only liveness matters here
            ctx = ssl._create_unverified_context()
        last = ""
        while time.monotonic() < deadline:
            pid = self.pids[component]
            if not _alive(pid):
                raise ClusterError(f"{self.name}: {component} exited during start-up; see {self.log(component)}:\n"
                                   + _tail(self.log(component)))
            try:
                with urllib.request.urlopen(url, context=ctx if url.startswith("https") else None, timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception as err:  # not up yet: connection refused, 500 while post-start hooks run
                last = str(err)
            time.sleep(0.1)
        raise ClusterError(f"{self.name}: {component} not healthy at {url} in time ({last}); see "
                           f"{self.log(component)}:\n{_tail(self.log(component))}")

    def _etcd_args(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        return ["--name", self.name, "--data-dir", str(self.directory / "etcd"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{self.name}={peer}", "--unsafe-no-fsync", "--log-level", "warn",
                "--quota-backend-bytes", str(4 * 1024**3)]

    def _apiserver_args(self) -> list[str]:
        p = self.pki
        return ["--advertise-address=127.0.0.1", "--bind-address=127.0.0.1", f"--secure-port={self.api_port}",
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}", f"--cert-dir={p}",
                f"--tls-cert-file={p / 'serving.crt'}", f"--tls-private-key-file={p / 'serving.key'}",
                f"--client-ca-file={p / 'ca.crt'}", "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true", "--disable-admission-plugins=ServiceAccount",
                "--authorization-mode=RBAC", "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={p / 'sa.pub'}", f"--service-account-signing-key-file={p / 'sa.key'}",
                "--endpoint-reconciler-type=none", "--enable-aggregator-routing=true", "--max-requests-inflight=800",
                "--max-mutating-requests-inflight=400"]

    def _kcm_args(self) -> list[str]:
        kc = str(self.kubeconfig)
        return ["--controllers=namespace-controller,garbage-collector-controller", f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={self.kcm_port}",
                f"--cert-dir={self.directory / 'kcm-certs'}", "--concurrent-gc-syncs=20",
                "--kube-api-qps=200", "--kube-api-burst=400"]

    def _write_kubeconfig(self) -> None:
        import base64

        def b64(name: str) -> str:
            return base64.b64encode((self.pki / name).read_bytes()).decode()

        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": self.name,
            "clusters": [{"name": self.name, "cluster": {"server": self.server,
                                                         "certificate-authority-data": b64("ca.crt")}}],
            "users": [{"name": f"{self.name}-admin", "user": {"client-certificate-data": b64("admin.crt"),
                                                              "client-key-data": b64("admin.key")}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": f"{self.name}-admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        os.chmod(self.kubeconfig, 0o600)

    def _save(self) -> None:
        state = {k: v for k, v in asdict(self).items() if k not in ("directory", "ca_pem", "etcd_seed")}
        (self.directory / "cluster.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path) -> LocalCluster:
        state = json.loads((directory / "cluster.json").read_text())
        return cls(directory=directory, **state)


def start_all(clusters: list[LocalCluster], *, attached: bool = True, timeout: float = 60.0) -> None:
    """Start several clusters side by side, component by component.

    Every child is spawned from the calling thread: PR_SET_PDEATHSIG fires when the *thread* that
    forked a child exits, so spawning from a worker thread would kill the cluster with that thread.
    """
    deadline = time.monotonic() + timeout
    try:
        for c in clusters:
            c._prepare()
        for component in COMPONENTS:
            for c in clusters:
                c._launch(component, attached)
            for c in clusters:
                c._wait_healthy(component, deadline)
    except BaseException:
        for c in clusters:
            c.stop()
        raise
    for c in clusters:
        c._save()


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return "(no log)"


def processes_under(directory: Path, binaries: tuple[str, ...] = COMPONENTS) -> list[int]:
    """Pids of cluster components (or other lab `binaries`, e.g. the management plane's managers) whose
    command line mentions `directory`: the orphan check."""
    found = []
    needle = str(directory.resolve())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().split(") ")[1][0]
        except (OSError, IndexError):
            continue
        if needle in cmd and state != "Z" and any(c in cmd.split(" ")[0] for c in binaries):
            found.append(int(proc.name))
    return found


def kube_for(cluster: LocalCluster | Path, name: str | None = None, **options: Any) -> Kube:
    """An engine client for a local cluster (or a kubeconfig file, e.g. a fault proxy's), named after it
    unless `name` says otherwise; `options` go to Kube (concurrency, retries, timeout)."""
    path = cluster.kubeconfig if isinstance(cluster, LocalCluster) else cluster
    label = name or (cluster.name if isinstance(cluster, LocalCluster) else "cluster")
    return Kube(load_kubeconfig(path), name=label, **options)

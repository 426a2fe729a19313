"""One Ironic per management cluster, run as a local process, as the Ironic pod of a Metal3 site runs.

What runs: the single-process `ironic` command (API + conductor in one; `rpc_transport = none`, so no
message bus and no JSON-RPC between them), on sqlite in its own state folder (`ironic-dbsync
create_schema` first), `auth_strategy = noauth` (BMO is then configured without credentials: an
`METAL3_AUTH_ROOT_DIR` without an `ironic/` folder), and beside it the pod's httpd: a small file server
for Ironic's `http_root`, where it publishes the virtual-media ISOs the BMCs fetch.

Drivers: `redfish` (what BMO uses for `redfish-virtualmedia+http://` addresses) and `fake-hardware`;
`ipmi` only when `ipmitool` is installed (Ironic refuses to enable it otherwise). Deploy interfaces
`ramdisk` (live-iso images: nothing is written to disk, no agent needed), `direct` and `fake`.

Every port comes from `lab.cluster.free_port`, so any number of Ironics run side by side.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.cluster import free_port
from lab.plane import spawn

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"
IRONIC_PROGRAMS = ("ironic", "ironic-dbsync", "sushy-emulator", "lab.machines.httpd")


class IronicError(Exception):
    """Ironic could not be prepared or started; the message says what to do."""


def entry_point(name: str) -> Path:
    """The path of an Ironic-venv command (`ironic`, `ironic-dbsync`, `sushy-emulator`): the checkout's
    `.tools/bin` link that tools/bootstrap.py makes, else one on PATH."""
    linked = TOOLS_BIN / name
    if linked.exists():
        return linked
    found = shutil.which(name)
    if found is None:
        raise IronicError(f"{name} is not installed: run `python3 tools/bootstrap.py` (it installs Ironic and "
                          "sushy-tools into their own virtualenv and links them into .tools/bin)")
    return Path(found)


def _config(state: Path, name: str, api_port: int, http_port: int) -> str:
    hardware = ["fake-hardware", "redfish"] + (["ipmi"] if shutil.which("ipmitool") else [])
    power = ["fake", "redfish"] + (["ipmitool"] if "ipmi" in hardware else [])
    management = ["fake", "redfish"] + (["ipmitool"] if "ipmi" in hardware else [])
    return f"""# written by lab/plane/ironic.py for the management cluster {name!r}
[DEFAULT]
auth_strategy = noauth
rpc_transport = none
host = ironic-{name}
state_path = {state}
tempdir = {state}/tmp
debug = false
use_stderr = true
enabled_hardware_types = {",".join(hardware)}
enabled_bios_interfaces = fake,no-bios,redfish
enabled_boot_interfaces = fake,redfish-virtual-media,ipxe,pxe
enabled_console_interfaces = fake,no-console
enabled_deploy_interfaces = fake,direct,ramdisk
enabled_firmware_interfaces = fake,no-firmware,redfish
enabled_inspect_interfaces = fake,no-inspect,redfish,agent
enabled_management_interfaces = {",".join(management)}
enabled_network_interfaces = noop
enabled_power_interfaces = {",".join(power)}
enabled_raid_interfaces = fake,no-raid,redfish,agent
enabled_rescue_interfaces = fake,no-rescue
enabled_storage_interfaces = noop
enabled_vendor_interfaces = fake,no-vendor,redfish
default_network_interface = noop

[api]
host_ip = 127.0.0.1
port = {api_port}

[conductor]
automated_clean = false
deploy_callback_timeout = 60
file_url_allowed_paths = {state}

[database]
connection = sqlite:///{state}/ironic.sqlite

[dhcp]
dhcp_provider = none

[deploy]
http_url = http://127.0.0.1:{http_port}
http_root = {state}/http
iso_master_path = {state}/master_iso_images

[pxe]
images_path = {state}/images
instance_master_path = {state}/master_images
tftp_root = {state}/tftpboot
tftp_master_path = {state}/tftpboot/master_images

[agent]
certificates_path = {state}/certificates

[oslo_concurrency]
lock_path = {state}/locks
"""


@dataclass
class LocalIronic:
    """Ironic of one management cluster: `directory` holds its config, database, http_root and logs."""

    name: str
    directory: Path
    api_port: int = 0
    http_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def endpoint(self) -> str:
        """What BMO's IRONIC_ENDPOINT is set to."""
        return f"{self.url}/v1/"

    @property
    def config_file(self) -> Path:
        return self.directory / "ironic.conf"

    @property
    def state(self) -> Path:
        return self.directory / "state"

    def log(self, component: str) -> Path:
        return self.directory / "logs" / f"{component}.log"

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, *, attached: bool = True, timeout: float = 120.0) -> LocalIronic:
        """Fresh state, schema, then ironic + httpd; returns once the API answers and a conductor is up."""
        deadline = time.monotonic() + timeout
        ironic, dbsync = entry_point("ironic"), entry_point("ironic-dbsync")
        if self.directory.exists():
            shutil.rmtree(self.directory)
        for sub in ("http", "tmp", "locks", "images", "master_images", "master_iso_images", "tftpboot"):
            (self.state / sub).mkdir(parents=True)
        (self.directory / "logs").mkdir()
        self.api_port, self.http_port = free_port(), free_port()
        self.config_file.write_text(_config(self.state, self.name, self.api_port, self.http_port))
        with self.log("ironic-dbsync").open("wb") as out:
            rc = subprocess.run([str(dbsync), "--config-file", str(self.config_file), "create_schema"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=self.directory,
                                timeout=max(1.0, deadline - time.monotonic())).returncode
        if rc != 0:
            raise IronicError(f"{self.name}: ironic-dbsync create_schema failed (exit {rc}); see "
                              f"{self.log('ironic-dbsync')}:\n{spawn.tail(self.log('ironic-dbsync'))}")
        try:
            self.pids["httpd"] = spawn.spawn(
                [sys.executable, "-m", "lab.machines.httpd", "--root", str(self.state / "http"),
                 "--port", str(self.http_port)], log=self.log("httpd"), cwd=self.directory, attached=attached)
            self.pids["ironic"] = spawn.spawn([str(ironic), "--config-file", str(self.config_file)],
                                              log=self.log("ironic"), cwd=self.directory, attached=attached)
            spawn.wait_http(f"http://127.0.0.1:{self.http_port}/", what=f"{self.name}: Ironic's httpd",
                            pid=self.pids["httpd"], log=self.log("httpd"), deadline=deadline)
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise
        self._save()
        return self

    def _wait_ready(self, deadline: float) -> None:
        """The API answers before the conductor has registered its drivers; nodes can only be enrolled
        once `/v1/drivers` lists `redfish`."""
        from lab.plane.ironic_api import IronicClient

        spawn.wait_http(f"{self.url}/v1", what=f"{self.name}: Ironic API", pid=self.pids["ironic"],
                        log=self.log("ironic"), deadline=deadline)
        client = IronicClient(self.url)
        while time.monotonic() < deadline:
            if not spawn.alive(self.pids["ironic"]):
                break
            if any(d["name"] == "redfish" for d in client.get("/v1/drivers")["drivers"]):
                return
            time.sleep(0.2)
        raise IronicError(f"{self.name}: Ironic's conductor did not register the redfish driver in time; see "
                          f"{self.log('ironic')}:\n{spawn.tail(self.log('ironic'))}")

    def stop(self, grace: float = 10.0) -> None:
        """Stops ironic, then its httpd; safe to call twice."""
        spawn.stop_group(self.pids, ("ironic", "httpd"), grace)
        if self.directory.exists():
            self._save()

    def running(self) -> bool:
        return spawn.group_running(self.pids)

    def rss_mib(self) -> dict[str, float]:
        return spawn.group_rss_mib(self.pids)

    def _save(self) -> None:
        state = {k: v for k, v in asdict(self).items() if k != "directory"}
        (self.directory / "ironic.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path) -> LocalIronic:
        return cls(directory=directory, **json.loads((directory / "ironic.json").read_text()))


def processes_under(directory: Path) -> list[int]:
    """Ironic, sushy-emulator and httpd processes started for anything below `directory` (orphan check)."""
    return spawn.processes_mentioning(directory, IRONIC_PROGRAMS)

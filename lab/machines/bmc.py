"""The machines' BMCs: sushy-tools' Redfish emulator with its fake driver, and the image server.

`sushy-emulator --fake` serves Redfish for N fake systems whose UUIDs the lab chooses (derived from the
set's name, so a test knows them before anything starts). Power changes take the fake driver 1-11 s, as
on real hardware; virtual media inserts download the image like a real BMC does.

The BMCs' own record: every fake system is configured with `external_notifier: true`, so the emulator
itself PUTs the system's whole record (power state, pending power request, boot device, virtual media)
to our httpd on every change it makes; the httpd appends them to `events.jsonl`. Beside it, the
emulator's access log lists every write request it served. Together they answer "was this host power-
cycled or booted from new media?" from the BMC's side, not from Kubernetes objects or Ironic.

The same httpd serves `images/live.iso`: the "live-iso" image hosts are provisioned with (any small
file: the fake systems boot nothing).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.cluster import free_port
from lab.plane import spawn
from lab.plane.ironic import entry_point

_NAMESPACE = uuidlib.UUID("6a3b1f0e-4d2c-4c8e-9d7a-3e1f5b2c9a40")
IMAGE_NAME = "live.iso"
WATCHED = ("power_state", "pending_power", "boot_device", "boot_mode", "boot_image")
_ACCESS = re.compile(r'"(POST|PATCH|PUT|DELETE) (/redfish/v1/\S+) HTTP/[\d.]+" (\d{3})')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours its access log


@dataclass(frozen=True)
class FakeSystem:
    uuid: str
    name: str
    mac: str


@dataclass(frozen=True)
class BmcChange:
    """One change a BMC made to one system, from its own notifications: `field` went `before` -> `after`."""

    t: float
    uuid: str
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class BmcWrite:
    """One write request the BMC served (its access log): method, path, HTTP status."""

    method: str
    path: str
    status: int


@dataclass(frozen=True)
class BmcCheckpoint:
    """How much each system's record held at one instant (see LocalBmcs.checkpoint / activity_since)."""

    changes: dict[str, int]
    writes: dict[str, int]


def fake_systems(set_name: str, count: int) -> list[FakeSystem]:
    out = []
    for i in range(count):
        u = uuidlib.uuid5(_NAMESPACE, f"{set_name}/{i}")
        out.append(FakeSystem(str(u), f"{set_name}-{i}", "00:5c:52:" + ":".join(f"{b:02x}" for b in u.bytes[:3])))
    return out


@dataclass
class LocalBmcs:
    """A rack of fake machines: one Redfish endpoint for all of them, their event record, the image server."""

    name: str
    directory: Path
    count: int = 2
    redfish_port: int = 0
    http_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def systems(self) -> list[FakeSystem]:
        return fake_systems(self.name, self.count)

    @property
    def redfish(self) -> str:
        return f"http://127.0.0.1:{self.redfish_port}"

    def address(self, system: FakeSystem | str, scheme: str = "redfish-virtualmedia+http") -> str:
        """The BMC address a BareMetalHost names (`spec.bmc.address`); Ironic's `redfish_address` +
        `redfish_system_id` are its two halves."""
        u = system if isinstance(system, str) else system.uuid
        return f"{scheme}://127.0.0.1:{self.redfish_port}/redfish/v1/Systems/{u}"

    @property
    def image_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/{IMAGE_NAME}"

    @property
    def events_file(self) -> Path:
        return self.directory / "events.jsonl"

    def log(self, component: str) -> Path:
        return self.directory / "logs" / f"{component}.log"

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, *, attached: bool = True, timeout: float = 60.0) -> LocalBmcs:
        """Start the emulator and the httpd. Unlike Ironic's, the folder is not wiped: BMCs started again
        in the same folder find their machines as they left them (power, media) and keep appending to
        the same record, as a real BMC that restarts does not reset its server."""
        deadline = time.monotonic() + timeout
        emulator = entry_point("sushy-emulator")
        (self.directory / "images").mkdir(parents=True, exist_ok=True)
        (self.directory / "state").mkdir(exist_ok=True)
        (self.directory / "logs").mkdir(exist_ok=True)
        (self.directory / "tmp").mkdir(exist_ok=True)
        # ISO 9660's volume descriptor sits at 32 KiB; this is enough "image" for a machine that boots nothing
        (self.directory / "images" / IMAGE_NAME).write_bytes(b"\0" * 32768 + b"\x01CD001\x01" + b"\0" * 2040)
        self.redfish_port, self.http_port = free_port(), free_port()
        config = self.directory / "sushy.conf"
        config.write_text(self._config())
        try:
            self.pids["httpd"] = spawn.spawn(
                [sys.executable, "-m", "lab.machines.httpd", "--root", str(self.directory / "images"),
                 "--port", str(self.http_port), "--events", str(self.events_file)],
                log=self.log("httpd"), cwd=self.directory, attached=attached)
            # TMPDIR: the emulator downloads every inserted ISO into a temporary folder; keep them here
            self.pids["sushy-emulator"] = spawn.spawn(
                [str(emulator), "--config", str(config), "--fake"], log=self.log("sushy-emulator"),
                cwd=self.directory, attached=attached, env=dict(os.environ, TMPDIR=str(self.directory / "tmp")))
            spawn.wait_http(self.image_url, what=f"{self.name}: image server", pid=self.pids["httpd"],
                            log=self.log("httpd"), deadline=deadline)
            spawn.wait_http(f"{self.redfish}/redfish/v1/Systems", what=f"{self.name}: sushy-emulator",
                            pid=self.pids["sushy-emulator"], log=self.log("sushy-emulator"), deadline=deadline)
        except BaseException:
            self.stop()
            raise
        self._save()
        return self

    def _config(self) -> str:
        systems = [{"uuid": s.uuid, "name": s.name, "power_state": "Off", "external_notifier": True,
                    "nics": [{"mac": s.mac, "ip": "127.0.0.1"}]} for s in self.systems]
        return "\n".join([
            f"# written by lab/machines/bmc.py for the BMC set {self.name!r}",
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'",
            f"SUSHY_EMULATOR_LISTEN_PORT = {self.redfish_port}",
            "SUSHY_EMULATOR_FAKE_DRIVER = True",
            f"SUSHY_EMULATOR_STATE_DIR = {str(self.directory / 'state')!r}",
            f"EXTERNAL_NOTIFICATION_URL = 'http://127.0.0.1:{self.http_port}/bmc-events'",
            f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}",
            ""])

    def stop(self, grace: float = 10.0) -> None:
        spawn.stop_group(self.pids, ("sushy-emulator", "httpd"), grace)
        if self.directory.exists():
            self._save()

    def running(self) -> bool:
        return spawn.group_running(self.pids)

    def rss_mib(self) -> dict[str, float]:
        return spawn.group_rss_mib(self.pids)

    def _save(self) -> None:
        state = {k: v for k, v in asdict(self).items() if k != "directory"}
        (self.directory / "bmcs.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path) -> LocalBmcs:
        return cls(directory=directory, **json.loads((directory / "bmcs.json").read_text()))

    # -- the BMCs' own record ----------------------------------------------------------------------------
    def system(self, uuid: str) -> dict[str, Any]:
        """The Redfish ComputerSystem as the BMC reports it now (PowerState, Boot)."""
        with urllib.request.urlopen(f"{self.redfish}/redfish/v1/Systems/{uuid}", timeout=10) as r:
            return dict(json.loads(r.read()))

    def changes(self, uuid: str | None = None) -> list[BmcChange]:
        """Every change the fake BMC made to a system, oldest first, from its own notifications.

        Each notification carries the system's whole record; a change is a watched field that differs
        from the previous record of that system (the first is compared with the configured start:
        power Off, nothing else set). A record that differs in no watched field is a write of the same
        value again and appears as a change of `field="(unchanged)"`, so no write goes unseen.
        """
        previous: dict[str, dict[str, Any]] = {s.uuid: {"power_state": "Off"} for s in self.systems}
        out: list[BmcChange] = []
        if not self.events_file.exists():
            return out
        for line in self.events_file.read_text().splitlines():
            event = json.loads(line)
            record = event["system"]
            u = record["uuid"]
            before = previous.get(u, {})
            diffs = [f for f in WATCHED if before.get(f) != record.get(f)]
            for f in diffs:
                out.append(BmcChange(event["t"], u, f, before.get(f), record.get(f)))
            if not diffs:
                out.append(BmcChange(event["t"], u, "(unchanged)", None, None))
            previous[u] = record
        return [c for c in out if uuid is None or c.uuid == uuid]

    def power_requests(self, uuid: str) -> list[str]:
        """The power actions the BMC accepted and carried out for a system, as target states
        ("On", "Off", "ForceRestart", ...): a Restart or an Off after On is a power cycle."""
        return [c.after["power_state"] for c in self.changes(uuid) if c.field == "pending_power" and c.after]

    def power_states(self, uuid: str) -> list[str]:
        """The power states the system went through, starting with its configured "Off"."""
        return ["Off", *(c.after for c in self.changes(uuid) if c.field == "power_state")]

    def media_changes(self, uuid: str) -> list[BmcChange]:
        """Virtual media inserts and ejects (the fake driver's `boot_image`: device -> [image, wp, inserted])."""
        return [c for c in self.changes(uuid) if c.field == "boot_image"]

    def writes(self, uuid: str) -> list[BmcWrite]:
        """Every write request the emulator served for a system (POST/PATCH/PUT/DELETE), from its log."""
        log = self.log("sushy-emulator")
        if not log.exists():
            return []
        return [BmcWrite(m.group(1), m.group(2), int(m.group(3)))
                for m in _ACCESS.finditer(_ANSI.sub("", log.read_text(errors="replace"))) if uuid in m.group(2)]

    def checkpoint(self) -> BmcCheckpoint:
        """Mark the records now, to ask later what happened to the machines since (e.g. across a pivot)."""
        return BmcCheckpoint({s.uuid: len(self.changes(s.uuid)) for s in self.systems},
                             {s.uuid: len(self.writes(s.uuid)) for s in self.systems})

    def activity_since(self, mark: BmcCheckpoint) -> dict[str, tuple[list[BmcChange], list[BmcWrite]]]:
        """Every change and write request per system since `mark`; systems with none are left out, so
        an empty answer means: no power action, no media, no boot setting reached any machine."""
        out = {}
        for s in self.systems:
            changes = self.changes(s.uuid)[mark.changes.get(s.uuid, 0):]
            writes = self.writes(s.uuid)[mark.writes.get(s.uuid, 0):]
            if changes or writes:
                out[s.uuid] = (changes, writes)
        return out

"""The adoption pass-through's one change (lab/plane/adoption.py): what it writes before Ironic adopts a
live-iso host after a handover, read from the BareMetalHost as BMO stores it."""

from __future__ import annotations

import pytest

from lab.plane.adoption import boot_mode_capability, live_iso_patch

pytestmark = pytest.mark.unit

HOST = {"status": {"provisioning": {"state": "provisioned", "bootMode": "UEFI", "image": {
    "url": "http://127.0.0.1:8000/live.iso", "checksum": "abc", "checksumType": "sha256", "format": "live-iso"}}}}


def test_a_live_iso_host_gets_its_boot_iso_from_the_hosts_status() -> None:
    ops = live_iso_patch(HOST, {"instance_info": {}})
    assert ops[0] == {"op": "add", "path": "/instance_info/boot_iso", "value": "http://127.0.0.1:8000/live.iso"}
    assert {"op": "add", "path": "/instance_info/capabilities", "value": {"boot_mode": "uefi"}} in ops


@pytest.mark.parametrize("host, node", [
    ({"status": {"provisioning": {"image": {"url": "http://x/disk.qcow2", "format": "qcow2"}}}}, {}),
    (HOST, {"instance_info": {"boot_iso": "http://elsewhere/live.iso"}}),
    ({"status": {}}, {}),
])
def test_nothing_is_written_when_nothing_is_missing(host: dict, node: dict) -> None:
    assert live_iso_patch(host, node) == []


def test_boot_modes() -> None:
    assert [boot_mode_capability(m) for m in ("UEFI", "UEFISecureBoot", "legacy", None)] == \
        ["uefi", "uefi", "bios", "uefi"]

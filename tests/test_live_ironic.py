"""The live plane's Ironic and BMCs, driven through Ironic's REST API the way BMO drives it.

Real processes only: Ironic 39 (single process, sqlite) and sushy-tools' Redfish emulator with fake
systems. What happened to a machine is read from the BMC's own record (its change notifications and
access log) and from Ironic's node history, never from what the test itself asked for.

The adoption tests settle how a destination Ironic that never saw a host takes over a provisioned
live-iso host after a pivot (docs/live-plane.md, "Ironic and the BMCs").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab.machines.bmc import BmcCheckpoint, FakeSystem, LocalBmcs
from lab.plane.ironic import LocalIronic, processes_under
from lab.plane.ironic_api import IronicClient, NodeStateError
from tests.kit.env import ROOT, SESSION_DIR, tool_env

pytestmark = pytest.mark.live

BASE = SESSION_DIR / "live-ironic"


@pytest.fixture(scope="module")
def bmcs() -> Iterator[LocalBmcs]:
    rack = LocalBmcs("rack", BASE / "bmcs", count=4).start()
    yield rack
    rack.stop()


@pytest.fixture
def ironic_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[str], LocalIronic]]:
    started: list[LocalIronic] = []

    def make(name: str) -> LocalIronic:
        ironic = LocalIronic(name, BASE / f"{request.node.name[:40]}-{name}").start()
        started.append(ironic)
        return ironic

    yield make
    for ironic in started:
        ironic.stop()


# ---------------------------------------------------------------------------------------------- BMO's calls

def enroll_as_bmo(client: IronicClient, bmcs: LocalBmcs, system: FakeSystem, host: str, *,
                  live_iso: bool = True) -> str:
    """The node BMO v0.13.2 registers for a BareMetalHost with a `redfish-virtualmedia+http://` address,
    a bootMACAddress and `automatedCleaningMode: disabled` (pkg/provisioner/ironic: enrollNode,
    createPXEEnabledNodePort, configureNode). A host whose image is a live-iso gets the `ramdisk` deploy
    interface; any other gets none (Ironic's default, `direct`)."""
    address = bmcs.address(system)
    node = client.create_node(
        name=f"default~{host}", driver="redfish", boot_interface="redfish-virtual-media",
        firmware_interface="redfish", raid_interface="redfish", inspect_interface="agent",
        disable_power_off=False, **({"deploy_interface": "ramdisk"} if live_iso else {}),
        driver_info={"redfish_address": bmcs.redfish, "redfish_system_id": address.split(str(bmcs.redfish_port), 1)[1],
                     "redfish_username": "admin", "redfish_password": "password", "redfish_verify_ca": False},
        properties={"capabilities": "boot_mode:uefi"})
    client.request("POST", "/v1/ports", {"node_uuid": node["uuid"], "address": system.mac, "pxe_enabled": True})
    client.patch_node(node["uuid"], [{"op": "replace", "path": "/automated_clean", "value": False}])
    return str(node["uuid"])


def live_iso_instance_info(bmcs: LocalBmcs) -> list[dict[str, Any]]:
    """What BMO's setLiveIsoUpdateOptsForNode writes before `active` (and what adoption needs)."""
    return [{"op": "add", "path": "/instance_info/boot_iso", "value": bmcs.image_url},
            {"op": "add", "path": "/instance_info/capabilities", "value": {"boot_mode": "uefi"}},
            {"op": "add", "path": "/driver_info/force_persistent_boot_device", "value": "Default"}]


def to_available(client: IronicClient, node: str) -> None:
    client.set_provision_state(node, "manage")
    client.wait_provision_state(node, "manageable", timeout=60)
    client.set_provision_state(node, "provide")  # automated_clean=false: no cleaning, straight to available
    client.wait_provision_state(node, "available", timeout=60)


def deploy_live_iso(client: IronicClient, bmcs: LocalBmcs, node: str) -> None:
    client.patch_node(node, live_iso_instance_info(bmcs))
    client.set_provision_state(node, "active")
    client.wait_provision_state(node, "active", timeout=120)


# ---------------------------------------------------------------------------------------------- tests

def test_a_host_goes_from_enroll_to_active_and_back_through_ironic(
        bmcs: LocalBmcs, ironic_factory: Callable[[str], LocalIronic]) -> None:
    ironic = ironic_factory("ephemeral")
    client = IronicClient(ironic.url)
    system = bmcs.systems[0]
    node = enroll_as_bmo(client, bmcs, system, "host-0")
    assert client.node(node)["provision_state"] == "enroll"

    start = time.monotonic()
    to_available(client, node)
    to_available_s = time.monotonic() - start
    assert bmcs.power_requests(system.uuid) == [], "manage/provide must not touch the power"
    assert [h.event_type for h in client.history(node)] == [], "no cleaning, no inspection, no error"

    start = time.monotonic()
    deploy_live_iso(client, bmcs, node)
    deploy_s = time.monotonic() - start
    listed = {n["uuid"]: n for n in client.nodes()}[node]
    assert (listed["provision_state"], listed["power_state"]) == ("active", "power on")
    assert [h.event_type for h in client.history(node)] == ["deployment_start", "deployment_end"]

    # the BMC's own record of the deployment: Ironic's ISO inserted, boot from CD, powered on once
    media = bmcs.media_changes(system.uuid)
    assert len(media) == 1 and media[0].after["Cd"][2] is True, media
    assert any(c.field == "boot_device" and c.after == "Cd" for c in bmcs.changes(system.uuid))
    assert bmcs.power_requests(system.uuid) == ["On"]
    assert bmcs.power_states(system.uuid) == ["Off", "On"]
    assert bmcs.system(system.uuid)["PowerState"] == "On"
    writes = [(w.method, w.path.rsplit("/", 1)[-1]) for w in bmcs.writes(system.uuid)]
    assert ("POST", "VirtualMedia.InsertMedia") in writes and ("POST", "ComputerSystem.Reset") in writes

    start = time.monotonic()
    client.set_provision_state(node, "deleted")  # BMO's deprovision with cleaning disabled
    client.wait_provision_state(node, "available", timeout=120)
    undeploy_s = time.monotonic() - start
    assert bmcs.power_requests(system.uuid) == ["On", "Off"]
    assert bmcs.media_changes(system.uuid)[-1].after["Cd"][2] is False, "the ISO is ejected"
    print(f"\nironic: enroll->available {to_available_s:.1f} s, ->active {deploy_s:.1f} s, "
          f"->available {undeploy_s:.1f} s; RSS MiB {ironic.rss_mib()} + BMCs {bmcs.rss_mib()}")


def test_stop_leaves_no_process() -> None:
    here = SESSION_DIR / "live-ironic-stop"
    rack = LocalBmcs("stop", here / "bmcs", count=1)
    ironic = LocalIronic("stop", here / "ironic")
    try:
        rack.start()
        ironic.start()
        assert ironic.running() and rack.running()
        # ironic's master and its forked API + conductor worker, its httpd; sushy-emulator, the BMCs' httpd
        assert len(processes_under(here)) == 5, processes_under(here)
        start = time.monotonic()
        ironic.stop()
        stop_s = time.monotonic() - start
        rack.stop()
        ironic.stop()  # twice is fine
        assert processes_under(here) == []
        assert not ironic.running() and not rack.running()
        print(f"\nironic stopped in {stop_s:.1f} s")
    finally:
        ironic.stop()
        rack.stop()


def test_a_killed_parent_leaves_no_orphans() -> None:
    """PR_SET_PDEATHSIG takes Ironic's master, sushy-emulator and the httpds with a SIGKILLed test run;
    Ironic's forked worker notices its master's end (a pipe) and exits by itself within seconds."""
    here = SESSION_DIR / "live-ironic-killed"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from lab.machines.bmc import LocalBmcs
        from lab.plane.ironic import LocalIronic
        LocalBmcs("doomed", Path({str(here)!r}) / "bmcs", count=1).start()
        LocalIronic("doomed", Path({str(here)!r}) / "ironic").start()
        print("up", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=tool_env())
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    assert len(processes_under(here)) == 5
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    start = time.monotonic()
    while processes_under(here) and time.monotonic() < start + 30:
        time.sleep(0.2)
    assert processes_under(here) == []
    print(f"\nall plane processes gone {time.monotonic() - start:.1f} s after the parent's SIGKILL")


def provisioned_then_handed_over(bmcs: LocalBmcs, system: FakeSystem, factory: Callable[[str], LocalIronic],
                                 host: str) -> tuple[IronicClient, str, BmcCheckpoint]:
    """A host provisioned by the source Ironic, which is then stopped (the Ironic handover), and
    registered in a fresh destination Ironic as BMO does after the move: enrolled, then `manage`."""
    source = factory("source")
    client = IronicClient(source.url)
    node = enroll_as_bmo(client, bmcs, system, host)
    to_available(client, node)
    deploy_live_iso(client, bmcs, node)
    source.stop()
    mark = bmcs.checkpoint()
    destination = IronicClient(factory("destination").url)
    node = enroll_as_bmo(destination, bmcs, system, host)
    destination.set_provision_state(node, "manage")
    managed = destination.wait_provision_state(node, "manageable", timeout=60)
    assert managed["power_state"] == "power on" and managed["instance_info"] == {}
    return destination, node, mark


def test_a_fresh_ironic_cannot_adopt_a_live_iso_host_without_its_boot_iso(
        bmcs: LocalBmcs, ironic_factory: Callable[[str], LocalIronic]) -> None:
    """What BMO v0.13.2 does after a pivot: register (deploy_interface=ramdisk, no instance_info), manage,
    adopt. Ironic's ramdisk deploy validates the boot for adoption and refuses. BMO retries `adopt` from
    `adopt failed` (restartOnFailure); with the boot_iso added to instance_info the retry succeeds."""
    system = bmcs.systems[1]
    client, node, mark = provisioned_then_handed_over(bmcs, system, ironic_factory, "host-1")

    client.set_provision_state(node, "adopt")
    with pytest.raises(NodeStateError, match=r"adopt failed.*Missing are: \['kernel', 'ramdisk'\]"):
        client.wait_provision_state(node, "active", timeout=60)
    history = client.history(node)
    assert [(h.event_type, h.severity) for h in history] == [("adoption", "ERROR")]

    client.patch_node(node, live_iso_instance_info(bmcs))
    client.set_provision_state(node, "adopt")
    adopted = client.wait_provision_state(node, "active", timeout=60)
    assert adopted["instance_info"]["boot_iso"] == bmcs.image_url
    # the failed adoption wiped the power state ("likely invalid"); the next power sync reads it back
    assert adopted["power_state"] is None
    # nothing reached the machines: no power action, no media, no boot device change, not even a write
    assert bmcs.activity_since(mark) == {}
    assert bmcs.system(system.uuid)["PowerState"] == "On"


def test_a_fresh_ironic_adopts_a_live_iso_host_from_manageable_with_instance_info(
        bmcs: LocalBmcs, ironic_factory: Callable[[str], LocalIronic]) -> None:
    """The faithful takeover: the destination learns the image from the moved BareMetalHost's
    status.provisioning.image (instance_info/boot_iso) while the node is `manageable`, then `adopt`."""
    system = bmcs.systems[2]
    client, node, mark = provisioned_then_handed_over(bmcs, system, ironic_factory, "host-2")

    start = time.monotonic()
    client.patch_node(node, live_iso_instance_info(bmcs))
    client.set_provision_state(node, "adopt")
    adopted = client.wait_provision_state(node, "active", timeout=60)
    adopt_s = time.monotonic() - start
    assert (adopted["provision_state"], adopted["power_state"]) == ("active", "power on")
    assert client.history(node) == [], "adoption is not a deployment: nothing in the node's history"
    assert bmcs.activity_since(mark) == {}
    assert bmcs.power_requests(system.uuid) == ["On"], "powered on once, by the source's deployment"
    print(f"\nadoption: manageable -> active in {adopt_s:.1f} s, no BMC write")


def test_a_disk_image_host_is_adopted_without_instance_info(
        bmcs: LocalBmcs, ironic_factory: Callable[[str], LocalIronic]) -> None:
    """The contrast that locates the gap: BMO registers a host provisioned with a disk image (qcow2/raw,
    metal3-dev-env's default) with the default `direct` deploy interface; adoption then validates no
    boot (the instance boots from its disk) and needs no instance_info at all."""
    system = bmcs.systems[3]
    client = IronicClient(ironic_factory("destination").url)
    node = enroll_as_bmo(client, bmcs, system, "host-3", live_iso=False)
    assert client.node(node)["deploy_interface"] == "direct"
    client.set_provision_state(node, "manage")
    client.wait_provision_state(node, "manageable", timeout=60)
    client.set_provision_state(node, "adopt")
    adopted = client.wait_provision_state(node, "active", timeout=60)
    assert adopted["instance_info"] == {} and client.history(node) == []
    assert bmcs.writes(system.uuid) == [] and bmcs.changes(system.uuid) == []

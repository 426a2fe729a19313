"""`make bench-pulumi` splits a CLI run by the engine's own log, and `make bench-live` times the Ironic
handover inside one. Both read lines whose wording is Pulumi's, not ours: these are the shapes pulumi
v3.274.1 writes at `-v=7` (Check, Update and Delete copied from real logs, Create from the same release's
provider_plugin.go). When the pinned pulumi changes, compare its formats with these lines: a split that
finds nothing prints "(not found in the engine's log)"."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.live_bench import handover_timeline
from benchmarks.pulumi_bench import where_it_went

pytestmark = pytest.mark.unit

PF = "urn:pulumi:bench::metal3-pivot::pulumi-python:dynamic/metal3:MovePreflight::preflight"
OL = "urn:pulumi:bench::metal3-pivot::pulumi-python:dynamic/metal3:ObjectLocation::objects"
CERT = ("urn:pulumi:bench::metal3-pivot::metal3:ironic:Ironic$pulumi-python:dynamic/metal3:WebhookCertificate"
        "::ironic-webhookcertificate-baremetal-operator-system-baremetal-operator-serving-cert")


def _log(tmp_path: Path, lines: list[tuple[float, str]]) -> Path:
    """Engine log lines at `seconds` past 12:00:00 (the engine writes nanoseconds and a Z)."""
    path = tmp_path / "engine.log"
    path.write_text("".join(
        json.dumps({"time": f"2026-12-01T12:00:{int(t):02d}.{round((t % 1) * 1e9):09d}Z", "level": "INFO",
                    "msg": msg, "v": 7}) + "\n" for t, msg in lines) + "not json: a plugin's own stderr\n")
    return path


def test_an_up_of_a_move_is_split_at_the_gate_and_the_update(tmp_path: Path) -> None:
    log = _log(tmp_path, [
        (0.0, "log rotation"),
        # a preview's check comes first: the update's is the last one
        (1.0, f"Provider[0x3b6d].Check({PF}) executing (#oldInputs=17,#newInputs=12)"),
        (2.0, f"Provider[0x3b6d].Check({PF}) success: inputs=#17 failures=#0"),
        (5.0, f"Provider[0x3b6d].Check({PF}) executing (#oldInputs=17,#newInputs=12)"),
        (7.5, f"Provider[0x3b6d].Check({PF}) success: inputs=#17 failures=#0"),
        (8.0, f"Provider[0x3b6d].Check({CERT}) executing (#oldInputs=3,#newInputs=3)"),
        (9.0, f"Provider[0x3b6d].Diff({PF},move-preflight): executing (#oldInputs=17#oldOutputs=2,#newInputs=17)"),
        (11.0, f"Provider[0x3b6d].Check({OL}) executing (#oldInputs=17,#newInputs=12)"),
        (11.1, f"Provider[0x3b6d].Check({OL}) success: inputs=#17 failures=#0"),
        (11.5, f"Provider[0x3b6d].Update(object-location,{OL}) executing (#oldInputs=17,#oldOutputs=19,#newInputs=17)"),
        (59.0, f"Provider[0x3b6d].Update(object-location,{OL}) success; #outs=19"),
    ])
    parts = where_it_went(log, total_s=60.0, engine_s=45.0)
    assert parts == pytest.approx({"to pre-flight": 5.0, "pre-flight": 2.5, "installs and handover": 4.0,
                                   "move": 45.0, "around the move": 2.5, "to exit": 1.0})
    assert sum(parts.values()) == pytest.approx(60.0)


def test_a_first_move_is_a_create(tmp_path: Path) -> None:
    log = _log(tmp_path, [
        (0.0, "start"),
        (1.0, f"Provider[0x1].Check({PF}) executing (#oldInputs=0,#newInputs=12)"),
        (2.0, f"Provider[0x1].Check({PF}) success: inputs=#17 failures=#0"),
        (3.0, f"Provider[0x1].Create({OL}) executing (#props=17)"),
        (13.0, f"Provider[0x1].Create({OL}) success: id=object-location; #outs=19"),
    ])
    assert where_it_went(log, total_s=14.0, engine_s=9.0)["around the move"] == pytest.approx(1.0)


def test_a_preview_is_split_at_both_checks(tmp_path: Path) -> None:
    log = _log(tmp_path, [
        (0.0, "start"),
        (3.0, f"Provider[0x1].Check({PF}) executing (#oldInputs=17,#newInputs=12)"),
        (5.0, f"Provider[0x1].Check({PF}) success: inputs=#17 failures=#0"),
        (6.5, f"Provider[0x1].Check({OL}) executing (#oldInputs=17,#newInputs=12)"),
        (6.75, f"Provider[0x1].Check({OL}) success: inputs=#17 failures=#0"),
    ])
    assert where_it_went(log, total_s=7.5) == pytest.approx(
        {"to pre-flight": 3.0, "pre-flight": 2.0, "installs' diffs": 1.5, "ObjectLocation's check": 0.25,
         "to exit": 0.75})


def test_a_log_without_the_calls_gives_no_split_rather_than_a_wrong_one(tmp_path: Path) -> None:
    log = _log(tmp_path, [(0.0, "start"), (1.0, f"Provider[0x1].Check({PF}) executing (#oldInputs=17)")])
    assert where_it_went(log, total_s=2.0, engine_s=1.0) == {}
    assert where_it_went(log, total_s=2.0) == {}


def test_the_cpu_meter_says_what_the_host_took_and_what_waited_on_io() -> None:
    """A phase's idle cores are split into the host's steal and I/O wait from the machine's counters
    (/proc/stat), sampled with the processes'; a phase with no machine ticks reads zero, not an error."""
    from benchmarks.move_bench import CpuMeter, cpu_table

    meter = CpuMeter({"engine": 0})
    meter.samples = [
        (0.0, {"engine": 0.0, "machine iowait": 0.0, "machine steal": 0.0, "machine total": 0.0}),
        (10.0, {"engine": 5.0, "machine iowait": 100.0, "machine steal": 300.0, "machine total": 2000.0}),
        (20.0, {"engine": 9.0, "machine iowait": 100.0, "machine steal": 300.0, "machine total": 2000.0}),
    ]
    cpu = meter.by_phase(0.0, {"create": 10.0, "delete": 10.0})
    assert cpu["create"]["steal"] == 0.15 and cpu["create"]["iowait"] == 0.05 and cpu["create"]["engine"] == 5.0
    assert cpu["delete"]["steal"] == 0.0 and cpu["delete"]["iowait"] == 0.0
    assert "| create | 10.0 |" in cpu_table("t", cpu) and "| 15% | 5% |" in cpu_table("t", cpu)


# `make bench-live`'s timeline of the Ironic handover inside an `up`, from the same -v=7 lines (copied from
# the 2026-12-03 10:05 run's pivot: a Delete's URN is followed by the object's id)
IRONIC = ("urn:pulumi:bench::metal3-pivot::metal3:ironic:Ironic$kubernetes:apps/v1:Deployment"
          "::ironic-deployment-baremetal-operator-system-ironic")
BMO = ("urn:pulumi:bench::metal3-pivot::metal3:ironic:Ironic$kubernetes:apps/v1:Deployment"
       "::ironic-deployment-baremetal-operator-system-baremetal-operator-controller-manager")
NS = "urn:pulumi:bench::metal3-pivot::metal3:ironic:Ironic$kubernetes:core/v1:Namespace::ironic-namespace-x"


def test_the_handover_timeline_says_when_each_deployment_went_and_came(tmp_path: Path) -> None:
    log = _log(tmp_path, [
        (1.0, f"Provider[0x3b6d].Check({PF}) executing (#oldInputs=17,#newInputs=12)"),
        (2.0, f"Provider[0x20f4].Delete({NS},baremetal-operator-system) executing (#inputs=3, #outputs=4)"),
        (3.0, f"Provider[0x20f4].Delete({IRONIC},baremetal-operator-system/ironic) executing (#inputs=4, #outputs=8)"),
        (5.0, f"Provider[0x20f4].Delete({BMO},baremetal-operator-system/baremetal-operator-controller-manager) "
              "executing (#inputs=4, #outputs=8)"),
        (6.5, f"Provider[0x20f4].Delete({IRONIC},baremetal-operator-system/ironic) success"),
        (6.7, f"Provider[0x20f4].Create({IRONIC}) executing (#props=4)"),
        (13.0, f"Provider[0x20f4].Create({IRONIC}) success: id=baremetal-operator-system/ironic; #outs=8"),
        (15.0, f"Provider[0x20f4].Update(object-location,{OL}) executing (#oldInputs=17,#oldOutputs=19,#newInputs=17)"),
        (19.0, f"Provider[0x20f4].Update(object-location,{OL}) success; #outs=19"),
    ])
    assert handover_timeline(log) == {"ironic delete": 1.0, "bmo delete": 3.0, "ironic gone": 4.5,
                                      "ironic create": 4.7, "ironic ready": 11.0, "move start": 13.0,
                                      "move end": 17.0}


def test_an_up_without_a_handover_has_no_timeline(tmp_path: Path) -> None:
    log = _log(tmp_path, [(15.0, f"Provider[0x20f4].Update(object-location,{OL}) executing (#oldInputs=17)")])
    assert handover_timeline(log) == {}


def test_the_move_bench_prices_a_moves_patches_at_its_own_mix() -> None:
    """`make bench`'s third price of a move's writes: its patches per resource (a status patch is one of its
    object), made again all kinds at once over the raw run's objects, each object in turn, kinds the raw
    run lacks left out, in a fixed shuffled order; creates and deletes at the raw rates; NaN without a mix."""
    from benchmarks.move_bench import mix_of, mixed_patches, write_limit_mix
    mix = mix_of({"POST baremetalhosts": 4, "PATCH baremetalhosts": 3, "PATCH baremetalhosts/status": 1,
                  "PATCH secrets": 1, "PATCH leases": 2, "PUT leases": 5, "DELETE secrets": 9})
    assert mix == {"baremetalhosts": 4, "secrets": 1, "leases": 2}
    hosts = [{"n": "h0"}, {"n": "h1"}]
    picked = mixed_patches(mix, {"baremetalhosts": hosts, "secrets": [{"n": "s0"}]})
    assert sorted(o["n"] for o in picked) == ["h0", "h0", "h1", "h1", "s0"]       # no lease in the raw run
    assert picked == mixed_patches(mix, {"baremetalhosts": hosts, "secrets": [{"n": "s0"}]})
    assert {o["n"] for o in picked[:3]} == {"h0", "h1", "s0"}          # a round: every object once, then again
    raw = {"create_per_s": 100.0, "delete_per_s": 50.0, "patch_mix_n": 30, "patch_mix_s": 1.5}
    assert write_limit_mix({"POST": 200, "DELETE": 100, "PATCH": 35, "PUT": 5}, raw) == 2.0 + 2.0 + 2.0
    assert math.isnan(write_limit_mix({"POST": 1}, {**raw, "patch_mix_n": 0}))

"""The gate's reading started by the program (components/gate_reading.py), on real clusters.

MovePreflight's `check` decides whether Ironic is handed over; since the program starts the reading it
decides on, that reading must be exactly what the check would have read itself, taken once, of the
same inputs, fresh, and anything else must make the check read for itself.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

from components import gate_reading, move_preflight
from metal3_pivot import LocationInputs, LocationState
from tests.kit.move import TOPOLOGY, seed_pair

pytestmark = pytest.mark.cluster


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_gate_takes_the_reading_its_program_started_and_only_that(fresh_clusters, monkeypatch,
                                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("METAL3_PIVOT_CACHE", str(tmp_path))   # the reader inherits it
    clusters = fresh_clusters()
    eph, tgt = clusters["ephemeral"], clusters["target"]
    seed_pair(clusters)
    inputs = LocationInputs("target", eph.kubeconfig.read_text(), tgt.kubeconfig.read_text(), [TOPOLOGY.namespace])
    readings = tmp_path / "gate-readings"

    # the reader's answer is the check's own: a pivot pending, the same counts, findings and inventories
    token = gate_reading.start(inputs)
    taken = gate_reading.take(token, inputs)
    assert taken is not None
    state, age = taken
    own = gate_reading.inspect(inputs)
    assert own.pending is not None and sum(own.pending.objects.values()) > 50
    assert state == own and 0 <= age <= gate_reading.FRESH_SECONDS
    # taken once: nothing left behind but where the objects were found (the next reader's light-or-whole)
    assert [(p.name.split("-")[0], p.read_text()) for p in readings.iterdir()] == [("placement", "ephemeral")]
    assert gate_reading.take(token, inputs) is None

    # through MovePreflight's check: the same computed inputs as a check that reads itself
    news = {**inputs.to_props(), **dict.fromkeys(LocationState.prop_keys())}
    gate = move_preflight.MovePreflightProvider()
    started = gate.check({}, {**news, "reading": move_preflight.start_reading(
        location="target", ephemeral_kubeconfig=inputs.ephemeral_kubeconfig,
        target_kubeconfig=inputs.target_kubeconfig, namespaces=inputs.namespaces)})
    itself = gate.check({}, news)
    assert LocationState.from_props(started.inputs) == LocationState.from_props(itself.inputs) == own
    assert [f.reason for f in started.failures] == [f.reason for f in itself.failures]

    # never for other inputs, nor a reading that ended too long ago, nor a token that is not one
    other = replace(inputs, location="ephemeral")
    assert gate_reading.take(gate_reading.start(inputs), other) is None
    token = gate_reading.start(inputs)
    while not (readings / f"{token}.json").exists():
        time.sleep(0.05)
    body = json.loads((readings / f"{token}.json").read_text())
    body["ended"] -= gate_reading.FRESH_SECONDS + 1
    (readings / f"{token}.json").write_text(json.dumps(body))
    assert gate_reading.take(token, inputs) is None
    assert gate_reading.take("../../etc/passwd", inputs) is None and gate_reading.take("", inputs) is None

    # a reader that fails (the target unreachable) leaves nothing: the check reads, and says why, itself
    unreachable = tgt.kubeconfig.read_text().replace(f":{tgt.api_port}", f":{_closed_port()}")
    assert unreachable != inputs.target_kubeconfig
    bad = replace(inputs, target_kubeconfig=unreachable)
    assert gate_reading.take(gate_reading.start(bad), bad) is None
    assert not [p for p in readings.iterdir() if p.suffix == ".json"]
    # the kubeconfigs reached the reader on its stdin only: no file of the readings holds one
    assert all("client-key-data" not in p.read_text() for p in readings.iterdir())

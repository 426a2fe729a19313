"""The benchmark's seed takes what the live controllers leave (lab/data/live_metadata.py): only what every
live object of a kind carries, annotation values as filler of the observed length, never an annotation
that would steer a mover, and the seed's own values kept."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from lab.data import live_metadata
from lab.data.seed_objects import Topology, build

pytestmark = pytest.mark.unit


def machine(name: str, finalizers: list[str], annotations: dict[str, str]) -> dict:
    return {"kind": "Machine", "metadata": {"name": name, "finalizers": finalizers, "annotations": annotations}}


def test_only_what_every_object_of_a_kind_carries_is_applied(tmp_path: Path) -> None:
    live = [machine("a", ["machine.cluster.x-k8s.io"], {"kept": "12345", "some": "x",
                                                        "cluster.x-k8s.io/paused": ""}),
            machine("b", ["machine.cluster.x-k8s.io", "other"], {"kept": "123", "cluster.x-k8s.io/paused": ""})]
    observed = live_metadata.observe(live)
    assert observed["Machine"].objects == 2
    assert observed["Machine"].common_finalizers() == ["machine.cluster.x-k8s.io"]
    # a pause seen on every object is not copied: it would steer the movers
    assert observed["Machine"].common_annotations() == {"kept": 5}

    live_metadata.dump(observed, tmp_path / "m.json", source="test")
    loaded = live_metadata.load(tmp_path / "m.json")
    assert loaded["Machine"].common_finalizers() == ["machine.cluster.x-k8s.io"]

    seed = [machine("s", [], {"kept": "seed's own"}), {"kind": "Secret", "metadata": {"name": "x"}}]
    assert live_metadata.apply(seed, loaded) == 1
    assert seed[0]["metadata"] == {"name": "s", "finalizers": ["machine.cluster.x-k8s.io"],
                                   "annotations": {"kept": "seed's own"}}
    assert seed[1]["metadata"] == {"name": "x"}


def test_the_committed_capture_adorns_the_seed_without_touching_what_the_movers_read() -> None:
    if not live_metadata.FILE.exists():
        pytest.skip("no capture committed yet: `make demo` writes .lab/live-metadata.json")
    live = live_metadata.load()
    objs = [so.obj for so in build(Topology(clusters=1, control_planes=1, workers=1, spare_hosts=1))]
    before = copy.deepcopy(objs)
    assert live_metadata.apply(objs, live) > 0
    for old, new in zip(before, objs, strict=True):
        assert {k: v for k, v in new["metadata"].items() if k not in ("finalizers", "annotations")} == \
            {k: v for k, v in old["metadata"].items() if k not in ("finalizers", "annotations")}
        assert (old["metadata"].get("annotations") or {}).items() <= (new["metadata"].get("annotations") or {}).items()


def test_server_side_apply_managers_are_recorded_and_only_a_common_one_is_seeded(tmp_path: Path) -> None:
    """A kind whose every live object a server-side-apply manager owns fields of is seeded by that manager
    (lab/data/seed.py): a move restores such an object's managedFields (one more write per object)."""
    def applied(name: str, *managers: str) -> dict:
        obj = machine(name, [], {})
        obj["metadata"]["managedFields"] = [{"manager": m, "operation": "Apply"} for m in managers] + [
            {"manager": "capi-controller", "operation": "Update"}]
        return obj
    observed = live_metadata.observe([applied("a", "capi-machineset", "someone"), applied("b", "capi-machineset")])
    assert observed["Machine"].applied == {"capi-machineset": 2, "someone": 1}
    live_metadata.dump(observed, tmp_path / "m.json", source="test")
    assert live_metadata.load(tmp_path / "m.json")["Machine"].common_apply_manager() == "capi-machineset"
    assert live_metadata.observe([applied("a", "x"), machine("b", [], {})])["Machine"].common_apply_manager() is None
    # every Machine applied, by one controller or another (control plane / MachineSet): the most frequent
    split = live_metadata.observe([applied("a", "capi-kubeadmcontrolplane"), applied("b", "capi-machineset"),
                                   applied("c", "capi-machineset")])["Machine"]
    assert split.applied_objects == 3 and split.common_apply_manager() == "capi-machineset"
    # the operator's own `kubectl apply --server-side` (the lab's, not metal3-dev-env's) is not a controller's
    assert live_metadata.observe([applied("a", "kubectl"), applied("b", "kubectl")])["Machine"].common_apply_manager() \
        is None
    # a capture made before applied_objects was recorded still seeds only a manager that covers the kind
    old = live_metadata.KindMetadata(objects=2, applied={"capi-kubeadmcontrolplane": 1, "capi-machineset": 1})
    assert old.common_apply_manager() is None

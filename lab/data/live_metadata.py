"""What the live controllers leave on the objects a pivot moves: finalizers, annotations and server-side-apply
managers, per kind.

The seed (lab/data/seed_objects.py) writes what `clusterctl move` walks (owners, labels, the hosts' status
annotation) but none of the finalizers and bookkeeping annotations that only running controllers add. They
matter for the cost of a move: an object with a finalizer costs both clusterctl and us one more write
before its delete, and annotations make every object bigger. So the benchmark's seed takes them from a
management cluster that the live plane provisioned, not from memory: `make demo` writes
`.lab/live-metadata.json` right after step 2 (the ephemeral cluster, every object as CAPI, KCP, CAPM3,
IPAM and BMO left it), and `lab/data/live_metadata.json` is a committed copy of one such file.

Only what *every* object of a kind carries is applied to the seed (an annotation that kubectl or one
controller put on some objects only says nothing general); annotation values are not recorded, only their
largest length (they hold statuses and configurations: the seed writes filler of that length).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metal3_pivot import CONFIGMAP, SECRET, Kube, ResourceType

Obj = dict[str, Any]

FILE = Path(__file__).with_name("live_metadata.json")
#: annotations that steer a mover (pauses, block-move, the move's own marks): never copied as filler
STEERING = ("paused", "block-move", "delete-for-move", "metal3-pivot.io/")
#: server-side-apply managers that are the operator's tool, not a controller: the lab applies the workload's
#: manifests with `kubectl apply --server-side` (lab/workflow.py), where metal3-dev-env applies them
#: client-side (an `Update` entry), so their `Apply` entries say nothing about a real fleet: not seeded
OPERATOR_TOOLS = frozenset({"kubectl"})


@dataclass
class KindMetadata:
    objects: int = 0
    finalizers: dict[str, int] = field(default_factory=dict)     # finalizer -> objects carrying it
    annotations: dict[str, list[int]] = field(default_factory=dict)   # key -> [objects carrying it, max length]
    #: server-side-apply managers -> objects on which they own fields (an `Apply` managedFields entry): a
    #: move restores such an object's managedFields (one more write), its record of the source included
    applied: dict[str, int] = field(default_factory=dict)
    #: objects on which some controller (not an OPERATOR_TOOLS manager) owns fields by server-side apply:
    #: CAPI applies a control plane's Machines as capi-kubeadmcontrolplane and a MachineSet's as
    #: capi-machineset, so no single manager covers the kind although every Machine has one
    #: (None: a capture made before this was recorded)
    applied_objects: int | None = None

    def common_finalizers(self) -> list[str]:
        return sorted(f for f, n in self.finalizers.items() if n == self.objects)

    def common_apply_manager(self) -> str | None:
        """The manager to seed the kind by server-side apply as, when every live object of the kind has
        fields a controller applied: the one that covers them all, else the most frequent."""
        controllers = {m: n for m, n in sorted(self.applied.items()) if m not in OPERATOR_TOOLS}
        whole = next((m for m, n in controllers.items() if n == self.objects), None)
        if whole is not None or self.applied_objects != self.objects or not controllers:
            return whole
        return max(controllers, key=lambda m: controllers[m])

    def common_annotations(self) -> dict[str, int]:
        return {k: length for k, (n, length) in sorted(self.annotations.items())
                if n == self.objects and not any(s in k for s in STEERING)}


def observe(objs: list[Obj]) -> dict[str, KindMetadata]:
    """Per kind: how many objects carry each finalizer and annotation key, and the longest value."""
    out: dict[str, KindMetadata] = {}
    for o in objs:
        md = o["metadata"]
        entry = out.setdefault(o["kind"], KindMetadata())
        entry.objects += 1
        for f in md.get("finalizers") or []:
            entry.finalizers[f] = entry.finalizers.get(f, 0) + 1
        for key, value in (md.get("annotations") or {}).items():
            seen = entry.annotations.setdefault(key, [0, 0])
            seen[0] += 1
            seen[1] = max(seen[1], len(value))
        managers = {str(e.get("manager")) for e in md.get("managedFields") or [] if e.get("operation") == "Apply"}
        for manager in sorted(managers):
            entry.applied[manager] = entry.applied.get(manager, 0) + 1
        entry.applied_objects = (entry.applied_objects or 0) + bool(managers - OPERATOR_TOOLS)
    return out


async def capture(kube: Kube, namespace: str, types: dict[str, ResourceType]) -> dict[str, KindMetadata]:
    """Read every object of the given kinds (and the Secrets and ConfigMaps) in `namespace`. Read-only."""
    objs: list[Obj] = []
    for rt in [*types.values(), SECRET, CONFIGMAP]:
        if rt.namespaced:
            objs += [{**o, "kind": rt.kind} for o in await kube.list(rt, namespace)]
    return observe(objs)


def dump(metadata: dict[str, KindMetadata], path: Path, *, source: str) -> None:
    path.write_text(json.dumps({"source": source, "kinds": {
        kind: {"objects": m.objects, "finalizers": m.finalizers, "annotations": m.annotations, "applied": m.applied,
               "applied_objects": m.applied_objects}
        for kind, m in sorted(metadata.items())}}, indent=1, sort_keys=True) + "\n")


def load(path: Path = FILE) -> dict[str, KindMetadata]:
    data = json.loads(path.read_text())
    return {kind: KindMetadata(v["objects"], dict(v["finalizers"]), {k: list(a) for k, a in v["annotations"].items()},
                               dict(v.get("applied") or {}), v.get("applied_objects"))
            for kind, v in data["kinds"].items()}


def apply(objs: list[Obj], metadata: dict[str, KindMetadata]) -> int:
    """Give each seed object the finalizers and annotations every live object of its kind carries (an
    annotation the seed sets already keeps the seed's value). Returns the number of objects changed."""
    changed = 0
    for o in objs:
        live = metadata.get(o["kind"])
        if live is None:
            continue
        md = o["metadata"]
        finalizers = [f for f in live.common_finalizers() if f not in (md.get("finalizers") or [])]
        annotations = {k: "x" * n for k, n in live.common_annotations().items()
                       if k not in (md.get("annotations") or {})}
        if finalizers:
            md["finalizers"] = [*(md.get("finalizers") or []), *finalizers]
        if annotations:
            md["annotations"] = {**(md.get("annotations") or {}), **annotations}
        changed += bool(finalizers or annotations)
    return changed

"""What a move does, as pure functions of the two clusters' views: the plan, and the object surgery.

No I/O here: the mover (which writes), the pre-flight (which checks a plan before any write), verify
and the Pulumi layer all derive from these functions, so they agree on what a move will do.

The annotation vocabulary a re-run recognises its own work by:
- `SOURCE_UID` on every object we create: the UID of the object it was copied from, so a copy made by
  an earlier, interrupted run is told apart from an unrelated object of the same name.
- `PAUSED_BY` on every Cluster / ClusterClass we pause (BareMetalHosts carry our value in BMO's own
  paused annotation), so we only ever unpause what we paused.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from metal3_pivot.discovery import ClusterView
from metal3_pivot.errors import PivotError
from metal3_pivot.graph import CAPI_GROUP, CLUSTERCTL_LABEL, Node, ObjKey, kind_counts, levels

Obj = dict[str, Any]

SOURCE_UID = "metal3-pivot.io/source-uid"
SOURCE_VERSION = "metal3-pivot.io/source-resource-version"
PAUSED_BY = "metal3-pivot.io/paused"
DELETE_FOR_MOVE = f"{CLUSTERCTL_LABEL}/delete-for-move"
CLUSTERCLASS_PAUSED = "cluster.x-k8s.io/paused"
BMH_GROUP = "metal3.io"
BMH_PAUSED = "baremetalhost.metal3.io/paused"
BMH_STATUS = "baremetalhost.metal3.io/status"
OUR_PAUSE_VALUE = "metal3-pivot"

#: metadata the API server sets: differs between clusters, never copied
SERVER_SET_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink")
#: what a copy for the target drops: the server-set fields, and a deletion in progress in the source
STRIP_METADATA = (*SERVER_SET_METADATA, "deletionTimestamp", "deletionGracePeriodSeconds")

@dataclass
class Plan:
    """What a run will do, derived from both clusters; also what `plan` and `--dry-run` print."""

    source: ClusterView
    target: ClusterView
    moving: dict[ObjKey, Node]                  # every object of the move, as the source has it
    to_create: list[ObjKey]
    already_in_target: list[ObjKey]
    conflicts: list[tuple[ObjKey, str]]

    def ordered(self) -> list[list[Node]]:
        return levels(self.moving)

    def counts(self) -> dict[str, int]:
        return kind_counts(self.moving)


# ---------------------------------------------------------------------------------------------- pairing

def related(a: Obj, b: Obj) -> bool:
    """True when one object was copied from the other by a move of ours (in either direction)."""
    a_md, b_md = a["metadata"], b["metadata"]
    return bool((a_md.get("annotations") or {}).get(SOURCE_UID) == b_md.get("uid")
                or (b_md.get("annotations") or {}).get(SOURCE_UID) == a_md.get("uid"))


def make_plan(source: ClusterView, target: ClusterView) -> Plan:
    moving = dict(source.graph.move_nodes())
    # Leftovers of an interrupted run: source objects whose copy already exists in the target are part of
    # the move even if discovery no longer reaches them (their owner may be gone from the source).
    for key, node in source.graph.nodes.items():
        if key not in moving and key in target.graph.nodes and related(node.obj, target.graph.nodes[key].obj):
            moving[key] = node
    to_create, present, conflicts = [], [], []
    for key, node in sorted(moving.items()):
        other = target.graph.nodes.get(key)
        if other is None:
            to_create.append(key)
        elif related(node.obj, other.obj):
            present.append(key)
        else:
            conflicts.append((key, "the target already has an object of this name that no move of ours "
                                   "created: remove it from the target or resolve it by hand"))
    return Plan(source, target, moving, to_create, present, conflicts)


# ---------------------------------------------------------------------------------------------- object surgery

def target_copy(node: Node, uid_map: dict[ObjKey, str], by_source_uid: dict[str, ObjKey]) -> Obj:
    """The object to create in the target: identity kept, cluster-assigned metadata and status dropped,
    ownerReferences pointed at the target's UIDs, and our SOURCE_UID mark added."""
    obj = copy.deepcopy(node.obj)
    md = obj["metadata"]
    md.get("annotations", {}).pop(DELETE_FOR_MOVE, None)
    for f in STRIP_METADATA:
        md.pop(f, None)
    obj.pop("status", None)
    source_version = str(node.obj["metadata"].get("resourceVersion", ""))
    md.setdefault("annotations", {})[SOURCE_UID] = node.uid
    md["annotations"][SOURCE_VERSION] = source_version
    refs = []
    for ref in md.get("ownerReferences") or []:
        owner = by_source_uid.get(str(ref.get("uid")))
        if owner is None or owner not in uid_map:
            raise PivotError(f"{node.key}: owner {ref.get('kind')} {ref.get('name')} is not in the target yet; "
                             "this is a bug in the move order, nothing was deleted from the source")
        refs.append({**ref, "uid": uid_map[owner]})
    if refs:
        md["ownerReferences"] = refs
    return obj


def carried_bmh_status(obj: Obj) -> Obj | None:
    """The BareMetalHost status held in its status annotation (what BMO itself restores from)."""
    raw = (obj["metadata"].get("annotations") or {}).get(BMH_STATUS)
    if not raw:
        return None
    try:
        status = json.loads(raw)
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


def status_annotation_of(obj: Obj) -> str | None:
    """What CAPM3 writes into BMH_STATUS when a Cluster is paused: the status without hardware details
    (those live in the HardwareData object)."""
    status = copy.deepcopy(obj.get("status") or {})
    if not status.get("provisioning"):
        return None
    status.pop("hardware", None)
    return json.dumps(status, sort_keys=True, separators=(",", ":"))


def pause_patch(node: Node) -> Obj | None:
    """The merge patch that pauses a source object (None: nothing to pause). Also what the pre-flight adds
    to an object's annotations when it checks that the copy will fit the API server's limits."""
    ann = node.annotations
    gk = node.key.group_kind
    if gk == (CAPI_GROUP, "Cluster") and not (node.obj.get("spec") or {}).get("paused"):
        return {"spec": {"paused": True}, "metadata": {"annotations": {PAUSED_BY: "true"}}}
    if gk == (CAPI_GROUP, "ClusterClass") and CLUSTERCLASS_PAUSED not in ann:
        return {"metadata": {"annotations": {CLUSTERCLASS_PAUSED: "", PAUSED_BY: "true"}}}
    if gk == (BMH_GROUP, "BareMetalHost"):
        add: dict[str, str] = {}
        if BMH_PAUSED not in ann:
            add[BMH_PAUSED] = OUR_PAUSE_VALUE
        if BMH_STATUS not in ann:
            carried = status_annotation_of(node.obj)
            if carried is not None:
                add[BMH_STATUS] = carried
        if add:
            return {"metadata": {"annotations": add}}
    return None


def copy_annotations(node: Node) -> dict[str, str]:
    """The annotations the target's copy of a source object will carry: the source's, plus what the pause
    adds, plus our marks (a resourceVersion is at most 20 digits), minus delete-for-move."""
    ann = node.annotations
    ann.update(((pause_patch(node) or {}).get("metadata") or {}).get("annotations") or {})
    ann.pop(DELETE_FOR_MOVE, None)
    ann[SOURCE_UID] = node.uid or "0" * 36
    ann[SOURCE_VERSION] = "9" * 20
    return ann


def unpause_patches(view: ClusterView) -> list[tuple[Node, Obj]]:
    """What is still paused by a move of ours in this cluster, and the patch that unpauses each."""
    patches: list[tuple[Node, Obj]] = []
    for node in view.graph.nodes.values():
        ann = node.annotations
        gk = node.key.group_kind
        if gk == (CAPI_GROUP, "Cluster") and ann.get(PAUSED_BY):
            # `null` removes the field, as clusterctl does: the object ends as it was before the move
            patches.append((node, {"spec": {"paused": None}, "metadata": {"annotations": {PAUSED_BY: None}}}))
        elif gk == (CAPI_GROUP, "ClusterClass") and ann.get(PAUSED_BY):
            patches.append((node, {"metadata": {"annotations": {PAUSED_BY: None, CLUSTERCLASS_PAUSED: None}}}))
        elif gk == (BMH_GROUP, "BareMetalHost") and ann.get(BMH_PAUSED) == OUR_PAUSE_VALUE:
            patches.append((node, {"metadata": {"annotations": {BMH_PAUSED: None}}}))
    return patches



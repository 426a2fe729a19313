"""What a move does, as pure functions of the two clusters' views: the plan, and the object surgery.

No I/O here: the mover (which writes), the pre-flight (which checks a plan before any write), verify
and the Pulumi layer all derive from these functions, so they agree on what a move will do.

The annotation vocabulary a re-run recognises its own work by:
- `SOURCE_UID` on every object we create: the UID of the object it was copied from, so a copy made by
  an earlier, interrupted run is told apart from an unrelated object of the same name.
- `PAUSED_BY` on every Cluster / ClusterClass we pause (BareMetalHosts carry our value in BMO's own
  paused annotation), so we only ever unpause what we paused.
- `STATUS_ADDED` on a BareMetalHost whose status annotation the pause wrote, so that unpausing (a roll-back)
  removes the annotation again.

None of them outlives a finished move: once the source no longer holds an object, its copy's SOURCE_UID
and SOURCE_VERSION are removed (`marks_to_strip`), before the target is unpaused, so no controller ever
sees them (CAPI copies a MachineDeployment's annotations onto its MachineSets).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from metal3_pivot.discovery import ClusterView, unpack_managed_fields
from metal3_pivot.errors import PivotError
from metal3_pivot.graph import CAPI_GROUP, CLUSTERCTL_LABEL, Node, ObjKey, kind_counts, levels, stuck_in_cycles

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
STATUS_ADDED = "metal3-pivot.io/status-added"

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
    #: left in the source as clusterctl leaves them: in (or below) an ownerReference cycle, never creatable
    stuck: list[ObjKey] = field(default_factory=list)

    def ordered(self) -> list[list[Node]]:
        return levels(self.moving)

    def counts(self) -> dict[str, int]:
        return kind_counts(self.moving)

    @property
    def to_delete(self) -> list[ObjKey]:
        """What leaves the source: everything moving except what is kept there (global objects, shared
        ClusterClasses)."""
        return sorted(k for k, n in self.moving.items() if not n.kept)

    def release(self) -> None:
        """Drop every object the plan holds, once the writes that need them are done. Why: each view holds its
        cluster's objects whole (~600 MB of Python objects at 5,000 hosts), and what a run does after its
        deletes reads the target afresh; without this the source's view and the fresh one coexist, and the
        engine's peak memory doubles (docs/performance.md)."""
        self.source.graph.nodes.clear()
        self.target.graph.nodes.clear()
        self.moving.clear()

    @property
    def work(self) -> bool:
        """Something to create or to delete (a kept object the target already has is neither)."""
        return bool(self.to_create or self.to_delete)


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
    stuck = stuck_in_cycles(moving)
    for key in stuck:
        del moving[key]
    to_create, present, conflicts = [], [], []
    for key, node in sorted(moving.items()):
        other = target.graph.nodes.get(key)
        if other is None:
            to_create.append(key)
        elif related(node.obj, other.obj) or node.kept:
            # a kept object the target already has is skipped, as clusterctl skips it
            present.append(key)
        else:
            conflicts.append((key, "the target already has an object of this name that no move of ours "
                                   "created: remove it from the target or resolve it by hand"))
    return Plan(source, target, moving, to_create, present, conflicts, sorted(stuck))


def uids(view: ClusterView) -> set[str]:
    return {n.uid for n in view.graph.nodes.values()}


def marks_to_strip(source_uids: set[str], target: ClusterView) -> list[Node]:
    """Copies in the target whose original is no longer in the source (`source_uids`: what the source still
    holds; the original was deleted by this run or an earlier one): their SOURCE_UID / SOURCE_VERSION have
    served their purpose and come off."""
    return [n for n in target.graph.nodes.values()
            if (SOURCE_UID in n.annotations or SOURCE_VERSION in n.annotations)
            and n.annotations.get(SOURCE_UID) not in source_uids]


STRIP_PATCH: Obj = {"metadata": {"annotations": {SOURCE_UID: None, SOURCE_VERSION: None}}}


# ---------------------------------------------------------------------------------------------- object surgery

def target_copy(node: Node, uid_map: dict[ObjKey, str], by_source_uid: dict[str, ObjKey],
                api_versions: dict[ObjKey, str] | None = None) -> Obj:
    """The object to create in the target, as clusterctl writes it: identity kept, cluster-assigned metadata,
    status and `generateName` dropped, ownerReferences rebuilt (apiVersion of the owner as the source
    serves it, the target's UID, controller and blockOwnerDeletion kept). Our SOURCE_UID / SOURCE_VERSION
    marks are added for the move's duration, except on kept objects (never deleted, so never paired)."""
    obj = copy.deepcopy(node.obj)
    md = obj["metadata"]
    md.get("annotations", {}).pop(DELETE_FOR_MOVE, None)
    for f in STRIP_METADATA:
        md.pop(f, None)
    if md.get("name"):
        md.pop("generateName", None)
    obj.pop("status", None)
    if not node.kept:
        md.setdefault("annotations", {})[SOURCE_UID] = node.uid
        md["annotations"][SOURCE_VERSION] = str(node.obj["metadata"].get("resourceVersion", ""))
    if not md.get("annotations"):
        md.pop("annotations", None)
    refs = []
    for ref in md.get("ownerReferences") or []:
        owner = by_source_uid.get(str(ref.get("uid")))
        if owner is None or owner not in uid_map:
            raise PivotError(f"{node.key}: owner {ref.get('kind')} {ref.get('name')} is not in the target yet; "
                             "this is a bug in the move order, nothing was deleted from the source")
        rebuilt = {"apiVersion": (api_versions or {}).get(owner, ref.get("apiVersion")), "kind": ref.get("kind"),
                   "name": ref.get("name"), "uid": uid_map[owner]}
        rebuilt.update({k: ref[k] for k in ("controller", "blockOwnerDeletion") if k in ref})
        refs.append(rebuilt)
    if refs:
        md["ownerReferences"] = refs
    return obj


def managed_fields_patch(node: Node) -> Obj | None:
    """The patch that gives a fresh copy the source's managedFields, where a server-side-apply manager owns
    fields (CAPI's topology controller, for one): clusterctl restores them so that the manager, not the
    mover, keeps owning those fields, and can still remove them. Objects written only by updates (no
    `Apply` entry) need no extra write: nobody's field ownership depends on them."""
    fields = node.obj["metadata"].get("managedFields") or []
    if not any(entry.get("operation") == "Apply" for entry in fields):
        return None
    return {"metadata": {"managedFields": unpack_managed_fields(fields)}}


def carried_bmh_status(obj: Obj) -> Obj | None:
    """The BareMetalHost status held in its status annotation (what BMO itself restores from), else in the
    object's own status (a backup file)."""
    raw = (obj["metadata"].get("annotations") or {}).get(BMH_STATUS)
    if not raw:
        # a clusterctl backup file holds the host's status itself
        own = obj.get("status")
        return copy.deepcopy(own) if isinstance(own, dict) and own.get("provisioning") else None
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
                add[STATUS_ADDED] = "true"
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


def unpause_patch(node: Node) -> Obj | None:
    """The merge patch that undoes a pause of ours on this object (None: not paused by us)."""
    ann = node.annotations
    gk = node.key.group_kind
    if gk == (CAPI_GROUP, "Cluster") and ann.get(PAUSED_BY):
        # `null` removes the field, as clusterctl does: the object ends as it was before the move
        return {"spec": {"paused": None}, "metadata": {"annotations": {PAUSED_BY: None}}}
    if gk == (CAPI_GROUP, "ClusterClass") and ann.get(PAUSED_BY):
        return {"metadata": {"annotations": {PAUSED_BY: None, CLUSTERCLASS_PAUSED: None}}}
    if gk == (BMH_GROUP, "BareMetalHost") and (ann.get(BMH_PAUSED) == OUR_PAUSE_VALUE or STATUS_ADDED in ann):
        drop: dict[str, None] = {}
        if ann.get(BMH_PAUSED) == OUR_PAUSE_VALUE:
            drop[BMH_PAUSED] = None
        if STATUS_ADDED in ann:   # the pause wrote the status annotation: take it away with the pause
            drop.update({BMH_STATUS: None, STATUS_ADDED: None})
        return {"metadata": {"annotations": drop}}
    return None


def restore_unpause_patch(node: Node) -> Obj | None:
    """After a restore from a backup, clusterctl unpauses every Cluster and ClusterClass of the backup (its
    files hold them paused, by whoever took the backup); hosts paused by us are unpaused as after a move."""
    gk = node.key.group_kind
    ann = node.annotations
    if gk == (CAPI_GROUP, "Cluster") and ((node.obj.get("spec") or {}).get("paused") or PAUSED_BY in ann):
        return {"spec": {"paused": None}, "metadata": {"annotations": {PAUSED_BY: None}}}
    if gk == (CAPI_GROUP, "ClusterClass") and (CLUSTERCLASS_PAUSED in ann or PAUSED_BY in ann):
        return {"metadata": {"annotations": {PAUSED_BY: None, CLUSTERCLASS_PAUSED: None}}}
    return unpause_patch(node)


def hosts_missing_status(view: ClusterView) -> list[tuple[Node, Obj]]:
    """Host copies of ours (still paused by us, or still marked) that have no provisioning status although
    they carry one in their status annotation, each with that status: a run killed between creating a
    host's copy and writing its status leaves one. Unpaused like that (the unpause takes the annotation we
    added away), BMO would register it as a new host and provision it again: a real machine wiped."""
    out = []
    for node in view.graph.nodes.values():
        if node.key.group_kind != (BMH_GROUP, "BareMetalHost"):
            continue
        ann = node.annotations
        ours = ann.get(BMH_PAUSED) == OUR_PAUSE_VALUE or SOURCE_UID in ann
        if not ours or ((node.obj.get("status") or {}).get("provisioning") or {}).get("state"):
            continue
        status = carried_bmh_status(node.obj)
        if status is not None and (status.get("provisioning") or {}).get("state"):
            out.append((node, status))
    return out


def unpause_patches(view: ClusterView) -> list[tuple[Node, Obj]]:
    """What is still paused by a move of ours in this cluster, and the patch that unpauses each."""
    return [(node, patch) for node in view.graph.nodes.values() if (patch := unpause_patch(node)) is not None]

"""What a move does, as pure functions of the two clusters' views: the plan, and the object surgery.

No I/O here: the mover (which writes), the pre-flight (which checks a plan before any write), verify
and the Pulumi layer all derive from these functions, so they agree on what a move will do.

The vocabulary a re-run recognises its own work by:
- every copy we create records the UID and resourceVersion of the object it was copied from, so that a
  copy made by an earlier, interrupted run is told apart from an unrelated object of the same name, and
  a source edited since is copied again. The record is the name of the field manager that creates the
  copy (`COPY_MANAGER`, kept by the API server in the copy's managedFields, atomically with the create,
  and never taken off: a finished move writes nothing more for it). Where the move replaces the copy's
  managedFields with the source's (a server-side-apply manager owns fields), the replacement carries the
  record on as one more entry under the same name, owning only COPY_RECORD_FIELDS, a field no object has
  (`managed_fields_patch`). Where the name would not last at all (the copy sets no field but its name:
  `marked_by_annotation`) the record is the annotations SOURCE_UID / SOURCE_VERSION instead, taken off
  once the source no longer holds the object (`marks_to_strip`), before the target is unpaused, so no
  controller ever sees them (CAPI copies a MachineDeployment's annotations onto its MachineSets).
  `copy_marks` reads both.
- `PAUSED_BY` on every Cluster / ClusterClass we pause (BareMetalHosts carry our value in BMO's own
  paused annotation), so we only ever unpause what we paused.
- `STATUS_ADDED` on a BareMetalHost whose status annotation the pause wrote, so that unpausing (a roll-back)
  removes the annotation again.

None of the annotations outlives a finished move. The field manager's name does, as any creator's does:
it then names an object that no longer exists, and pairs nothing (UIDs are never reused).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from metal3_pivot.discovery import ClusterView, unpack_managed_fields
from metal3_pivot.errors import PivotError
from metal3_pivot.graph import (
    BMH_GROUP,
    CAPI_GROUP,
    CLUSTERCTL_LABEL,
    Node,
    ObjKey,
    kind_counts,
    levels,
    stuck_in_cycles,
)

Obj = dict[str, Any]

SOURCE_UID = "metal3-pivot.io/source-uid"
SOURCE_VERSION = "metal3-pivot.io/source-resource-version"
PAUSED_BY = "metal3-pivot.io/paused"
DELETE_FOR_MOVE = f"{CLUSTERCTL_LABEL}/delete-for-move"
CLUSTERCLASS_PAUSED = "cluster.x-k8s.io/paused"
BMH_PAUSED = "baremetalhost.metal3.io/paused"
BMH_STATUS = "baremetalhost.metal3.io/status"
OUR_PAUSE_VALUE = "metal3-pivot"
STATUS_ADDED = "metal3-pivot.io/status-added"
#: the field manager that creates a copy, when the copy's marks live in its name: COPY_MANAGER + "<uid>@<rv>"
#: of the source object (at most 81 characters; the API server takes up to 128)
COPY_MANAGER = "metal3-pivot.io/copy-of/"
#: what the record's entry owns in a copy whose managedFields the move restored: an annotation key no one
#: writes. Owning no field the object has, the entry can neither conflict with a server-side applier nor
#: take a field from one; owning something, it is kept (the API server drops an entry that owns nothing)
COPY_RECORD_FIELDS: dict[str, Any] = {"f:metadata": {"f:annotations": {"f:metal3-pivot.io/copy-of": {}}}}

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
        cluster's objects whole (~600 MB of Python objects at 5,000 hosts), and a run that must read the
        target afresh after its deletes (Mover._finish_known) would otherwise hold the source's view beside
        the fresh one: the engine's peak memory doubled (docs/performance.md)."""
        self.source.graph.nodes.clear()
        self.target.graph.nodes.clear()
        self.moving.clear()

    @property
    def work(self) -> bool:
        """Something to create or to delete (a kept object the target already has is neither)."""
        return bool(self.to_create or self.to_delete)


# ---------------------------------------------------------------------------------------------- pairing

def copy_marks(obj: Obj) -> dict[str, str]:
    """The objects `obj` was copied from by a move of ours, as {source UID: its resourceVersion then}: from
    the name of the field manager that created it, or from SOURCE_UID / SOURCE_VERSION (copies whose marks
    live there, and copies made before the marks moved into the manager's name). Usually one; none for an
    object no move of ours created."""
    md = obj["metadata"]
    marks: dict[str, str] = {}
    for entry in md.get("managedFields") or ():
        manager = str(entry.get("manager") or "")
        if manager.startswith(COPY_MANAGER):
            uid, _, version = manager[len(COPY_MANAGER):].partition("@")
            marks[uid] = version
    ann = md.get("annotations") or {}
    if ann.get(SOURCE_UID):
        marks[str(ann[SOURCE_UID])] = str(ann.get(SOURCE_VERSION) or "")
    return marks


def related(a: Obj, b: Obj) -> bool:
    """True when one object was copied from the other by a move of ours (in either direction)."""
    a_uid, b_uid = a["metadata"].get("uid"), b["metadata"].get("uid")
    return bool((b_uid and b_uid in copy_marks(a)) or (a_uid and a_uid in copy_marks(b)))


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
    serves it, the target's UID, controller and blockOwnerDeletion kept). Where the copy's marks go in
    annotations (`marked_by_annotation`), SOURCE_UID / SOURCE_VERSION are added for the move's duration;
    otherwise the mover creates the copy as `copy_manager(node)`. Kept objects (never deleted, so never
    paired) carry neither."""
    obj = copy.deepcopy(node.obj)
    md = obj["metadata"]
    for stale in _NOT_ANNOTATIONS:   # a copy's marks name its own source only
        md.get("annotations", {}).pop(stale, None)
    for f in STRIP_METADATA:
        md.pop(f, None)
    if md.get("name"):
        md.pop("generateName", None)
    obj.pop("status", None)
    if not node.kept and marked_by_annotation(node):
        md.setdefault("annotations", {}).update(annotation_marks(node))
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


def copied_content(obj: Obj, *, finalizers: bool = True) -> Obj:
    """What a copy of `obj` takes from it, as `target_copy` takes it (before owner UIDs are rebuilt): all but
    the status, the server-set metadata and the move's own annotations. Two versions of a source object
    with the same copied content have the same copy: a change to the status alone (CAPI's controllers
    write a Paused condition on every object of a Cluster just paused) loses nothing when the older version
    was copied. `finalizers=False`: without the finalizers (the delete-for-move patch has taken them off)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    md = {k: v for k, v in obj["metadata"].items() if k not in STRIP_METADATA}
    md["annotations"] = {k: v for k, v in (md.get("annotations") or {}).items() if k not in _NOT_ANNOTATIONS}
    if not finalizers or not md.get("finalizers"):
        md.pop("finalizers", None)
    out["metadata"] = md
    return out


def same_copy(copied: Obj, now: Obj) -> bool:
    """Whether `now`, a later version of the source object `copied`, has the copy `copied` made (the same
    object, `copied_content` equal). Without the finalizers once the delete-for-move patch (which takes
    them off) is on it: what the copy holds of them is the object's before that patch."""
    if now["metadata"].get("uid") != copied["metadata"].get("uid"):
        return False
    finalizers = DELETE_FOR_MOVE not in (now["metadata"].get("annotations") or {})
    return copied_content(now, finalizers=finalizers) == copied_content(copied, finalizers=finalizers)


def copy_is_current(node: Node, copy_obj: Obj, uid_map: dict[ObjKey, str], by_source_uid: dict[str, ObjKey],
                    api_versions: dict[ObjKey, str]) -> bool:
    """Whether the copy `copy_obj` in the target holds what `node`, the source object now, would give it,
    the finalizers aside. For a source object that carries the delete-for-move patch: the patch moved its
    resourceVersion past the one its copy records, so the version cannot tell an edit made after the patch
    (a person, a controller that had not seen the pause) from the patch itself; the content can. The
    finalizers are not compared: the patch took the source's off, and the copy holds the original's."""
    try:
        now = target_copy(node, uid_map, by_source_uid, api_versions)
    except PivotError:          # an owner without a copy: nothing to compare with, the version decides
        return True
    return copied_content(now, finalizers=False) == copied_content(copy_obj, finalizers=False)


def annotation_marks(node: Node) -> dict[str, str]:
    """SOURCE_UID / SOURCE_VERSION of a copy of `node`, for a copy whose marks go in annotations."""
    return {SOURCE_UID: node.uid, SOURCE_VERSION: str(node.obj["metadata"].get("resourceVersion", ""))}


def restores_managed_fields(obj: Obj) -> bool:
    """A server-side-apply manager owns fields of `obj`: its copy gets its managedFields (managed_fields_patch)."""
    return any(entry.get("operation") == "Apply" for entry in obj["metadata"].get("managedFields") or ())


#: what does not count as a field a copy sets: the API server keeps no managedFields entry for a manager
#: whose create set nothing but these
_NOT_FIELDS = frozenset({"apiVersion", "kind", "metadata", "status"})
_NOT_ANNOTATIONS = frozenset({DELETE_FOR_MOVE, SOURCE_UID, SOURCE_VERSION})


def marked_by_annotation(node: Node) -> bool:
    """Whether a copy of `node` carries its marks in annotations (then stripped: one more write) rather than
    in the name of the field manager that creates it (no write at all): only where the copy sets no field
    but its name, since the API server keeps no managedFields entry for a manager that owns nothing.
    At 1,000 hosts the strip was 13,160 PATCHes, a quarter of a move; then, while copies whose
    managedFields the move restores were still marked here, 3,000 (docs/performance.md)."""
    md = node.obj["metadata"]
    if md.get("labels") or md.get("ownerReferences") or md.get("finalizers"):
        return False
    if set(md.get("annotations") or ()) - _NOT_ANNOTATIONS:
        return False
    return not any(value not in (None, "", {}, []) for key, value in node.obj.items() if key not in _NOT_FIELDS)


def copy_manager(node: Node) -> str | None:
    """The field manager to create `node`'s copy as: its marks, when they go there (None: the default).
    A kept object's copy is recorded too, though its original stays: the move back finds that copy not
    shared in its own cluster, so it moves it, and meets the original in its target; unrecorded, that was
    an object no move of ours made, and the move back was refused."""
    if marked_by_annotation(node):
        return None
    return f"{COPY_MANAGER}{node.uid}@{node.obj['metadata'].get('resourceVersion', '')}"


def remarked_managed_fields(copy_obj: Obj, source_uid: str, manager: str) -> list[Obj] | None:
    """The managedFields of an existing copy with its creator, the copy manager naming `source_uid`, renamed
    to `manager` (the same source at its new resourceVersion): sent with the rewrite of a stale copy, so
    that the copy keeps one record of its source, the current one. None: the copy has no such entry."""
    entries = unpack_managed_fields(copy_obj["metadata"].get("managedFields") or [])
    found = False
    for entry in entries:
        if str(entry.get("manager") or "").startswith(f"{COPY_MANAGER}{source_uid}@"):
            entry["manager"] = manager
            found = True
    return entries if found else None


def managed_fields_patch(node: Node) -> Obj | None:
    """The patch that gives a fresh copy the source's managedFields, where a server-side-apply manager owns
    fields (CAPI's topology controller, for one): clusterctl restores them so that the manager, not the
    mover, keeps owning those fields, and can still remove them. Objects written only by updates (no
    `Apply` entry) need no extra write: nobody's field ownership depends on them.
    The patch replaces the entry of the manager that created the copy, which is the copy's record of its
    source (`copy_manager`), so the record goes on as an entry of its own that owns COPY_RECORD_FIELDS only:
    field ownership is the source's, as clusterctl leaves it, and the record lasts with no write to strip
    it. A record of an earlier move (the source is itself a copy) is not carried over: it names an object
    gone since."""
    if not restores_managed_fields(node.obj):
        return None
    entries = [e for e in unpack_managed_fields(node.obj["metadata"]["managedFields"]) if not _is_record(e)]
    manager = copy_manager(node)
    if manager is not None:
        entries.append({"manager": manager, "operation": "Update", "apiVersion": node.obj.get("apiVersion", ""),
                        "fieldsType": "FieldsV1", "fieldsV1": COPY_RECORD_FIELDS})
    return {"metadata": {"managedFields": entries}}


def _is_record(entry: Obj) -> bool:
    return str(entry.get("manager") or "").startswith(COPY_MANAGER) and entry.get("fieldsV1") == COPY_RECORD_FIELDS


def restore_pending(source: Obj, copy_obj: Obj) -> bool:
    """A copy of ours whose managedFields the move restores, not restored yet: no server-side-apply entry,
    which the restore brings (a run killed between the create and the restore, or whose create answer was
    lost, leaves one; so does a rewrite of a stale copy, which hands the fields it changes to its writer)."""
    return restores_managed_fields(source) and not restores_managed_fields(copy_obj)


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
    adds, plus our marks where they go in annotations (a resourceVersion is at most 20 digits), minus
    delete-for-move."""
    ann = node.annotations
    ann.update(((pause_patch(node) or {}).get("metadata") or {}).get("annotations") or {})
    for stale in _NOT_ANNOTATIONS:
        ann.pop(stale, None)
    if not node.kept and marked_by_annotation(node):
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
    """Host copies of ours (still paused by us, or made by a move of ours) that have no provisioning status although
    they carry one in their status annotation, each with that status: a run killed between creating a
    host's copy and writing its status leaves one. Unpaused like that (the unpause takes the annotation we
    added away), BMO would register it as a new host and provision it again: a real machine wiped."""
    out = []
    for node in view.graph.nodes.values():
        if node.key.group_kind != (BMH_GROUP, "BareMetalHost"):
            continue
        ann = node.annotations
        ours = ann.get(BMH_PAUSED) == OUR_PAUSE_VALUE or bool(copy_marks(node.obj))
        if not ours or ((node.obj.get("status") or {}).get("provisioning") or {}).get("state"):
            continue
        status = carried_bmh_status(node.obj)
        if status is not None and (status.get("provisioning") or {}).get("state"):
            out.append((node, status))
    return out


def unpause_patches(view: ClusterView) -> list[tuple[Node, Obj]]:
    """What is still paused by a move of ours in this cluster, and the patch that unpauses each."""
    return [(node, patch) for node in view.graph.nodes.values() if (patch := unpause_patch(node)) is not None]


@dataclass
class Finish:
    """What the end of a move writes in the target, in this order: the provisioning status of host copies
    that lack it, the marks that come off, the unpauses. Each entry's node gives the object's type and name
    (and, read from the target, what it holds)."""

    statuses: list[tuple[Node, Obj]] = field(default_factory=list)
    marked: list[Node] = field(default_factory=list)
    unpauses: list[tuple[Node, Obj]] = field(default_factory=list)

    @classmethod
    def of(cls, target: ClusterView, source_uids: set[str]) -> Finish:
        """From the target as read (`source_uids`: what the source still holds)."""
        return cls(hosts_missing_status(target), marks_to_strip(source_uids, target), unpause_patches(target))

    def __bool__(self) -> bool:
        """Whether there is anything to write."""
        return bool(self.statuses or self.marked or self.unpauses)

    def counts(self) -> dict[str, int]:
        """How many writes of each step are due, the steps with none left out (what a preview shows)."""
        return {k: n for k, n in (("statuses", len(self.statuses)), ("marks", len(self.marked)),
                                  ("unpauses", len(self.unpauses))) if n}

    def __add__(self, other: Finish) -> Finish:
        return Finish(self.statuses + other.statuses, self.marked + other.marked, self.unpauses + other.unpauses)


def unfinished(source: ClusterView, target: ClusterView) -> Finish:
    """What the end of a move still owes `target`, read from both clusters. A move stopped after its last
    delete (killed during its unpause, say) has every object where it goes, which counting objects cannot
    tell from a finished move; this can: a run that finds nothing to copy or delete still has this to do."""
    return Finish.of(target, uids(source))


def kept_paused(plan: Plan) -> list[tuple[Node, Obj]]:
    """What stays in the source (shared or global) that a move of ours paused there, each with the patch
    that unpauses it: clusterctl leaves it paused, which stops its other Clusters' topology reconciling."""
    return [(n, p) for n in plan.moving.values()
            if n.kept and n.annotations.get(PAUSED_BY) and (p := unpause_patch(n)) is not None]


def finish_of_copies(sources: list[Node], source_uids: set[str]) -> Finish:
    """`Finish.of` for the copies a run created from `sources` (as the pause left them), from what the run
    wrote instead of a read of the target: a copy carries its source's annotations as paused, with our
    marks where `target_copy` puts them in annotations (the same tests as `marks_to_strip` and
    `unpause_patch` then give the same answers), and every host copy got its status right after its create
    (`Mover._create_one`), which is what `hosts_missing_status` looks for. The entries hold stand-ins that
    keep the name only, so the sources' objects can go."""
    out = Finish()
    for node in sources:
        md = node.obj["metadata"]
        name_only = Node(node.key, node.type, {"metadata": {k: md[k] for k in ("name", "namespace") if k in md}})
        if not node.kept and marked_by_annotation(node) and node.uid not in source_uids:
            out.marked.append(name_only)
        patch = unpause_patch(node)
        if patch is not None:
            out.unpauses.append((name_only, patch))
    return out

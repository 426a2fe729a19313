"""Where a copy records the object it was copied from (pure: no cluster). The API server's side of it (the
creator's name kept, a manager that owns nothing dropped) is held by tests/test_move_resume.py."""

from __future__ import annotations

from typing import Any

import pytest

from metal3_pivot.graph import MOVE_HIERARCHY_LABEL, MOVE_LABEL, Node, ObjKey, TypeInfo
from metal3_pivot.kube import CONFIGMAP, SECRET, ResourceType
from metal3_pivot.plan import (
    COPY_MANAGER,
    COPY_RECORD_FIELDS,
    DELETE_FOR_MOVE,
    SOURCE_UID,
    SOURCE_VERSION,
    copy_annotations,
    copy_is_current,
    copy_manager,
    copy_marks,
    managed_fields_patch,
    marked_by_annotation,
    related,
    remarked_managed_fields,
    restore_pending,
    target_copy,
)

pytestmark = pytest.mark.unit

BMH = TypeInfo.from_crd({"metadata": {"labels": {MOVE_LABEL: "", MOVE_HIERARCHY_LABEL: ""}}},
                        ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts"))
SRC = "0a1b2c3d-0000-4000-8000-000000000001"
DST = "0a1b2c3d-0000-4000-8000-000000000002"
APPLY = {"manager": "capi-topology", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:data": {"f:owned": {}}}}


def node(info: TypeInfo, obj: dict[str, Any], uid: str = SRC, version: str = "4711") -> Node:
    obj.setdefault("metadata", {}).update(uid=uid, resourceVersion=version)
    obj["metadata"].setdefault("namespace", "metal3")
    return Node(ObjKey.of(obj), info, obj)


def host(**metadata: Any) -> Node:
    return node(BMH, {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
                      "metadata": {"name": "h", **metadata}, "spec": {"online": True}})


def configmap(**fields: Any) -> Node:
    return node(TypeInfo(CONFIGMAP), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, **fields})


def test_the_copy_of_an_ordinary_object_is_marked_by_its_creators_name_alone() -> None:
    n = host(annotations={"keep": "me"})
    manager = copy_manager(n)
    assert manager == f"{COPY_MANAGER}{SRC}@4711"
    assert len(f"{COPY_MANAGER}{SRC}@{'9' * 20}") <= 128           # the API server's limit for a manager name
    copied = target_copy(n, {}, {})
    assert copied["metadata"]["annotations"] == {"keep": "me"}      # nothing to take off after the move
    assert SOURCE_UID not in copy_annotations(n)


def test_marks_go_in_annotations_only_where_a_managers_name_would_not_last() -> None:
    # nothing but a name: the API server keeps no entry for a manager that owns nothing
    bare = configmap()
    only_ours = configmap()
    only_ours.obj["metadata"]["annotations"] = {DELETE_FOR_MOVE: "", SOURCE_UID: "old", SOURCE_VERSION: "1"}
    for n in (bare, only_ours):
        assert marked_by_annotation(n) and copy_manager(n) is None, n.key
        ann = target_copy(n, {}, {})["metadata"]["annotations"]
        assert ann == {SOURCE_UID: SRC, SOURCE_VERSION: "4711"}, n.key
        assert copy_annotations(n)[SOURCE_UID] == SRC
    # any field of its own is enough for the name to last
    secret = node(TypeInfo(SECRET), {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque"})
    for n in (configmap(data={"a": "b"}), configmap(binaryData={"a": "Yg=="}), host(), secret):
        assert not marked_by_annotation(n), n.key
    for md in ({"labels": {"a": "b"}}, {"finalizers": ["x"]}, {"annotations": {"a": ""}},
               {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u"}]}):
        n = configmap()
        n.obj["metadata"].update(md)
        assert not marked_by_annotation(n), md


def test_a_restored_copy_keeps_its_record_as_an_entry_that_owns_no_field_of_the_object() -> None:
    """The move replaces the copy's managedFields with the source's (as clusterctl does), which would take
    away the creator's name: the replacement carries the record on as an entry of its own."""
    applied = configmap(data={"owned": "x"})
    update = {"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1",
              "fieldsV1": '{"f:data":{"f:other":{}}}'}             # packed, as discovery holds it
    earlier = {"manager": f"{COPY_MANAGER}{DST}@12", "operation": "Update", "apiVersion": "v1",
               "fieldsType": "FieldsV1", "fieldsV1": COPY_RECORD_FIELDS}
    applied.obj["metadata"]["managedFields"] = [APPLY, update, earlier]
    assert not marked_by_annotation(applied)
    manager = copy_manager(applied)
    assert manager == f"{COPY_MANAGER}{SRC}@4711"
    assert SOURCE_UID not in (target_copy(applied, {}, {})["metadata"].get("annotations") or {})
    patch = managed_fields_patch(applied)
    assert patch is not None
    entries = patch["metadata"]["managedFields"]
    # the source's owners as they were (unpacked), the record of an earlier move gone, this copy's added
    assert entries[:2] == [APPLY, {**update, "fieldsV1": {"f:data": {"f:other": {}}}}]
    assert entries[2] == {"manager": manager, "operation": "Update", "apiVersion": "v1",
                          "fieldsType": "FieldsV1", "fieldsV1": COPY_RECORD_FIELDS}
    assert len(entries) == 3 and copy_marks({"metadata": {"managedFields": entries}}) == {SRC: "4711"}
    # the field it owns is no field a copy has
    owned = COPY_RECORD_FIELDS["f:metadata"]["f:annotations"]
    assert [key[2:] for key in owned] == ["metal3-pivot.io/copy-of"]
    assert "metal3-pivot.io/copy-of" not in copy_annotations(applied)
    # a kept object's copy keeps its record too: the move back pairs it with its original
    applied.should_not_delete = True
    kept = managed_fields_patch(applied)
    assert kept is not None and kept["metadata"]["managedFields"] == entries
    # no server-side-apply owner: nothing to restore
    assert managed_fields_patch(configmap(data={"a": "b"})) is None


def test_a_copy_is_due_its_restore_until_it_has_the_sources_appliers() -> None:
    source = {"metadata": {"managedFields": [APPLY]}}
    created = {"metadata": {"managedFields": [{"manager": f"{COPY_MANAGER}{SRC}@1", "operation": "Update"}]}}
    restored = {"metadata": {"managedFields": [APPLY, {"manager": f"{COPY_MANAGER}{SRC}@1", "operation": "Update"}]}}
    assert restore_pending(source, created)
    assert not restore_pending(source, restored)
    assert not restore_pending({"metadata": {"managedFields": [created["metadata"]["managedFields"][0]]}}, created)


def test_a_copy_carries_no_marks_of_its_sources_own_origin() -> None:
    """A source that is itself a copy still marked (a roll-back's objects): its copy names its own source."""
    n = host(annotations={SOURCE_UID: "grandparent", SOURCE_VERSION: "1"})
    assert SOURCE_UID not in (target_copy(n, {}, {})["metadata"].get("annotations") or {})


def test_kept_objects_are_recorded_in_their_creators_name_and_never_in_annotations() -> None:
    """A kept copy's record pairs it with its original on the move back, where the copy is not shared and
    moves (test_parity_rules.py); it rides the creator's name, which costs nothing and is nothing to take
    off. Annotations would have to come off while the original stays, so a kept object that sets nothing
    but its name is not recorded at all (as before the record existed)."""
    n = host()
    n.should_not_delete = True
    assert copy_manager(n) == f"{COPY_MANAGER}{SRC}@4711"
    assert SOURCE_UID not in (target_copy(n, {}, {})["metadata"].get("annotations") or {})
    bare = configmap()
    bare.should_not_delete = True
    assert copy_manager(bare) is None
    assert SOURCE_UID not in (target_copy(bare, {}, {})["metadata"].get("annotations") or {})


def test_copy_marks_read_the_creators_name_and_the_annotations() -> None:
    by_name = {"metadata": {"uid": DST, "managedFields": [
        {"manager": "kube-controller-manager", "operation": "Update"},
        {"manager": f"{COPY_MANAGER}{SRC}@4711", "operation": "Update", "fieldsV1": '{"f:spec":{}}'}]}}
    assert copy_marks(by_name) == {SRC: "4711"}
    by_annotation = {"metadata": {"uid": DST, "annotations": {SOURCE_UID: SRC, SOURCE_VERSION: "12"}}}
    assert copy_marks(by_annotation) == {SRC: "12"}
    assert copy_marks({"metadata": {"uid": DST}}) == {}
    source = {"metadata": {"uid": SRC}}
    for copy in (by_name, by_annotation):
        assert related(source, copy) and related(copy, source)
    assert not related(source, {"metadata": {"uid": DST}})
    # after a finished move the name stays and names an object that is gone: it pairs nothing
    assert not related({"metadata": {"uid": "another"}}, by_name)
    assert not related({"metadata": {}}, {"metadata": {"annotations": {SOURCE_UID: ""}}})


def test_a_stale_copys_record_is_renamed_to_the_new_version_not_added_to() -> None:
    copy = {"metadata": {"uid": DST, "managedFields": [
        {"manager": f"{COPY_MANAGER}{SRC}@4711", "operation": "Update", "fieldsV1": '{"f:data":{"f:a":{}}}'},
        {"manager": "metal3-pivot", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}}]}}
    entries = remarked_managed_fields(copy, SRC, f"{COPY_MANAGER}{SRC}@4800")
    assert entries is not None
    assert [e["manager"] for e in entries] == [f"{COPY_MANAGER}{SRC}@4800", "metal3-pivot"]
    assert entries[0]["fieldsV1"] == {"f:data": {"f:a": {}}}           # unpacked, as the API server takes it
    assert copy_marks({"metadata": {"managedFields": entries}}) == {SRC: "4800"}
    assert copy["metadata"]["managedFields"][0]["manager"].endswith("@4711")   # the view is left as read
    assert remarked_managed_fields(copy, "another", "x") is None


def test_a_source_marked_for_deletion_is_current_in_its_copy_unless_edited_after_the_mark() -> None:
    """The delete-for-move patch moves the source's version and takes its finalizers off; the copy holds the
    original's finalizers. Only an edit besides that patch makes the copy stale (tests/test_move.py holds
    the same on real clusters)."""
    original = host(finalizers=["metal3.io/baremetalhost"], labels={"rack": "a"})
    copy_obj = target_copy(original, {}, {})
    copy_obj["metadata"].update(uid=DST, resourceVersion="12", managedFields=[{"manager": copy_manager(original)}])
    def marked(version: str, rack: str = "a", online: bool = True) -> Node:
        return node(BMH, {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost", "spec": {"online": online},
                          "metadata": {"name": "h", "labels": {"rack": rack}, "annotations": {DELETE_FOR_MOVE: ""}}},
                    version=version)
    assert copy_is_current(marked("4712"), copy_obj, {}, {}, {})
    assert not copy_is_current(marked("4713", rack="b"), copy_obj, {}, {}, {})
    assert not copy_is_current(marked("4713", online=False), copy_obj, {}, {}, {})

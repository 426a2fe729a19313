"""The pre-flight's size and depth rules on hand-made objects (pure: no cluster). The real API server's
answers behind these limits are in tests/test_bad_input.py."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from metal3_pivot.graph import MOVE_HIERARCHY_LABEL, MOVE_LABEL, Node, ObjKey, TypeInfo
from metal3_pivot.kube import CONFIGMAP, SECRET, ResourceType
from metal3_pivot.plan import BMH_PAUSED, SOURCE_UID, SOURCE_VERSION, copy_annotations
from metal3_pivot.preflight import ANNOTATIONS_LIMIT, MAX_DEPTH, _size_problems, annotations_size, depth

pytestmark = pytest.mark.unit

BMH = TypeInfo.from_crd({"metadata": {"labels": {MOVE_LABEL: "", MOVE_HIERARCHY_LABEL: ""}}},
                        ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts"))
UID = "0a1b2c3d-0000-4000-8000-000000000001"


def node(info: TypeInfo, obj: dict[str, Any]) -> Node:
    obj["metadata"].setdefault("uid", UID)
    obj["metadata"].setdefault("namespace", "metal3")
    return Node(ObjKey.of(obj), info, obj)


def host(annotations: dict[str, str], **spec: Any) -> Node:
    return node(BMH, {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
                      "metadata": {"name": "h", "annotations": dict(annotations)}, "spec": spec})


def test_depth_counts_maps_and_lists_without_recursion() -> None:
    assert depth("x") == 0 and depth({}) == 1 and depth({"a": [{"b": {}}]}) == 4
    deep: dict[str, Any] = {}
    cur = deep
    for _ in range(50_000):                      # far past Python's recursion limit
        cur["a"] = {}
        cur = cur["a"]
    assert depth(deep) == 50_001


def test_stored_size_counts_the_compact_utf8_json_the_api_server_stores() -> None:
    """stored_size measures with orjson; it must count exactly what compact, non-ASCII-escaping JSON weighs."""
    import json

    from metal3_pivot.preflight import stored_size

    n = host({"note-é": "ünïcode ✓ \u2028 \"quoted\" \\ back"}, bmc={"address": "redfish://x"}, n=[1, 2.5, None, True])
    compact = len(json.dumps(n.obj, separators=(",", ":"), ensure_ascii=False).encode())
    assert stored_size(n, 0) == compact + 256


def test_copy_annotations_are_what_the_target_will_hold() -> None:
    after = copy_annotations(host({"keep": "me", "clusterctl.cluster.x-k8s.io/delete-for-move": ""}))
    assert after["keep"] == "me" and after[BMH_PAUSED] == "metal3-pivot"
    assert "clusterctl.cluster.x-k8s.io/delete-for-move" not in after
    # this copy's marks are the name of the field manager that creates it: no annotation of ours
    assert SOURCE_UID not in after and SOURCE_VERSION not in after
    # so are they where the move restores the source's managedFields (the record goes on as an entry)
    applied = host({"keep": "me"})
    applied.obj["metadata"]["managedFields"] = [{"manager": "capi-topology", "operation": "Apply"}]
    assert copy_annotations(applied) == copy_annotations(host({"keep": "me"}))
    # a copy that sets nothing but its name carries them in annotations, counted at their longest
    bare = node(TypeInfo(CONFIGMAP), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    after = copy_annotations(bare)
    assert after == {SOURCE_UID: UID, SOURCE_VERSION: "9" * 20}


def test_annotations_that_only_fit_without_the_pauses_marks_are_refused() -> None:
    base = host({}, online=True)
    room = ANNOTATIONS_LIMIT - annotations_size(copy_annotations(base)) - len("n")
    assert _size_problems(host({"n": "x" * room}, online=True)) == []
    over = host({"n": "x" * (room + 1)}, online=True)
    assert annotations_size(over.annotations) < ANNOTATIONS_LIMIT         # the source accepted it
    problems = _size_problems(over)
    assert [p.code for p in problems] == ["too-large"] and "annotations would grow to" in problems[0].message
    # a host whose managedFields the move restores adds no annotation more: the same room
    applied = host({"n": "x" * room}, online=True)
    applied.obj["metadata"]["managedFields"] = [{"manager": "capi-topology", "operation": "Apply"}]
    assert _size_problems(applied) == []
    applied.obj["metadata"]["annotations"]["n"] += "x"
    assert [p.code for p in _size_problems(applied)] == ["too-large"]


def test_a_full_secret_with_full_annotations_is_not_refused() -> None:
    """Secrets are stored as protobuf (data as raw bytes): 1 MiB of data + 200 KiB of annotations fit in
    etcd although their JSON (base64) is over 1.5 MiB."""
    data = base64.b64encode(b"\0" * (1024 * 1024)).decode()
    secret = node(TypeInfo(SECRET), {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                     "metadata": {"name": "s", "annotations": {"n": "x" * 200_000}},
                                     "data": {"blob": data}})
    assert _size_problems(secret) == []


def test_an_object_near_etcds_limit_is_refused_and_one_too_deep_too() -> None:
    problems = _size_problems(host({}, description="x" * 1_572_000))
    assert [p.code for p in problems] == ["too-large"] and "etcd's default request limit" in problems[0].message
    nested: dict[str, Any] = {}
    cur = nested
    for _ in range(MAX_DEPTH):
        cur["a"] = {}
        cur = cur["a"]
    assert [p.code for p in _size_problems(host({}, nested=nested))] == ["too-deep"]
    assert _size_problems(host({}, description="x" * 1_400_000)) == []


def test_packed_managed_fields_are_lossless_and_sized_as_stored() -> None:
    """Discovery packs each Update entry's fieldsV1 into its JSON text (the engine's memory at 5,000 hosts):
    the size the pre-flight takes is still the size of the object as the API server gives it, a backup and
    the managedFields restore get the tree back, and Apply entries are left as they are."""
    import copy
    import json

    from metal3_pivot.discovery import pack_managed_fields, packed_overcount, unpacked
    from metal3_pivot.plan import managed_fields_patch
    from metal3_pivot.preflight import stored_size

    fields = {"f:metadata": {"f:annotations": {".": {}, "f:note-é": {}}},
              "f:spec": {"f:bmc": {".": {}, "f:address": {}}, "k:{\"uid\":\"x\"}": {}}}
    entries = [{"manager": "capm3", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": fields},
               {"manager": "topology", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields}]
    whole = host({"note-é": "ünïcode"}, bmc={"address": "redfish://x"})
    whole.obj["metadata"]["managedFields"] = copy.deepcopy(entries)
    packed = host({"note-é": "ünïcode"}, bmc={"address": "redfish://x"})
    packed.obj["metadata"]["managedFields"] = copy.deepcopy(entries)
    pack_managed_fields(packed.obj)
    update, apply = packed.obj["metadata"]["managedFields"]
    assert isinstance(update["fieldsV1"], str) and json.loads(update["fieldsV1"]) == fields
    assert apply["fieldsV1"] == fields
    assert packed_overcount(packed.obj) > 0 and packed_overcount(whole.obj) == 0
    assert stored_size(packed, 10) == stored_size(whole, 10)
    assert unpacked(packed.obj) == whole.obj and unpacked(whole.obj) is whole.obj
    restore = managed_fields_patch(packed)
    assert restore is not None
    assert restore["metadata"]["managedFields"][:2] == entries       # then the copy's record (test_copy_marks)

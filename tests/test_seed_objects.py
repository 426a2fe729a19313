"""lab/data/seed_objects.py: the seed's owner graph, names, counts, determinism, and conformance to the real CRDs.

The schema check reads the storage-version openAPIV3Schema of every kind straight from the pinned provider
modules (the same CRD folders the lab clusters install) and walks each manifest and status through it the
way the apiserver's structural validation does: unknown fields, types, required fields, enums, patterns,
lengths, bounds, list-map keys. CEL rules are not evaluated (the test_seed cluster test covers them).
"""

from __future__ import annotations

import base64
import copy
import gc
import json
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.data.seed_objects import SeedObject, Topology, build

pytestmark = pytest.mark.unit

MODULES = Path("/root/go/pkg/mod")
CRD_DIRS = [
    MODULES / "sigs.k8s.io/cluster-api@v1.14.2/core/config/crd/bases",
    MODULES / "sigs.k8s.io/cluster-api@v1.14.2/bootstrap/kubeadm/config/crd/bases",
    MODULES / "sigs.k8s.io/cluster-api@v1.14.2/controlplane/kubeadm/config/crd/bases",
    MODULES / "github.com/metal3-io/cluster-api-provider-metal3@v1.13.2/config/crd/bases",
    MODULES / "github.com/metal3-io/baremetal-operator@v0.13.2/config/base/crds/bases",
    MODULES / "github.com/metal3-io/ip-address-manager@v1.13.2/config/crd/bases",
]
CAPI_GROUPS = ("cluster.x-k8s.io", "bootstrap.cluster.x-k8s.io", "controlplane.cluster.x-k8s.io",
               "infrastructure.cluster.x-k8s.io")

TOPOLOGIES = [
    Topology(),
    Topology(clusters=2, control_planes=1, workers=0, spare_hosts=2),
    Topology(namespace="pivot-lab", clusters=3, control_planes=3, workers=4, spare_hosts=1),
    Topology(control_planes=1, workers=150),          # too big for a /24: the 10.<n>.0.0/16 layout
]

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@cache
def seed_of(topology: Topology) -> list[SeedObject]:
    return build(topology)


# ------------------------------------------------------------------------------------------- schema check

class Crd:
    """The storage version of one CRD: what the apiserver validates and stores."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.group: str = doc["spec"]["group"]
        self.kind: str = doc["spec"]["names"]["kind"]
        storage = next(v for v in doc["spec"]["versions"] if v.get("storage"))
        self.version: str = storage["name"]
        self.schema: dict[str, Any] = storage["schema"]["openAPIV3Schema"]
        self.status_subresource = "status" in (storage.get("subresources") or {})


@cache
def crds() -> dict[tuple[str, str], Crd]:
    found: dict[tuple[str, str], Crd] = {}
    for folder in CRD_DIRS:
        for path in sorted(folder.glob("*.yaml")):
            crd = Crd(yaml.safe_load(path.read_text()))
            found[(crd.group, crd.kind)] = crd
    return found


def _type_ok(value: Any, schema: dict[str, Any]) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str) and not isinstance(value, bool)
    expected = schema.get("type")
    if expected is None:
        return True
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    return checks[expected](value)


def validate(value: Any, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    """Structural validation of `value` against an openAPIV3Schema node; problems appended to `errors`."""
    if value is None:
        if not schema.get("nullable"):
            errors.append(f"{path}: null is not allowed")
        return
    if not _type_ok(value, schema):
        errors.append(f"{path}: {type(value).__name__} is not of type {schema.get('type')}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in enum {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not DATE_TIME.match(value):
            errors.append(f"{path}: {value!r} is not an RFC 3339 date-time")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} below minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} above maximum {schema['maximum']}")
    elif isinstance(value, list):
        _validate_array(value, schema, path, errors)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, errors)


def _validate_array(value: list[Any], schema: dict[str, Any], path: str, errors: list[str]) -> None:
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    for i, item in enumerate(value):
        validate(item, schema.get("items") or {}, f"{path}[{i}]", errors)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set" and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
        errors.append(f"{path}: duplicate items in a set")
    if list_type == "map":
        keys = [tuple(item.get(k) for k in schema.get("x-kubernetes-list-map-keys", [])) for item in value]
        if len(set(keys)) != len(keys):
            errors.append(f"{path}: duplicate list-map keys {keys}")


def _validate_object(value: dict[str, Any], schema: dict[str, Any], path: str, errors: list[str]) -> None:
    for key in schema.get("required", []):
        if key not in value:
            errors.append(f"{path}: required field {key!r} missing")
    if len(value) < schema.get("minProperties", 0):
        errors.append(f"{path}: fewer than {schema['minProperties']} properties")
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            validate(item, properties[key], f"{path}.{key}", errors)
        elif isinstance(extra, dict):
            validate(item, extra, f"{path}.{key}", errors)
        elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
            continue
        else:
            errors.append(f"{path}: unknown field {key!r}")


def validate_metadata(md: dict[str, Any], namespace: str, errors: list[str]) -> None:
    """ObjectMeta as the apiserver checks it for the fields the seed sets."""
    allowed = {"name", "namespace", "labels", "annotations", "ownerReferences"}
    errors += [f"metadata: unexpected field {k!r}" for k in md if k not in allowed]
    name = md.get("name", "")
    if not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        errors.append(f"metadata.name: {name!r} is not a DNS-1123 subdomain")
    if md.get("namespace") != namespace:
        errors.append(f"metadata.namespace: {md.get('namespace')!r} != {namespace!r}")
    for key, val in (md.get("labels") or {}).items():
        prefix, _, label = key.rpartition("/")
        if (prefix and not DNS1123_SUBDOMAIN.match(prefix)) or not LABEL_NAME.match(label) or len(label) > 63:
            errors.append(f"metadata.labels: bad key {key!r}")
        if not isinstance(val, str) or not LABEL_VALUE.match(val) or len(val) > 63:
            errors.append(f"metadata.labels[{key}]: bad value {val!r}")
    for key, val in (md.get("annotations") or {}).items():
        if not isinstance(val, str):
            errors.append(f"metadata.annotations[{key}]: not a string")
    refs = md.get("ownerReferences") or []
    for ref in refs:
        missing = {"apiVersion", "kind", "name", "uid"} - set(ref)
        unknown = set(ref) - {"apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"}
        if missing or unknown:
            errors.append(f"metadata.ownerReferences: {ref} missing {missing} unknown {unknown}")
    if sum(1 for ref in refs if ref.get("controller")) > 1:
        errors.append("metadata.ownerReferences: more than one controller reference")


def schema_errors(so: SeedObject, namespace: str) -> list[str]:
    obj, errors = so.obj, []
    validate_metadata(obj["metadata"], namespace, errors)
    if obj["kind"] == "Secret":
        assert obj["apiVersion"] == "v1"
        errors += [f"unknown Secret field {k!r}" for k in obj if k not in {"apiVersion", "kind", "metadata",
                                                                          "type", "data"}]
        for key, val in obj.get("data", {}).items():
            if not re.match(r"^[-._a-zA-Z0-9]+$", key):
                errors.append(f"data: bad key {key!r}")
            base64.b64decode(val, validate=True)
        if so.status is not None:
            errors.append("a Secret has no status")
        return errors
    group, version = obj["apiVersion"].split("/")
    crd = crds()[(group, obj["kind"])]
    if version != crd.version:
        errors.append(f"apiVersion {obj['apiVersion']} is not the storage version {crd.version}")
    if "status" in obj:
        errors.append("status belongs in SeedObject.status, not in the manifest")
    top = {k: v for k, v in crd.schema["properties"].items() if k not in ("metadata", "status")}
    manifest = {k: v for k, v in obj.items() if k != "metadata"}
    validate(manifest, {**crd.schema, "properties": top}, obj["kind"], errors)
    if so.status is not None:
        if not crd.status_subresource or "status" not in crd.schema["properties"]:
            errors.append(f"{obj['kind']} has no status subresource, status must be None")
        else:
            validate(so.status, crd.schema["properties"]["status"], f"{obj['kind']}.status", errors)
    return errors


def test_the_schema_checker_catches_what_the_apiserver_rejects() -> None:
    bmh = copy.deepcopy(next(so for so in seed_of(Topology()) if so.obj["kind"] == "BareMetalHost"))
    bmh.obj["spec"]["online"] = "yes please"
    bmh.obj["spec"]["bootMode"] = "floppy"
    bmh.obj["spec"]["bmc"].pop("address")
    bmh.obj["spec"]["colour"] = "blue"
    bmh.status["provisioning"]["image"]["format"] = "tarball"
    errors = "\n".join(schema_errors(bmh, "metal3"))
    for expected in ("spec.online", "floppy", "'address' missing", "unknown field 'colour'", "tarball"):
        assert expected in errors


# ---------------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("topology", TOPOLOGIES, ids=lambda t: f"{t.clusters}x{t.control_planes}+{t.workers}")
def test_every_object_conforms_to_its_storage_version_schema(topology: Topology) -> None:
    problems = {(so.obj["kind"], so.obj["metadata"]["name"]): errs
                for so in seed_of(topology) if (errs := schema_errors(so, topology.namespace))}
    assert problems == {}


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=lambda t: f"{t.clusters}x{t.control_planes}+{t.workers}")
def test_owner_references_name_objects_on_lower_levels(topology: Topology) -> None:
    objects = seed_of(topology)
    index = {(so.obj["kind"], so.obj["metadata"]["name"]): so for so in objects}
    for so in objects:
        for ref in so.obj["metadata"].get("ownerReferences") or []:
            owner = index.get((ref["kind"], ref["name"]))
            assert owner is not None, f"{so.obj['kind']}/{so.obj['metadata']['name']}: {ref} not in the seed"
            assert owner.obj["apiVersion"] == ref["apiVersion"]
            assert owner.level < so.level
            assert ref["uid"] == ""
    assert min(so.level for so in objects) == 0


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=lambda t: f"{t.clusters}x{t.control_planes}+{t.workers}")
def test_names_are_unique_per_kind(topology: Topology) -> None:
    keys = Counter((so.obj["kind"], so.obj["metadata"]["name"]) for so in seed_of(topology))
    assert [k for k, n in keys.items() if n > 1] == []


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=lambda t: f"{t.clusters}x{t.control_planes}+{t.workers}")
def test_counts_follow_the_topology(topology: Topology) -> None:
    t = topology
    kinds = Counter(so.obj["kind"] for so in seed_of(t))
    machines = t.clusters * (t.control_planes + t.workers)
    hosts = t.clusters * (t.control_planes + t.workers + t.spare_hosts)
    assert kinds["BareMetalHost"] == kinds["HardwareData"] == hosts
    for kind in ("Machine", "KubeadmConfig", "Metal3Machine", "Metal3DataClaim", "Metal3Data", "IPClaim",
                 "IPAddress"):
        assert kinds[kind] == machines, kind
    for kind in ("Cluster", "Metal3Cluster", "KubeadmControlPlane", "MachineDeployment", "MachineSet",
                 "KubeadmConfigTemplate", "IPPool"):
        assert kinds[kind] == t.clusters, kind
    assert kinds["Metal3MachineTemplate"] == kinds["Metal3DataTemplate"] == 2 * t.clusters
    # 5 cluster secrets; per machine: bootstrap data, metadata, networkdata; per host: BMC credentials
    assert kinds["Secret"] == 5 * t.clusters + 3 * machines + hosts
    states = Counter(so.status["provisioning"]["state"] for so in seed_of(t)
                     if so.obj["kind"] == "BareMetalHost")
    assert states == Counter({"provisioned": machines, "available": t.clusters * t.spare_hosts})


def test_the_build_is_deterministic() -> None:
    topology = Topology(clusters=2, spare_hosts=1)
    first, second = build(topology), build(topology)
    assert first == second
    assert json.dumps([(s.obj, s.status, s.level) for s in first]) == json.dumps(
        [(s.obj, s.status, s.level) for s in second])


def test_a_thousand_hosts_build() -> None:
    """How long the build takes is a benchmark figure (move_bench's `build_s`), not a timed test: a loaded
    CI machine once took 1.03 s against a bound of 1 s here."""
    topology = Topology(clusters=10, control_planes=3, workers=97)
    objects = build(topology)
    assert sum(1 for so in objects if so.obj["kind"] == "BareMetalHost") == 1000
    assert gc.isenabled()          # build pauses the cyclic collector and must switch it back on


def test_no_two_objects_share_a_mutable_node() -> None:
    """The caller fills in uids and may edit objects: nothing may be aliased between two places."""
    seen: dict[int, str] = {}

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict | list):
            assert id(node) not in seen, f"{where} is the same object as {seen[id(node)]}"
            seen[id(node)] = where
            for key, child in (node.items() if isinstance(node, dict) else enumerate(node)):
                walk(child, f"{where}.{key}")

    for so in seed_of(Topology(clusters=2, spare_hosts=1)):
        name = f"{so.obj['kind']}/{so.obj['metadata']['name']}"
        walk(so.obj, name)
        walk(so.status, name + ".status")


def test_bmh_status_annotation_is_the_status_without_hardware() -> None:
    for so in seed_of(Topology(spare_hosts=2)):
        if so.obj["kind"] != "BareMetalHost":
            continue
        annotated = json.loads(so.obj["metadata"]["annotations"]["baremetalhost.metal3.io/status"])
        assert "hardware" not in annotated
        assert so.status["hardware"]
        for key, value in so.status.items():
            if key not in ("hardware", "operationHistory"):
                assert annotated[key] == value, key
        for op, metric in so.status["operationHistory"].items():
            assert annotated["operationHistory"][op] == metric


def test_references_between_objects_resolve() -> None:
    """Spec references (not only ownerReferences) point at objects of the seed."""
    objects = seed_of(Topology(clusters=2, spare_hosts=1))
    names = {(so.obj["kind"], so.obj["metadata"]["name"]) for so in objects}
    for so in objects:
        obj, kind, spec = so.obj, so.obj["kind"], so.obj.get("spec", {})
        assert obj["apiVersion"].split("/")[0] not in CAPI_GROUPS or obj["apiVersion"].endswith("/v1beta2")
        if kind == "Cluster":
            assert ("Metal3Cluster", spec["infrastructureRef"]["name"]) in names
            assert ("KubeadmControlPlane", spec["controlPlaneRef"]["name"]) in names
        if kind == "Machine":
            assert ("KubeadmConfig", spec["bootstrap"]["configRef"]["name"]) in names
            assert ("Secret", spec["bootstrap"]["dataSecretName"]) in names
            assert ("Metal3Machine", spec["infrastructureRef"]["name"]) in names
            assert so.status["nodeRef"]["name"] and so.status["phase"] == "Running"
        if kind == "BareMetalHost":
            assert ("Secret", spec["bmc"]["credentialsName"]) in names
            assert ("HardwareData", obj["metadata"]["name"]) in names
            if "consumerRef" in spec:
                assert ("Metal3Machine", spec["consumerRef"]["name"]) in names
                for field in ("userData", "metaData", "networkData"):
                    assert ("Secret", spec[field]["name"]) in names
        if kind == "Metal3Data":
            for field in ("metaData", "networkData"):
                assert ("Secret", spec[field]["name"]) in names
        if kind == "IPAddress":
            assert ("IPPool", spec["pool"]["name"]) in names and ("IPClaim", spec["claim"]["name"]) in names


def test_cluster_members_carry_the_cluster_name_label() -> None:
    labelled = {"Metal3Cluster", "KubeadmControlPlane", "MachineDeployment", "MachineSet", "Machine",
                "KubeadmConfig", "Metal3Machine", "Metal3DataClaim", "Metal3Data", "IPClaim", "IPAddress",
                "IPPool", "Secret"}
    for so in seed_of(Topology(clusters=2)):
        if so.obj["kind"] in labelled:
            assert so.obj["metadata"]["labels"]["cluster.x-k8s.io/cluster-name"] in ("test1", "test2"), so.obj


def test_invalid_topologies_are_refused() -> None:
    for bad in (Topology(control_planes=2), Topology(clusters=0), Topology(namespace="Metal3"),
                Topology(workers=-1), Topology(kubernetes_version="1.36")):
        with pytest.raises(ValueError):
            build(bad)

"""Unit tests of the Pulumi layer with Pulumi's mocks (no engine, no cluster), plus the config model.

The integration tests run the real CLI; these pin down the shape of what the program declares: type
tokens, parenting, Ironic on exactly one cluster with delete-before-replace, CRDs retained on delete,
kubeconfigs secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from components.config import ConfigError, parse
from components.webhook_cert import TYPE as CERT_TYPE
from components.webhook_cert import WebhookCertificateProvider
from tests.kit.pulumi_mocks import mocks_on_own_loop

pytestmark = pytest.mark.unit


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        if args.typ == CERT_TYPE:   # the dynamic provider does not run under mocks: issue as its create would
            outs = WebhookCertificateProvider().create(dict(args.inputs)).outs
            return f"{args.name}-id", outs
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]] | dict[str, Any]:
        return {}


KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n"


@pytest.fixture
def mocks() -> Iterator[Mocks]:
    yield from mocks_on_own_loop(Mocks())


@pulumi.runtime.test
def test_components_register_under_metal3_tokens_with_ironic_and_bmo(mocks: Mocks) -> Any:
    import pulumi_kubernetes as k8s

    from components.clusters import EphemeralCluster, TargetCluster
    from components.config import IronicConfig
    from components.ironic import Ironic

    eph = EphemeralCluster("ephemeral", KUBECONFIG)
    TargetCluster("target", KUBECONFIG)
    ironic = Ironic("ironic", eph.provider, IronicConfig(), "ephemeral")

    def verify(_: Any) -> None:
        by_name = {r.name: r for r in mocks.resources}
        assert by_name["ephemeral"].typ == "metal3:cluster:EphemeralCluster"
        assert by_name["target"].typ == "metal3:cluster:TargetCluster"
        assert by_name["ironic"].typ == "metal3:ironic:Ironic"
        provider = by_name["ephemeral-k8s"]
        assert provider.inputs["clusterIdentifier"] == "ephemeral"
        deployments = [r for r in mocks.resources if r.typ == "kubernetes:apps/v1:Deployment"]
        assert {d.inputs["metadata"]["name"] for d in deployments} == {
            "ironic", "baremetal-operator-controller-manager"}
    assert isinstance(eph.provider, k8s.Provider)
    return pulumi.Output.all(*[r.urn for r in ironic.resources]).apply(verify)


def test_provider_install_retains_crds_and_orders_them_first() -> None:
    from pathlib import Path

    from components.config import ProvidersConfig
    from components.providers import objects_for

    groups = objects_for(ProvidersConfig(), Path("."))
    assert set(groups) == {"cluster-api", "bootstrap-kubeadm", "control-plane-kubeadm", "infrastructure-metal3",
                           "ipam-metal3", "baremetal-operator"}
    every = [o for objs in groups.values() for o in objs]
    kinds = {o["kind"] for o in every}
    assert {"CustomResourceDefinition", "Namespace", "Deployment", "Provider", "ClusterRole"} <= kinds
    assert not kinds & {"Certificate", "Issuer", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
    inventory = {o["metadata"]["name"]: o for o in every if o["kind"] == "Provider"}
    assert inventory["infrastructure-metal3"]["version"] == "v1.13.2"
    assert not any(o["kind"] == "Deployment" and "baremetal-operator" in o["metadata"]["name"] for o in every)


@pulumi.runtime.test
def test_no_object_is_declared_by_two_components_on_the_cluster_ironic_shares(mocks: Mocks) -> Any:
    """After a pivot Ironic (and BMO's controller) live on the target beside the providers' install: every
    Kubernetes object there has exactly one declaring resource (issue 16 item 3: BMO's namespace was
    declared by ProviderInstall and by Ironic), and BMO's namespace is Ironic's."""
    from pathlib import Path

    from components import crdset
    from components.clusters import TargetCluster
    from components.config import IronicConfig, ProvidersConfig
    from components.ironic import Ironic
    from components.providers import ProviderInstall

    target = TargetCluster("target", KUBECONFIG)
    install = ProviderInstall("target-providers", target, ProvidersConfig(), Path("."))
    ironic = Ironic("ironic", target.provider, IronicConfig(), "target")

    def verify(_: Any) -> None:
        declared: dict[tuple[str, str, str], list[str]] = {}
        for r in mocks.resources:
            if r.typ == crdset.TYPE:        # the CRDs: one CrdSet (components/crdset.py)
                objs = crdset.fetch(r.inputs["manifests"])
                for obj in objs:
                    declared.setdefault(("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition", "",
                                         obj["metadata"]["name"]), []).append(r.name)
                continue
            if not r.typ.startswith("kubernetes:"):
                continue
            # custom resources are declared through a ConfigGroup of one object (components/objects.py)
            for obj in r.inputs["objs"] if r.typ == "kubernetes:yaml/v2:ConfigGroup" else [r.inputs]:
                md = obj["metadata"]
                kind = r.typ if obj is r.inputs else f"{obj['apiVersion']}:{obj['kind']}"
                declared.setdefault((kind, md.get("namespace", ""), md["name"]), []).append(r.name)
        twice = {k: v for k, v in declared.items() if len(v) > 1}
        assert not twice, twice
        (ns,) = [v for (typ, _, name), v in declared.items()
                 if typ == "kubernetes:core/v1:Namespace" and name == "baremetal-operator-system"]
        assert ns[0].startswith("ironic-")
        assert len(declared) > 100        # both components were recorded

    return pulumi.Output.all(*[r.urn for r in [*install.resources, *ironic.resources]]).apply(verify)


# ---------------------------------------------------------------------------------------------- config

BASE = {"location": "ephemeral", "ephemeral": {"kubeconfigPath": "a"}, "target": {"kubeconfigPath": "b"}}


def test_config_accepts_the_local_stack() -> None:
    cfg = parse(BASE)
    assert cfg.location == "ephemeral" and cfg.namespaces == ["metal3"] and cfg.protect


def test_unknown_location_names_the_key_and_the_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:
        parse({**BASE, "location": "elsewhere"})
    assert "metal3-pivot:location" in str(err.value) and "'ephemeral' or 'target'" in str(err.value)


def test_kubeconfig_content_must_be_secret_and_is_never_echoed() -> None:
    secret_text = "apiVersion: v1\nusers: [{name: a, user: {client-key-data: SECRETKEY}}]\n"
    values = {**BASE, "target": {"kubeconfig": secret_text}}
    with pytest.raises(ConfigError) as err:
        parse(values)
    assert "must be secret config" in str(err.value)
    assert parse(values, {"target"}).target.kubeconfig == secret_text
    with pytest.raises(ConfigError) as err2:
        parse({**BASE, "target": {"kubeconfig": secret_text, "kubeconfigPath": "x"}}, {"target"})
    assert "SECRETKEY" not in str(err2.value) and "exactly one" in str(err2.value)


class FakeConfig:
    """What components.config.load reads of pulumi.Config: raw text per key, as the CLI hands it over."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str) -> str | None:
        return self.values.get(self.full_key(key))

    def full_key(self, key: str) -> str:
        return f"metal3-pivot:{key}"


def test_config_is_read_through_pulumi_config_objects_decoded_scalars_coerced() -> None:
    from components.config import load

    raw = {"metal3-pivot:location": "target", "metal3-pivot:namespaces": '["metal3","other"]',
           "metal3-pivot:ephemeral": '{"kubeconfigPath":"a"}', "metal3-pivot:target": '{"kubeconfig":"TEXT"}',
           "metal3-pivot:skipAwait": "true", "metal3-pivot:concurrency": "8", "other-project:x": "ignored"}
    cfg = load(FakeConfig(raw), {"metal3-pivot:target"}.__contains__, raw)
    assert cfg.location == "target" and cfg.namespaces == ["metal3", "other"] and cfg.skip_await
    assert cfg.concurrency == 8 and cfg.target.kubeconfig == "TEXT" and cfg.ephemeral.kubeconfig_path == "a"
    with pytest.raises(ConfigError) as err:                  # the same content, not secret: refused
        load(FakeConfig(raw), lambda _k: False, raw)
    assert "must be secret config" in str(err.value) and "TEXT" not in str(err.value)


def test_config_errors_are_one_line_and_name_the_key() -> None:
    from components.config import load

    base = {"metal3-pivot:location": "target", "metal3-pivot:ephemeral": '{"kubeconfigPath":"a"}',
            "metal3-pivot:target": '{"kubeconfigPath":"b"}'}
    typo = {**base, "metal3-pivot:lcoation": "target"}
    with pytest.raises(ConfigError) as err:
        load(FakeConfig(typo), lambda _k: False, typo)
    assert str(err.value).count("\n") == 0
    assert "metal3-pivot:lcoation: not a setting of this program" in str(err.value) and "location" in str(err.value)
    flat = {**base, "metal3-pivot:providers": "yes"}
    with pytest.raises(ConfigError) as err:
        load(FakeConfig(flat), lambda _k: False, flat)
    assert str(err.value) == ("invalid stack configuration: metal3-pivot:providers: must be a map or a list (set "
                              "it with --path, or in the stack file)")
    bad = {**base, "metal3-pivot:location": "elsewhere"}
    with pytest.raises(ConfigError) as err:
        load(FakeConfig(bad), lambda _k: False, bad)
    assert str(err.value) == ("invalid stack configuration: metal3-pivot:location: Input should be 'ephemeral' or "
                              "'target' (got 'elsewhere')")


def test_ironic_settings_are_validated() -> None:
    with pytest.raises(ConfigError) as err:
        parse({**BASE, "ironic": {"provisioningIp": "not-an-ip"}})
    assert "metal3-pivot:ironic.provisioningIp" in str(err.value)
    with pytest.raises(ConfigError):
        parse({**BASE, "ironic": {"dhcpRange": "172.22.0.10"}})


# ---------------------------------------------------------------------------------------------- ObjectLocation's props

LIVE_KUBECONFIG = ("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n"
                   "    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
                   "users:\n- name: u\n  user:\n    token: t\n")


@pytest.mark.parametrize("kind", ["ObjectLocation", "MovePreflight"])
def test_object_location_declares_exactly_the_props_of_the_shared_model(mocks: Mocks, kind: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Both resources register the inputs and computed keys of metal3_pivot.location, no more, no fewer;
    MovePreflight one more, the token of the reading its program started (components/gate_reading.py)."""
    from components.move_preflight import MovePreflight
    from components.object_location import ObjectLocation
    from metal3_pivot import LocationInputs, LocationState

    seen: dict[str, Any] = {}

    def record(self: Any, provider: Any, name: str, props: dict[str, Any], opts: Any = None) -> None:
        seen.update(props)
    monkeypatch.setattr(pulumi.dynamic.Resource, "__init__", record)
    cls = {"ObjectLocation": ObjectLocation, "MovePreflight": MovePreflight}[kind]
    cls("objects", location="ephemeral", ephemeral_kubeconfig=KUBECONFIG, target_kubeconfig=KUBECONFIG,
        namespaces=["metal3"])
    extra = {"reading"} if kind == "MovePreflight" else set()
    assert set(seen) == set(LocationInputs.prop_keys()) | set(LocationState.prop_keys()) | extra
    assert all(seen[k] == "" for k in extra)               # none started: its check reads itself
    assert LocationInputs.from_props(seen).namespaces == ["metal3"]
    assert all(seen[k] is None for k in LocationState.prop_keys())


def test_move_preflight_has_its_own_type_token_and_never_changes() -> None:
    """Policies find the gate by its type; it owns nothing, so its diff is never a change."""
    from components.move_preflight import MovePreflight, MovePreflightProvider
    from policies.validators import PREFLIGHT

    assert f"pulumi-python:{MovePreflight._resource_type_name}" == PREFLIGHT
    diff = MovePreflightProvider().diff("id", {"location": "ephemeral"}, {"location": "target"})
    assert diff.changes is False and not diff.replaces


def test_object_location_has_its_own_type_token_aliased_to_the_generic_one() -> None:
    """The pack finds ObjectLocation by its token; stacks made under the generic token keep the resource
    (an alias, not a replace: tests/test_pulumi_types.py runs it with the CLI)."""
    from components.object_location import GENERIC_TYPE, TYPE, ObjectLocation
    from policies.validators import OBJECT_LOCATION

    assert f"pulumi-python:{ObjectLocation._resource_type_name}" == TYPE == OBJECT_LOCATION
    class Plain(pulumi.dynamic.Resource):    # what ObjectLocation was: no module, no name
        pass

    assert f"pulumi-python:{Plain._resource_type_name}" == GENERIC_TYPE


def test_what_check_writes_is_what_the_policy_pack_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The providers' `check` output, read by the policies through the same model: an owner-chain
    finding refuses the move in both checks (no pack needed) and still reaches the pack's owner-chain
    policy on MovePreflight; the ephemeral inventory arrives intact."""
    from components import move_preflight, object_location
    from metal3_pivot import Code, Finding, LocationInputs, LocationState, PendingMove, ProviderEntry
    from policies.validators import INVENTORY_TYPE, OBJECT_LOCATION, PREFLIGHT, Res, owner_chain, target_initialised

    state = LocationState(actual="ephemeral", digest="sha256:0",
                          pending=PendingMove("ephemeral", "target", {"Cluster": 1}),
                          preflight=[Finding(Code.OWNER_CHAIN, "Secret metal3/x", "its owner is gone")],
                          providers={"ephemeral": [ProviderEntry("cluster-api", "CoreProvider", "v1.14.2")],
                                     "target": []})
    monkeypatch.setattr(object_location, "inspect", lambda _inputs, **_: state)
    news = {**LocationInputs("target", LIVE_KUBECONFIG, LIVE_KUBECONFIG, ["metal3"]).to_props(),
            **dict.fromkeys(LocationState.prop_keys())}
    result = object_location.ObjectLocationProvider().check({}, news)
    gate = move_preflight.MovePreflightProvider().check({}, news)
    for r in (result, gate):
        assert [(f.property, f.reason) for f in r.failures] == [
            ("location", "move refused by the pre-flight: Secret metal3/x: its owner is gone")]
        assert LocationState.from_props(r.inputs) == state
    assert owner_chain(Res(PREFLIGHT, "preflight", gate.inputs)) == [
        "broken owner chain: Secret metal3/x: its owner is gone"]
    res = Res(OBJECT_LOCATION, "objects", result.inputs)
    other = Res(INVENTORY_TYPE, "inv", {"metadata": {"name": "infrastructure-metal3"},
                                        "type": "InfrastructureProvider", "version": "v1.13.2"}, cluster="target")
    assert target_initialised([res, other]) == ["the ephemeral cluster runs provider cluster-api (CoreProvider "
                                                "v1.14.2) but the stack does not install it on the target"]


def test_objectlocation_check_takes_the_preflights_reading_once_and_only_while_fresh(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """MovePreflight's check reads both clusters and shares the reading; ObjectLocation's check, seconds
    later with the same inputs, takes it instead of reading again (a preview's two checks: one reading).
    Taken once; never older than REUSE_SECONDS; never for other inputs; MovePreflight always reads."""
    from components import move_preflight, object_location
    from metal3_pivot import LocationInputs, LocationState

    readings: list[str] = []

    def inspect(inputs: LocationInputs, **_: bool) -> LocationState:
        readings.append(inputs.location)
        return LocationState(actual="ephemeral", digest=f"sha256:{len(readings)}")

    clock = [1000.0]
    monkeypatch.setattr(object_location, "inspect", inspect)
    monkeypatch.setattr(object_location.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(object_location, "_READINGS", {})

    def news(location: str) -> dict[str, Any]:
        return {**LocationInputs(location, LIVE_KUBECONFIG, LIVE_KUBECONFIG, ["metal3"]).to_props(),
                **dict.fromkeys(LocationState.prop_keys())}

    def digest(result: Any) -> str:
        return str(LocationState.from_props(result.inputs).digest)

    gate, objects = move_preflight.MovePreflightProvider(), object_location.ObjectLocationProvider()
    assert digest(gate.check({}, news("ephemeral"))) == "sha256:1"
    clock[0] += object_location.REUSE_SECONDS
    assert digest(objects.check({}, news("ephemeral"))) == "sha256:1" and len(readings) == 1   # shared
    assert digest(objects.check({}, news("ephemeral"))) == "sha256:2"                         # taken once
    assert digest(gate.check({}, news("ephemeral"))) == "sha256:3"                            # always reads
    assert digest(gate.check({}, news("ephemeral"))) == "sha256:4"
    clock[0] += object_location.REUSE_SECONDS + 0.1
    assert digest(objects.check({}, news("ephemeral"))) == "sha256:5"                         # too old
    gate.check({}, news("ephemeral"))
    assert digest(objects.check({}, news("target"))) == "sha256:7"                            # other inputs
    assert readings == ["ephemeral"] * 6 + ["target"]


# ---------------------------------------------------------------------------------------------- ownership

def test_only_objects_no_pulumi_manager_wrote_count_as_created_elsewhere() -> None:
    from components.ownership import created_elsewhere

    def obj(*names: str) -> dict[str, Any]:
        return {"metadata": {"managedFields": [{"manager": n, "operation": "Apply"} for n in names]}}

    assert created_elsewhere(obj("kubectl")) and created_elsewhere(obj("clusterctl", "kube-controller-manager"))
    assert created_elsewhere(obj("pulumi-kubernetesx"))                         # a look-alike is not pulumi's
    assert not created_elsewhere(obj("pulumi-kubernetes"))                      # client-side apply
    assert not created_elsewhere(obj("kubectl", "pulumi-kubernetes-2f6b4c1a"))  # server-side apply, or adopted


def test_declared_deployments_follow_location_install_and_adopt() -> None:
    from pathlib import Path

    from components.config import parse
    from components.ownership import declared_deployments

    root = Path(__file__).resolve().parent.parent
    base = {**BASE, "providers": {"install": False}}
    on_target = declared_deployments(parse({**base, "location": "target"}), root)
    assert {(d.cluster, d.namespace, d.name, d.setting) for d in on_target} == {
        ("target", "baremetal-operator-system", "ironic", "ironic"),
        ("target", "baremetal-operator-system", "baremetal-operator-controller-manager", "ironic")}
    assert {d.cluster for d in declared_deployments(parse(base), root)} == {"ephemeral"}
    assert declared_deployments(parse({**base, "ironic": {"adopt": True}}), root) == []
    assert declared_deployments(parse({**base, "ironic": {"install": False}}), root) == []


def test_the_refusal_names_each_object_and_both_choices() -> None:
    from components.ownership import Declared, Foreign, refusal

    text = refusal([Foreign(Declared("target", "baremetal-operator-system", "bmo", "Ironic", "ironic"), ("kubectl",)),
                    Foreign(Declared("target", "capi-system", "capi", "ProviderInstall", "providers"), ())])
    assert "Deployment baremetal-operator-system/bmo on the target cluster (declared by Ironic; managed by kubectl)" \
        in text
    assert "capi-system/capi on the target cluster (declared by ProviderInstall; managed by nobody recorded)" in text
    for key in ("ironic", "providers"):
        assert f"pulumi config set --path {key}.install false" in text
        assert f"pulumi config set --path {key}.adopt true" in text


def test_only_a_move_toward_the_installed_target_lets_fixable_findings_through() -> None:
    """Missing CRDs and old providers are what the stack's own install fixes, on the target only: toward
    the ephemeral cluster (a move back) they refuse before anything is handed back, Ironic included."""
    from components.object_location import refusals
    from metal3_pivot.findings import Code, Finding
    from metal3_pivot.location import LocationInputs, LocationState

    found = [Finding(Code.MISSING_CRD, "kind Metal3Machine.infrastructure.cluster.x-k8s.io", "no CRD"),
             Finding(Code.PROVIDER_VERSION, "provider infrastructure-metal3", "older"),
             Finding(Code.OWNER_CHAIN, "Machine metal3/m0", "owner missing")]
    state = LocationState(preflight=found)

    def refused(location: str, managed: bool) -> set[Code]:
        inputs = LocationInputs(location=location, ephemeral_kubeconfig="e", target_kubeconfig="t", namespaces=[],
                                target_providers_managed=managed)
        return {f.code for f in refusals(inputs, state)}

    assert refused("target", True) == {Code.OWNER_CHAIN}
    assert refused("ephemeral", True) == {Code.MISSING_CRD, Code.PROVIDER_VERSION, Code.OWNER_CHAIN}
    assert refused("target", False) == {Code.MISSING_CRD, Code.PROVIDER_VERSION, Code.OWNER_CHAIN}


def test_bmo_runs_the_configured_image() -> None:
    from components.config import IronicConfig
    from components.ironic import ironic_objects

    def images(config: IronicConfig) -> dict[str, list[str]]:
        return {o["metadata"]["name"]: [c["image"] for c in o["spec"]["template"]["spec"]["containers"]]
                for o in ironic_objects(config) if o["kind"] == "Deployment"}
    assert images(IronicConfig()) == {"ironic": ["quay.io/metal3-io/ironic:v29.0.0"],
                                      "baremetal-operator-controller-manager": [
                                          "quay.io/metal3-io/baremetal-operator:v0.13.2"]}
    mine = IronicConfig.model_validate({"bmoImage": "registry.example/metal3-io/baremetal-operator:v0.13.2"})
    assert images(mine)["baremetal-operator-controller-manager"] == [
        "registry.example/metal3-io/baremetal-operator:v0.13.2"]


def test_a_pending_end_of_a_move_goes_through_the_state_and_an_ordinary_move_is_written_as_before() -> None:
    """`pending.finish` (what a move stopped after its last delete still owes the target) survives the
    trip through the stack's state; a move with nothing owed writes no `finish` key, so the props of every
    state and preview written before it existed stay the same (no diff appears from reading them)."""
    from metal3_pivot import LocationState, PendingMove

    owed = LocationState(actual="target", pending=PendingMove("ephemeral", "target", {}, {"unpauses": 5}))
    props = owed.to_props()
    assert props["pending"] == {"from": "ephemeral", "to": "target", "objects": {}, "finish": {"unpauses": 5}}
    assert LocationState.from_props({"pending": props["pending"]}).pending == owed.pending
    plain = LocationState(pending=PendingMove("ephemeral", "target", {"Cluster": 1})).to_props()["pending"]
    assert plain == {"from": "ephemeral", "to": "target", "objects": {"Cluster": 1}}


SAMPLES: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bmc", "namespace": "metal3"}, "type": "Opaque",
     "data": {"username": "YWRtaW4="}, "stringData": {"password": "p"}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ironic", "namespace": "metal3",
                                                           "labels": {"app": "ironic"}}, "data": {"A": "1"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bmo", "namespace": "metal3"},
     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "bmo"}}, "template": {
         "metadata": {"labels": {"app": "bmo"}}, "spec": {"containers": [{"name": "manager", "image": "bmo:v1",
                                                                          "ports": [{"containerPort": 9443}]}]}}}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"},
     "rules": [{"apiGroups": ["metal3.io"], "resources": ["baremetalhosts"], "verbs": ["get"]}]},
    {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
     "metadata": {"name": "w"}, "webhooks": [{"name": "v.metal3.io", "admissionReviewVersions": ["v1"],
                                             "sideEffects": "None", "clientConfig": {"service": {
                                                 "name": "s", "namespace": "metal3", "path": "/v"}}}]},
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": "providers.clusterctl.cluster.x-k8s.io"},
     "spec": {"group": "clusterctl.cluster.x-k8s.io", "scope": "Namespaced",
              "names": {"kind": "Provider", "plural": "providers"},
              "versions": [{"name": "v1alpha3", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                  "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}},
]


@pulumi.runtime.test
def test_built_in_objects_register_as_the_typed_classes_would(mocks: Mocks) -> Any:
    """KubeObject (components/objects.py) stands in for pulumi-kubernetes' typed classes, whose imports cost
    ~0.7 s of every CLI run: the same type token and the same properties reach the engine, so a stack made
    with the typed classes has no diff under it (measured on a real stack too: docs/performance.md)."""
    import pulumi_kubernetes as k8s

    from components.objects import BUILT_IN, KubeObject

    typed = {"Secret": k8s.core.v1.Secret, "ConfigMap": k8s.core.v1.ConfigMap, "Deployment": k8s.apps.v1.Deployment,
             "ClusterRole": k8s.rbac.v1.ClusterRole,
             "ValidatingWebhookConfiguration": k8s.admissionregistration.v1.ValidatingWebhookConfiguration,
             "CustomResourceDefinition": k8s.apiextensions.v1.CustomResourceDefinition}
    made = []
    for obj in SAMPLES:
        assert (obj["apiVersion"], obj["kind"]) in BUILT_IN
        fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        snake = {"stringData": "string_data"}
        made.append(typed[obj["kind"]](f"typed-{obj['kind']}", metadata=obj["metadata"],
                                       **{snake.get(k, k): v for k, v in fields.items()}))
        made.append(KubeObject(f"ours-{obj['kind']}", obj, pulumi.ResourceOptions()))

    def verify(_: Any) -> None:
        by_name = {r.name: r for r in mocks.resources}
        for obj in SAMPLES:
            theirs, ours = by_name[f"typed-{obj['kind']}"], by_name[f"ours-{obj['kind']}"]
            assert ours.typ == theirs.typ
            assert dict(ours.inputs) == dict(theirs.inputs), obj["kind"]
    return pulumi.Output.all(*[r.urn for r in made]).apply(verify)


def test_the_provider_notices_its_engine_is_gone_and_exits_only_between_calls() -> None:
    """The ObjectLocation provider outlives a CLI that dies alone (components/engine_watch.py):
    its move must stop and the process go, but never in the middle of a call (the lock's release runs in it)."""
    import socket
    import threading
    import time

    from components.engine_watch import EngineWatch

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    exited = threading.Event()
    watch = EngineWatch(f"127.0.0.1:{port}", period=0.05, exit=lambda _code: exited.set())
    with watch.held():
        time.sleep(0.3)
        assert watch.abandoned() is None                    # the engine answers: the move goes on
        server.close()
        deadline = time.monotonic() + 5
        while watch.abandoned() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watch.abandoned() == f"the pulumi engine that asked for this move (127.0.0.1:{port}) is gone"
        time.sleep(0.3)
        assert not exited.is_set(), "exited while a call was running"
    assert exited.wait(5), "did not exit once the call was over"


def test_objects_are_declared_with_the_servers_defaults_where_apply_compares_whole() -> None:
    """What a second field manager's create must agree with (components/objects.py, `with_server_defaults`):
    every downward-API `fieldRef` of a pod template carries `apiVersion: v1` (one that names its version
    keeps it), every webhook rule `scope: "*"` (one that names its scope keeps it), empty `labels` and
    `annotations` maps are left out; the rest of each object is as given, and the input is not changed."""
    from components.objects import with_server_defaults
    spec = {"template": {"spec": {"containers": [{"name": "manager", "env": [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "OTHER", "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "x"}}},
        {"name": "PLAIN", "value": "fieldRef"}]}]}}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "d", "labels": {}, "annotations": {"a": "b"}}, "spec": spec}
    done = with_server_defaults(deployment)
    env = done["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["valueFrom"]["fieldRef"] == {"apiVersion": "v1", "fieldPath": "metadata.name"}
    assert env[1]["valueFrom"]["fieldRef"] == {"apiVersion": "v2", "fieldPath": "x"}
    assert env[2] == {"name": "PLAIN", "value": "fieldRef"}
    assert done["metadata"] == {"name": "d", "annotations": {"a": "b"}}
    given = spec["template"]["spec"]["containers"][0]["env"][0]
    assert given["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.name"}   # the input is left as it was
    assert deployment["metadata"]["labels"] == {}

    rule = {"apiGroups": ["x.io"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["things"]}
    hooks = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
             "metadata": {"name": "h"}, "webhooks": [
                 {"name": "a.x.io", "rules": [rule, {**rule, "scope": "Namespaced"}]}, {"name": "b.x.io"}]}
    done = with_server_defaults(hooks)
    assert done["webhooks"][0]["rules"] == [{**rule, "scope": "*"}, {**rule, "scope": "Namespaced"}]
    assert done["webhooks"][1] == {"name": "b.x.io"}
    assert "scope" not in hooks["webhooks"][0]["rules"][0]
    # a fieldRef-shaped value outside a pod template is not the server's to default
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
          "data": {"fieldRef": "x"}, "spec": {"fieldRef": {"fieldPath": "y"}}}
    assert with_server_defaults(cm) == cm

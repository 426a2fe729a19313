"""Each policy's validator on good and bad inputs, messages asserted (pure: no engine)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from policies.validators import (
    CONFIGMAP,
    DEPLOYMENT,
    INVENTORY_TYPE,
    OBJECT_LOCATION,
    PREFLIGHT,
    Res,
    bmh_status_annotation,
    owner_chain,
    protect_object_location,
    provisioning_network,
    secrets_are_secret,
    single_ironic,
    target_initialised,
)

pytestmark = pytest.mark.unit

PROVIDERS = [{"name": "cluster-api", "type": "CoreProvider", "version": "v1.14.2"},
             {"name": "infrastructure-metal3", "type": "InfrastructureProvider", "version": "v1.13.2"}]


def loc(location: str = "ephemeral", preflight: list[dict[str, str]] | None = None, protect: bool = True) -> Res:
    return Res(OBJECT_LOCATION, "objects", {"location": location, "ephemeralKubeconfig": "x",
                                            "preflight": preflight or [], "providers": {"ephemeral": PROVIDERS}},
               protect=protect)


def ironic(cluster: str, name: str = "ironic-deployment") -> Res:
    return Res(DEPLOYMENT, name, {"metadata": {"name": "ironic"}}, cluster=cluster)


def inventory(name: str, type_: str, version: str, cluster: str = "target") -> Res:
    return Res(INVENTORY_TYPE, f"inv-{name}", {"metadata": {"name": name}, "type": type_, "version": version},
               cluster=cluster)


def cm(data: dict[str, Any], name: str = "ironic-bmo-configmap") -> Res:
    return Res(CONFIGMAP, f"cm-{name}", {"metadata": {"name": name}, "data": data})


GOOD_NET = {"PROVISIONING_INTERFACE": "ironicendpoint", "PROVISIONING_IP": "172.22.0.2", "PROVISIONING_CIDR": "24",
            "DHCP_RANGE": "172.22.0.10,172.22.0.100"}


def test_single_ironic() -> None:
    assert single_ironic([loc("ephemeral"), ironic("ephemeral")]) == []
    two = single_ironic([loc("ephemeral"), ironic("ephemeral"), ironic("target", "extra")])
    assert any("2 Ironic deployments are declared" in m for m in two)
    wrong = single_ironic([loc("target"), ironic("ephemeral")])
    assert wrong == ["Ironic (ironic-deployment) is declared on the ephemeral cluster but location is 'target': "
                     "Ironic must run where the hosts' objects live"]
    assert "no Ironic is declared" in single_ironic([loc("target")])[0]


def test_target_initialised() -> None:
    assert target_initialised([loc("ephemeral")]) == []
    full = [loc("target"), inventory("cluster-api", "CoreProvider", "v1.14.2"),
            inventory("infrastructure-metal3", "InfrastructureProvider", "v1.13.2")]
    assert target_initialised(full) == []
    assert "installs no providers on the target" in target_initialised([loc("target")])[0]
    old = target_initialised([loc("target"), inventory("cluster-api", "CoreProvider", "v1.13.0"),
                              inventory("infrastructure-metal3", "InfrastructureProvider", "v1.13.2")])
    assert old == ["provider cluster-api: the target gets v1.13.0, older than the ephemeral cluster's v1.14.2: "
                   "pin a version at least as new"]
    on_wrong_side = target_initialised([loc("target"), inventory("cluster-api", "CoreProvider", "v1.14.2",
                                                                 cluster="ephemeral")])
    assert "installs no providers on the target" in on_wrong_side[0]


def test_owner_chain_and_bmh_status_read_the_preflight() -> None:
    findings = [{"code": "owner-chain", "subject": "Metal3Machine metal3/m-0", "message": "its owner X is gone"},
                {"code": "bmh-status", "subject": "BareMetalHost metal3/node-1", "message": "is 'inspecting'"}]
    gate = Res(PREFLIGHT, "preflight", {"location": "target", "preflight": findings})
    assert owner_chain(gate) == ["broken owner chain: Metal3Machine metal3/m-0: its owner X is gone"]
    assert bmh_status_annotation(gate) == ["host cannot move safely: BareMetalHost metal3/node-1: is 'inspecting'"]
    clean = Res(PREFLIGHT, "preflight", {"location": "target", "preflight": []})
    assert owner_chain(clean) == [] and bmh_status_annotation(clean) == []
    # only the pre-flight resource is read: ObjectLocation's copy of the findings is not reported twice
    assert owner_chain(loc(preflight=findings)) == []


def test_provisioning_network() -> None:
    assert provisioning_network([cm(GOOD_NET)]) == []
    assert "no ironic-bmo-configmap" in provisioning_network([])[0]
    assert "not an address" in provisioning_network([cm({**GOOD_NET, "PROVISIONING_IP": "x"})])[0]
    outside = provisioning_network([cm({**GOOD_NET, "DHCP_RANGE": "172.22.1.10,172.22.1.100"})])
    assert "is not an ascending range inside 172.22.0.0/24" in outside[0]
    inside = provisioning_network([cm({**GOOD_NET, "PROVISIONING_IP": "172.22.0.50"})])
    assert "lies inside DHCP_RANGE" in inside[0]
    no_iface = provisioning_network([cm({**GOOD_NET, "PROVISIONING_INTERFACE": ""})])
    assert "PROVISIONING_INTERFACE is empty" in no_iface[0]


def test_secrets_are_secret() -> None:
    assert secrets_are_secret([cm(GOOD_NET)]) == []
    leaky = secrets_are_secret([cm({"BMC_PASSWORD": "hunter2"}, name="settings")])
    assert leaky == ["cm-settings: ConfigMap key BMC_PASSWORD looks like a credential; put it in a Secret"]
    kc = secrets_are_secret([cm({"config": "users:\n- user:\n    client-key-data: AAAA"}, name="kc")])
    assert "looks like a credential" in kc[0]
    dep = Res(DEPLOYMENT, "d", {"metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": [
        {"name": "c", "env": [{"name": "IRONIC_PASSWORD", "value": "p"},
                              {"name": "OK", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}}}})
    assert secrets_are_secret([dep]) == ["d: container c gets IRONIC_PASSWORD as a plain value; use "
                                         "valueFrom.secretKeyRef"]


def test_protect_object_location() -> None:
    assert protect_object_location([loc(protect=True)]) == []
    assert protect_object_location([loc(protect=False)]) == [
        "objects is not protected: set `protect: true` (an accidental destroy must be refused)"]


def test_a_value_unknown_at_preview_fails_closed() -> None:
    from pulumi_policy.proxy import UnknownValueError

    from policies.pack import policies

    class Unknowable:
        resource_type = OBJECT_LOCATION
        name = "objects"
        urn = "urn:objects"
        provider = None

        class opts:
            protect = True

        @property
        def props(self) -> dict:
            raise UnknownValueError("04da6b54-80e4-46f7-96ec-b56ff0331ba9", ["location"])

    class Args:
        resources: ClassVar[list[Any]] = [Unknowable()]

    seen: list[str] = []
    pack = {p.name: p for p in policies()}
    assert set(pack) == {"single-ironic", "target-initialised", "owner-chain", "bmh-status-annotation",
                         "provisioning-network", "secrets-are-secret", "protect-object-location"}
    pack["single-ironic"].validate(Args(), seen.append)  # type: ignore[misc]
    assert seen and seen[0].startswith("cannot be verified during preview")
    unknowable_gate = Unknowable()
    unknowable_gate.resource_type = PREFLIGHT
    seen.clear()
    pack["owner-chain"].validate(unknowable_gate, seen.append)  # type: ignore[misc]
    assert seen and seen[0].startswith("cannot be verified during preview")
    from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy
    assert {n for n, p in pack.items() if isinstance(p, ResourceValidationPolicy)} == {"owner-chain",
                                                                                     "bmh-status-annotation"}
    assert all(isinstance(p, StackValidationPolicy) for n, p in pack.items()
               if n not in ("owner-chain", "bmh-status-annotation"))
    assert all(p.enforcement_level.value == "mandatory" for p in pack.values())

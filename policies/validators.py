"""The pivot's safety rules as plain functions over the stack's resources (no Pulumi import).

`policies/pack.py` adapts CrossGuard's arguments to `Res` and turns the returned messages into
violations; tests call these functions directly. Each message names the object and the fix.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metal3_pivot import INVENTORY, Code, LocationInputs, LocationState, version_key

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
#: clusterctl's inventory entries as pulumi-kubernetes types them
INVENTORY_TYPE = f"kubernetes:{INVENTORY.api_version}:{INVENTORY.kind}"
#: where the objects live (components/object_location.py: `pulumi.dynamic.Resource, module="metal3",
#: name="ObjectLocation"`); a pack only sees what the program registers now, which is always this token
#: (stacks made with the generic `pulumi-python:dynamic:Resource` are aliased, not seen under the old one)
OBJECT_LOCATION = "pulumi-python:dynamic/metal3:ObjectLocation"
#: the move's pre-flight gate (components/move_preflight.py: `pulumi.dynamic.Resource, module="metal3",
#: name="MovePreflight"`), registered before anything that changes a cluster
PREFLIGHT = "pulumi-python:dynamic/metal3:MovePreflight"
IRONIC_CONFIGMAP = "ironic-bmo-configmap"
CREDENTIAL_WORDS = re.compile(r"pass(word|wd)?|secret|token|kubeconfig|client-key|private[-_]?key|credential",
                              re.I)
CREDENTIAL_VALUES = re.compile(r"client-key-data:|-----BEGIN [A-Z ]*PRIVATE KEY-----")


@dataclass
class Res:
    """What a policy needs of one resource."""

    type: str
    name: str
    props: Mapping[str, Any]
    cluster: str | None = None          # the kubernetes provider's clusterIdentifier
    protect: bool = False
    urn: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def k8s_name(self) -> str:
        return str((self.props.get("metadata") or {}).get("name") or "")


def object_location(resources: Sequence[Res]) -> Res | None:
    """The stack's ObjectLocation, by its type token."""
    return next((r for r in resources if r.type == OBJECT_LOCATION), None)


def _location(loc: Res) -> Any:
    """Where the program puts the objects (read alone: see LocationInputs.read)."""
    return LocationInputs.read(loc.props, "location")


# ---------------------------------------------------------------------------------------------- policies

def single_ironic(resources: Sequence[Res]) -> list[str]:
    """Exactly one Ironic, on the cluster where `location` puts the objects: two would fight over BMCs."""
    loc = object_location(resources)
    ironics = [r for r in resources if r.type == DEPLOYMENT and r.k8s_name == "ironic"]
    out = []
    if len(ironics) > 1:
        where = ", ".join(f"{r.name} on {r.cluster or '?'}" for r in ironics)
        out.append(f"{len(ironics)} Ironic deployments are declared ({where}); exactly one may run: remove "
                   "all but the one on the cluster `location` names")
    if loc is not None:
        location = _location(loc)
        for r in ironics:
            if r.cluster and r.cluster != location:
                out.append(f"Ironic ({r.name}) is declared on the {r.cluster} cluster but location is "
                           f"{location!r}: Ironic must run where the hosts' objects live")
        if not ironics:
            out.append(f"no Ironic is declared, but the hosts live on the {location} cluster: declare the "
                       "Ironic component there")
    return out


def target_initialised(resources: Sequence[Res]) -> list[str]:
    """location=target needs the target to run every provider the ephemeral cluster runs, at least as new."""
    loc = object_location(resources)
    if loc is None or _location(loc) != "target":
        return []
    source = LocationState.read(loc.props, "providers").get("ephemeral") or []
    declared = {(str((r.props.get("metadata") or {}).get("name")), str(r.props.get("type"))): r
                for r in resources if r.type == INVENTORY_TYPE and r.cluster == "target"}
    if not declared:
        return ["location is 'target' but this stack installs no providers on the target: enable "
                "`providers.install` (the ProviderInstall component, what clusterctl init does)"]
    out = []
    for p in source:
        have = declared.get((p.name, p.type))
        if have is None:
            out.append(f"the ephemeral cluster runs provider {p.name} ({p.type} {p.version}) but the "
                       "stack does not install it on the target")
        elif version_key(str(have.props.get("version", ""))) < version_key(p.version):
            out.append(f"provider {p.name}: the target gets {have.props.get('version')}, older than the "
                       f"ephemeral cluster's {p.version}: pin a version at least as new")
    return out


def _findings(resource: Res, code: Code) -> list[str]:
    """The pre-flight findings of one code on the MovePreflight resource, as sentences."""
    if resource.type != PREFLIGHT:
        return []
    return [str(f) for f in LocationState.read(resource.props, "preflight") if f.code == code]


# Resource policies: the engine runs them on a resource before its step, even when the resource's
# `check` failed, so they name the policy in a preview and in `up --skip-preview` before anything
# changes; stack policies run only after every step succeeded (after the changes, in an up without a
# preview). MovePreflight's `check` refuses these findings too, so a stack without the pack is as safe.

def owner_chain(resource: Res) -> list[str]:
    """Every moving object's owner chain stays inside the move (live-cluster facts, from the pre-flight)."""
    return [f"broken owner chain: {m}" for m in _findings(resource, Code.OWNER_CHAIN)]


def bmh_status_annotation(resource: Res) -> list[str]:
    """Every moving BareMetalHost has a status that can travel and is in a steady state."""
    return [f"host cannot move safely: {m}" for m in _findings(resource, Code.BMH_STATUS)]


def provisioning_network(resources: Sequence[Res]) -> list[str]:
    """The Ironic side declares a well-formed provisioning network."""
    cms = [r for r in resources if r.type == CONFIGMAP and r.k8s_name == IRONIC_CONFIGMAP]
    if not cms:
        return [f"no {IRONIC_CONFIGMAP} ConfigMap is declared: Ironic needs its provisioning settings"]
    out = []
    for r in cms:
        data = r.props.get("data") or {}
        iface = str(data.get("PROVISIONING_INTERFACE") or "")
        if not iface:
            out.append(f"{r.name}: PROVISIONING_INTERFACE is empty")
        try:
            ip = ipaddress.ip_address(str(data.get("PROVISIONING_IP")))
            cidr = int(str(data.get("PROVISIONING_CIDR")))
            net = ipaddress.ip_network(f"{ip}/{cidr}", strict=False)
        except ValueError:
            out.append(f"{r.name}: PROVISIONING_IP {data.get('PROVISIONING_IP')!r} / PROVISIONING_CIDR "
                       f"{data.get('PROVISIONING_CIDR')!r} is not an address and prefix length")
            continue
        try:
            first, last = (ipaddress.ip_address(p.strip()) for p in str(data.get("DHCP_RANGE", "")).split(","))
        except ValueError:
            out.append(f"{r.name}: DHCP_RANGE {data.get('DHCP_RANGE')!r} is not 'FIRST_IP,LAST_IP'")
            continue
        # inside `net`, all three are of one IP version: compare them as numbers
        if first not in net or last not in net or int(first) > int(last):
            out.append(f"{r.name}: DHCP_RANGE {first}-{last} is not an ascending range inside {net}")
        elif int(first) <= int(ip) <= int(last):
            out.append(f"{r.name}: PROVISIONING_IP {ip} lies inside DHCP_RANGE {first}-{last}")
    return out


def secrets_are_secret(resources: Sequence[Res]) -> list[str]:
    """Credentials only in Secrets: not in ConfigMaps, plain container env values, labels or annotations.

    CrossGuard hands validators secret values already unwrapped, so a policy cannot observe whether a
    value was marked secret; the program itself refuses a kubeconfig given as plain config, and this
    policy catches credentials that land in kinds that are never encrypted.
    """
    out = []
    for r in resources:
        md = r.props.get("metadata") or {}
        for where in ("labels", "annotations"):
            for k, v in (md.get(where) or {}).items():
                if CREDENTIAL_VALUES.search(str(v)):
                    out.append(f"{r.name}: {where} {k} holds a credential; put it in a Secret")
        if r.type == CONFIGMAP:
            for k, v in (r.props.get("data") or {}).items():
                if CREDENTIAL_WORDS.search(k) or CREDENTIAL_VALUES.search(str(v)):
                    out.append(f"{r.name}: ConfigMap key {k} looks like a credential; put it in a Secret")
        if r.type == DEPLOYMENT:
            containers = ((((r.props.get("spec") or {}).get("template") or {}).get("spec") or {})
                          .get("containers") or [])
            for c in containers:
                for env in c.get("env") or []:
                    if "value" in env and (CREDENTIAL_WORDS.search(str(env.get("name"))) or
                                           CREDENTIAL_VALUES.search(str(env.get("value")))):
                        out.append(f"{r.name}: container {c.get('name')} gets {env.get('name')} as a plain value; "
                                   "use valueFrom.secretKeyRef")
    return out


def protect_object_location(resources: Sequence[Res]) -> list[str]:
    """A `pulumi destroy` must not even try: protect the ObjectLocation."""
    loc = object_location(resources)
    if loc is not None and not loc.protect:
        return [f"{loc.name} is not protected: set `protect: true` (an accidental destroy must be refused)"]
    return []


#: rules over every resource of the stack (CrossGuard stack policies)
STACK_POLICIES = {
    "single-ironic": single_ironic,
    "target-initialised": target_initialised,
    "provisioning-network": provisioning_network,
    "secrets-are-secret": secrets_are_secret,
    "protect-object-location": protect_object_location,
}

#: rules over one resource (CrossGuard resource policies: run before that resource's step)
RESOURCE_POLICIES = {
    "owner-chain": owner_chain,
    "bmh-status-annotation": bmh_status_annotation,
}

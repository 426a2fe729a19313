"""One Kubernetes object as one Pulumi resource, whatever its kind.

Every kind is registered under its real type token (`kubernetes:apps/v1:Deployment`, ...), so previews
and policies see a real Deployment, Namespace, ... Built-in kinds go through `KubeObject`, which sends
what pulumi-kubernetes' typed class would send, without importing the typed classes: their modules cost
~0.7 s of every `pulumi` run's start (docs/performance.md, "eleventh session"). Other kinds whose only
content is `spec` become `apiextensions.CustomResource`; anything else (e.g. clusterctl's `Provider`
inventory, whose fields are top-level) goes through a one-object `yaml.v2.ConfigGroup`. One helper keeps
per-object options (delete-before-replace for Ironic, retain-on-delete for CRDs, explicit ordering) in
our hands.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes import _utilities as k8s_utilities

#: the built-in kinds the stack declares (the rest are custom resources); all of them a typed class of
#: pulumi-kubernetes would serve, under the same type token
BUILT_IN = frozenset({
    ("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
})

#: a Secret's fields that pulumi-kubernetes keeps secret in the state and in every output
SECRET_FIELDS = ("data", "stringData")


def type_token(api_version: str, kind: str) -> str:
    """pulumi-kubernetes' type token of a kind: the core group is spelled `core`."""
    return f"kubernetes:{api_version if '/' in api_version else 'core/' + api_version}:{kind}"


class KubeObject(pulumi.CustomResource):
    """A built-in Kubernetes object, registered as pulumi-kubernetes' typed class registers it: the same
    type token, the same properties (the manifest's own camelCase fields), the provider plugin's version,
    and a Secret's `data` / `stringData` secret. Only the Python classes are left out."""

    def __init__(self, name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> None:
        props: dict[str, Any] = {k: v for k, v in obj.items() if k != "status"}
        # the plugin version, from where every typed class takes it (a private module of the SDK)
        defaults = k8s_utilities.get_resource_opts_defaults()
        if (obj["apiVersion"], obj["kind"]) == ("v1", "Secret"):
            props.update({f: pulumi.Output.secret(props[f]) for f in SECRET_FIELDS if props.get(f) is not None})
            defaults = pulumi.ResourceOptions.merge(defaults, pulumi.ResourceOptions(
                additional_secret_outputs=list(SECRET_FIELDS)))
        super().__init__(type_token(obj["apiVersion"], obj["kind"]), name, props,
                         pulumi.ResourceOptions.merge(defaults, opts))


def resource_name(prefix: str, obj: dict[str, Any]) -> str:
    md = obj["metadata"]
    ns = f"{md['namespace']}-" if md.get("namespace") else ""
    return f"{prefix}-{obj['kind'].lower()}-{ns}{md['name']}"


#: set by the program from the `skipAwait` config: local clusters run no kubelet, so nothing ever becomes
#: ready and the provider's readiness waits (Deployments, Services with selectors) would time out.
#: `deployments` (the `awaitDeployments` config): Deployments are still awaited, by their Available
#: condition (which a deployment controller, or the live lab's node agent, writes) instead of the
#: provider's ReplicaSet/Pod watch, and their deletion is awaited too, so that a delete-before-replace
#: (the Ironic handover) creates the new copy only once the old one's Pods are gone.
SKIP_AWAIT = {"value": False, "deployments": False}
WAIT_FOR_AVAILABLE = "condition=Available"


def servers_awaited() -> bool:
    """Whether the stack waits for a Deployment to be ready before what depends on it: always, except with
    `skipAwait` and without `awaitDeployments` (nothing runs the Deployments: the lab without its live
    plane). Webhook configurations are declared only then (components/webhooks.py)."""
    return not SKIP_AWAIT["value"] or SKIP_AWAIT["deployments"]


def await_annotations(obj: dict[str, Any]) -> dict[str, str]:
    """The pulumi-kubernetes await annotations an object gets from the stack's await settings.

    A Namespace never gets `skipAwait`: its deletion is finished by the namespace controller
    (kube-controller-manager, which the lab runs too; no kubelet needed), and until then the name is taken
    by a terminating namespace, which the provider's create of the same name takes over as its own while
    the API server refuses anything created in it. Not waiting once made a move back started ~2 s after a
    pivot (the ephemeral cluster's Ironic namespace still terminating) fail in the handover, and leave a
    state every later `up` failed on ("namespaces not found"). A deletion takes at least 5 s: the namespace
    controller waits that long (fixed, no flag) before it starts on the content. The Ironic component no
    longer deletes its namespace in a handover (components/ironic.py); the rule stays for every other one."""
    if not SKIP_AWAIT["value"] or (obj["apiVersion"], obj["kind"]) == ("v1", "Namespace"):
        return {}
    if SKIP_AWAIT["deployments"] and (obj["apiVersion"], obj["kind"]) == ("apps/v1", "Deployment"):
        return {"pulumi.com/waitFor": WAIT_FOR_AVAILABLE}
    return {"pulumi.com/skipAwait": "true"}


def with_server_defaults(value: Any) -> Any:
    """A Deployment's pod template with the defaults the API server fills into atomic structs written out:
    each `fieldRef` (downward API) gets `apiVersion: v1`.

    Why: server-side apply compares an atomic struct whole, and pulumi-kubernetes draws a random field
    manager (`pulumi-kubernetes-<suffix>`) at each create. When an `up` dies after the API server made an
    object but before the state recorded it, the next `up` creates it again under another name, and
    `{fieldPath: metadata.name}` against the stored `{apiVersion: v1, fieldPath: ...}` was refused ("Apply
    failed with 2 conflicts" on BMO's Deployment, on that `up` and every later one: a kill sweep found it,
    docs/reliability.md). Written out, the two applies agree and share the fields. (One fixed field manager
    for the stack, `pulumi.com/patchFieldManager`, was tried and taken back: a stack made before it failed
    its first `up`: two inventory CRDs' updates under the new name were refused as invalid, spec missing.)"""
    if isinstance(value, list):
        return [with_server_defaults(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: with_server_defaults(v) for k, v in value.items()}
    ref = out.get("fieldRef")
    if isinstance(ref, dict) and "fieldPath" in ref and "apiVersion" not in ref:
        out["fieldRef"] = {"apiVersion": "v1", **ref}
    return out


def k8s_object(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.Resource:
    if (obj["apiVersion"], obj["kind"]) == ("apps/v1", "Deployment"):
        obj = {**obj, "spec": with_server_defaults(obj["spec"])}
    fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    extra = await_annotations(obj)
    if extra:
        obj = {**obj, "metadata": {**obj["metadata"], "annotations": {
            **(obj["metadata"].get("annotations") or {}), **extra}}}
    if (obj["apiVersion"], obj["kind"]) in BUILT_IN:
        return KubeObject(name, obj, opts)
    if set(fields) <= {"spec"}:
        return k8s.apiextensions.CustomResource(name, api_version=obj["apiVersion"], kind=obj["kind"],
                                                metadata=obj["metadata"], spec=fields.get("spec"), opts=opts)
    return k8s.yaml.v2.ConfigGroup(name, objs=[obj], opts=opts)


def deleted_with(anchor: pulumi.Resource) -> pulumi.ResourceTransform:
    """A transform giving every Kubernetes object under a component `deleted_with=anchor`.

    Why: `pulumi destroy` of the stack must not delete what runs the hosts (Ironic, BMO, the providers'
    controllers): with the stack's MovePreflight as anchor, a destroy deletes the anchor too and Pulumi skips
    the Kubernetes deletes (it only forgets), while a replacement (the Ironic handover) or a component
    taken out of the program still deletes for real, since the anchor stays. Set as a component's
    transform, it reaches children the component registers itself and those of a `yaml.v2.ConfigGroup`.
    """
    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        if not args.custom:
            return None
        return pulumi.ResourceTransformResult(args.props, pulumi.ResourceOptions.merge(
            args.opts, pulumi.ResourceOptions(deleted_with=anchor)))
    return transform

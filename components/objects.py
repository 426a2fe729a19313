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


#: the kinds whose pod template may carry downward-API `fieldRef`s
POD_TEMPLATE_KINDS = frozenset({("apps/v1", k) for k in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet")})
WEBHOOK_CONFIGURATION_KINDS = frozenset({("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
                                         ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration")})


def with_server_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """The object with what the API server would store in place of what it is given, wherever server-side
    apply compares a value whole (an atomic struct or list): each downward-API `fieldRef` of a pod
    template gets `apiVersion: v1`, each webhook rule `scope: "*"`. An empty `labels` or `annotations` map
    is left out too, as Pulumi's SDK already leaves it out of what it sends (the server compares an empty
    map whole as well: tests/test_second_create.py applies what this returns). The input is not changed.

    Why: pulumi-kubernetes draws a random field manager (`pulumi-kubernetes-<suffix>`) at each create. When
    an `up` dies after the API server made an object but before the state recorded it, the next `up`
    creates it again under another name, and a value that differs from the stored one where it is compared
    whole is refused ("Apply failed with N conflicts"), on that `up` and every later one. A kill sweep hit
    it in BMO's Deployment (`fieldRef`, docs/reliability.md); applying every declared object twice under two
    managers on a real API server found every webhook configuration's `rules` too (11 of them; through the
    CLI, the live lab's `up` after losing their records failed with "7 errored"). Written out, the two
    applies agree and share the fields. (One fixed field manager for the stack,
    `pulumi.com/patchFieldManager`, was tried and taken back: a stack made before it failed its first
    `up`: two inventory CRDs' updates under the new name were refused as invalid.)"""
    kind = (obj.get("apiVersion"), obj.get("kind"))
    out = dict(obj)
    md = out.get("metadata")
    if isinstance(md, dict) and any(isinstance(md.get(k), dict) and not md[k] for k in ("labels", "annotations")):
        out["metadata"] = {k: v for k, v in md.items()
                           if not (k in ("labels", "annotations") and isinstance(v, dict) and not v)}
    if kind in POD_TEMPLATE_KINDS and "spec" in out:
        out["spec"] = _field_refs(out["spec"])
    if kind in WEBHOOK_CONFIGURATION_KINDS and isinstance(out.get("webhooks"), list):
        out["webhooks"] = [{**w, "rules": [{"scope": "*", **r} for r in w["rules"]]}
                           if isinstance(w, dict) and isinstance(w.get("rules"), list) else w
                           for w in out["webhooks"]]
    return out


def _field_refs(value: Any) -> Any:
    if isinstance(value, list):
        return [_field_refs(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _field_refs(v) for k, v in value.items()}
    ref = out.get("fieldRef")
    if isinstance(ref, dict) and "fieldPath" in ref and "apiVersion" not in ref:
        out["fieldRef"] = {"apiVersion": "v1", **ref}
    return out


def k8s_object(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.Resource:
    obj = with_server_defaults(obj)
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

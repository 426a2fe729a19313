"""One Kubernetes object as one Pulumi resource, whatever its kind.

Known kinds get their typed class (so previews and policies see a real Deployment, Namespace, ...);
other kinds whose only content is `spec` become `apiextensions.CustomResource`, registered under their
real type token; anything else (e.g. clusterctl's `Provider` inventory, whose fields are top-level) goes
through a one-object `yaml.v2.ConfigGroup`. One helper keeps per-object options (delete-before-replace
for Ironic, retain-on-delete for CRDs, explicit ordering) in our hands.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

TYPED: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): k8s.apiextensions.v1.CustomResourceDefinition,
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"):
        k8s.admissionregistration.v1.ValidatingWebhookConfiguration,
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"):
        k8s.admissionregistration.v1.MutatingWebhookConfiguration,
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


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
    """The pulumi-kubernetes await annotations an object gets from the stack's await settings."""
    if not SKIP_AWAIT["value"]:
        return {}
    if SKIP_AWAIT["deployments"] and (obj["apiVersion"], obj["kind"]) == ("apps/v1", "Deployment"):
        return {"pulumi.com/waitFor": WAIT_FOR_AVAILABLE}
    return {"pulumi.com/skipAwait": "true"}


def k8s_object(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.Resource:
    fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    extra = await_annotations(obj)
    if extra:
        obj = {**obj, "metadata": {**obj["metadata"], "annotations": {
            **(obj["metadata"].get("annotations") or {}), **extra}}}
    cls = TYPED.get((obj["apiVersion"], obj["kind"]))
    if cls is not None:
        return cls(name, metadata=obj["metadata"], opts=opts, **{_snake(k): v for k, v in fields.items()})  # type: ignore[no-any-return]
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

"""Ironic (and BMO) on the cluster where the objects live, and never on both.

Two Ironics would fight over the hosts' BMCs, so the handover is a *replacement with delete before
create* of one set of resources whose names (URNs) do not depend on the location: changing `location`
changes only their provider, Pulumi replaces each, and `delete_before_replace` makes the old cluster's
copy go before the new one is created. The ObjectLocation update depends on this component, so in a
pivot Ironic leaves the ephemeral cluster before the objects move, as metal3-dev-env's move.yml does.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import manifests, webhooks
from components.config import IronicConfig
from components.objects import k8s_object, resource_name


def ironic_objects(config: IronicConfig) -> list[dict[str, Any]]:
    """The provisioning settings, the Ironic Deployment and BMO's controller (rendered from its module)."""
    ns = config.namespace
    labels = {"app.kubernetes.io/name": "ironic", "app.kubernetes.io/part-of": "metal3"}
    settings = {
        "PROVISIONING_INTERFACE": config.provisioning_interface,
        "PROVISIONING_IP": config.provisioning_ip,
        "PROVISIONING_CIDR": str(config.provisioning_cidr),
        "DHCP_RANGE": config.dhcp_range,
        "IRONIC_ENDPOINT": f"https://{config.provisioning_ip}:6385/v1/",
    }
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ironic-bmo-configmap", "namespace": ns},
         "data": settings},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "ironic", "namespace": ns, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"hostNetwork": True, "containers": [{
                 "name": "ironic", "image": config.image,
                 "envFrom": [{"configMapRef": {"name": "ironic-bmo-configmap"}}]}]}}}},
    ]
    for o in manifests.controllers(manifests.BMO):
        if o["kind"] == "Namespace":
            continue
        o = dict(o)
        o["metadata"] = dict(o["metadata"])
        if "namespace" in o["metadata"]:
            o["metadata"]["namespace"] = ns
        if o["kind"] == "Deployment":
            o = _with_image(o, "manager", config.bmo_image)    # the release's render names no tag
        objs.append(o)
    if config.adopt:
        objs = [adopted(o) for o in objs]
    return objs


def _with_image(deployment: dict[str, Any], container: str, image: str) -> dict[str, Any]:
    pod = deployment["spec"]["template"]["spec"]
    containers = [{**c, "image": image} if c["name"] == container else c for c in pod["containers"]]
    if not any(c["name"] == container for c in pod["containers"]):
        raise manifests.ManifestError(f"Deployment {deployment['metadata']['name']} has no container {container!r}: "
                                      "the pinned BMO release changed shape; update components/ironic.py")
    return {**deployment, "spec": {**deployment["spec"], "template": {
        **deployment["spec"]["template"], "spec": {**pod, "containers": containers}}}}


def adopted(obj: dict[str, Any]) -> dict[str, Any]:
    """The object with pulumi-kubernetes' `patchForce`: where another tool (metal3-dev-env's kubectl) applied
    the same object, the stack takes over the fields it declares instead of failing on the conflict."""
    md = obj["metadata"]
    return {**obj, "metadata": {**md, "annotations": {**(md.get("annotations") or {}),
                                                       "pulumi.com/patchForce": "true"}}}


class Ironic(pulumi.ComponentResource):
    """Ironic and BMO on one cluster. BMO's webhook goes with it: its serving certificate (issued once,
    kept across handovers: components/webhook_cert.py), the Secret before BMO's Deployment, the
    ValidatingWebhookConfiguration (BareMetalHosts, failurePolicy Fail) after it. In a handover the
    configuration is replaced last: its registration waits for BMO's Deployment (`depends_on`), so the old
    cluster's goes only once the new BMO is available. Between the old BMO's exit and then (~7 s in the
    sixteenth session's log) a BareMetalHost write on the old cluster is refused: in the workflow only its CAPM3
    writes them then, and retries; the move, whose writes must not be refused, starts after the
    replacement (ObjectLocation depends on this component), when the new cluster's webhook is served.

    The namespace is left behind on the old cluster, empty of the component's objects (each is deleted on
    its own), like the reference handover by hand, which deletes the Deployments: `retain_on_delete`.
    Deleting it cost every handover kube-controller-manager's fixed 5 s before it even starts on a
    namespace's content, on the path to the move, and a namespace still terminating is a trap for the next
    handover into that cluster (components/objects.py, `await_annotations`); one that stays is simply taken
    over again by the move back's create (server-side apply)."""

    def __init__(self, name: str, provider: k8s.Provider, config: IronicConfig, location: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("metal3:ironic:Ironic", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider, delete_before_replace=True)
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.namespace}}
        self.namespace = k8s_object(resource_name(name, ns), ns,
                                    pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True)))
        after = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.namespace]))
        served = webhooks.serve(name, manifests.BMO, pulumi.ResourceOptions(parent=self), namespace=config.namespace)
        secrets = [k8s_object(resource_name(name, o), adopted(o) if config.adopt else o, after)
                   for o in served.secrets]
        after = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.namespace, *secrets]))
        objs = ironic_objects(config)
        self.resources = [k8s_object(resource_name(name, o), o, after) for o in objs]
        bmo = [r for o, r in zip(objs, self.resources, strict=True)
               if o["kind"] in ("Deployment", "Service") and o["metadata"]["name"] != "ironic"]
        hooked = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=bmo))
        self.resources = [*secrets, *self.resources, *[
            k8s_object(resource_name(name, o), adopted(o) if config.adopt else o, hooked)
            for o in served.configurations]]
        self.certificates = list(served.certificates.values())
        self.register_outputs({"location": location, "namespace": config.namespace})

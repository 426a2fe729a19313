"""ProviderInstall: what `clusterctl init` (and metal3-dev-env's BMO step) puts on a cluster.

Each object is its own Pulumi resource (typed, or through `yaml.v2.ConfigGroup`), so `pulumi preview`
lists what is installed and the policy pack sees every object; the CRDs are the exception, one `CrdSet`
per install (components/crdset.py: their schemas were most of the stack's state, written at every
step), which never deletes: deleting a CRD deletes every object of its kind, and a stack teardown must
never take the fleet's objects with it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pulumi

from components import manifests, variables, webhooks
from components.clusters import ManagementCluster
from components.config import ProvidersConfig
from components.crdset import CrdSet
from components.ironic import adopted
from components.objects import k8s_object, resource_name
from metal3_pivot import INVENTORY


def objects_for(config: ProvidersConfig, root: Path) -> dict[str, list[dict[str, Any]]]:
    """Manifests per provider, from the pinned modules or a user-supplied components file; with `adopt`,
    each carries pulumi-kubernetes' patchForce (a controller another tool installed is taken over)."""
    groups = _objects_for(config, root)
    if config.adopt:
        groups = {name: [adopted(o) for o in objs] for name, objs in groups.items()}
    return groups


def _objects_for(config: ProvidersConfig, root: Path) -> dict[str, list[dict[str, Any]]]:
    # clusterctl's variables: the stack config's, then the environment's (components/variables.py)
    values = variables.lookup(config.variables, os.environ)
    if config.source is None:      # `modules`
        return {spec.name: _module_group(spec, config, values) for spec in manifests.all_specs()}
    # release components files, each as `clusterctl init` installs it, and clusterctl's inventory CRD; BMO is
    # no clusterctl provider (its CRDs come from the pinned module, as metal3-dev-env installs them)
    out = {f.label: manifests.components_file(Path(f.path) if Path(f.path).is_absolute() else root / f.path,
                                              f.name, f.type, f.version, values, where=f"providers.source[{i}]")
           for i, f in enumerate(config.source)}
    out[manifests.BMO.name] = _module_group(manifests.BMO, config, values)
    out["clusterctl"] = manifests.inventory_crds()     # what clusterctl init installs first, from itself
    return out


def served_webhooks(name: str, config: ProvidersConfig, groups: dict[str, list[dict[str, Any]]],
                    opts: pulumi.ResourceOptions) -> dict[str, webhooks.Served]:
    """Per provider: its serving certificate and the objects that go with it (components/webhooks.py), from
    the pinned module's release (controllers installed) or from its components file (installed whole).
    BMO's travel with its controller, in Ironic."""
    if config.source is None:
        if not config.controllers:
            return {}
        return {spec.name: webhooks.serve(name, spec, opts, labels={manifests.CLUSTERCTL: "",
                                                                     manifests.PROVIDER_LABEL: spec.name})
                for spec in manifests.PROVIDERS}
    out = {}
    for f in config.source:
        objs = groups[f.label]
        (namespace,) = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]   # components_file: one
        out[f.label] = webhooks.serve_release(name, objs, namespace, opts,
                                              labels={manifests.CLUSTERCTL: "", manifests.PROVIDER_LABEL: f.label})
    return out


def _module_group(spec: manifests.ProviderSpec, config: ProvidersConfig,
                  values: variables.Lookup) -> list[dict[str, Any]]:
    """One provider rendered from its pinned module: namespace, CRDs, controller, inventory. BMO's group is
    its CRDs alone: they are cluster-scoped, and its namespace and controller are the Ironic component's,
    which travels (declaring the namespace here too put one object under two components on the target)."""
    if spec is manifests.BMO:
        return manifests.crds(spec)
    objs = [o for o in manifests.controllers(spec, values) if o["kind"] == "Namespace"] if config.controllers else []
    if not objs:
        objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": spec.namespace}}]
    objs += manifests.crds(spec)
    if config.controllers:
        objs += [o for o in manifests.controllers(spec, values) if o["kind"] != "Namespace"]
    inv = manifests.inventory(spec)
    if inv:
        objs.append(inv)
    return objs


def _inventory_crd(crd: dict[str, Any]) -> bool:
    return str(crd["metadata"]["name"]).endswith(f".{INVENTORY.group}")


class ProviderInstall(pulumi.ComponentResource):
    """The Cluster-API providers (core, kubeadm bootstrap and control plane, CAPM3, IPAM) and the BMO CRDs.

    Order: certificates (no cluster involved); CRDs (with their conversion webhooks) and namespaces; the
    serving Secrets; everything else; last, per provider, its webhook configurations, once its
    Deployment (and Service) are there, so that a failurePolicy Fail webhook is never declared before
    its manager can serve (with pulumi-kubernetes awaiting the Deployment, that is once it is Available).
    """

    def __init__(self, name: str, cluster: ManagementCluster, config: ProvidersConfig, root: Path,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("metal3:providers:ProviderInstall", name, None, opts)
        base = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        groups = objects_for(config, root)
        served = served_webhooks(name, config, groups, pulumi.ResourceOptions(parent=self))
        groups = {group: webhooks.as_served(objs, served.get(group)) for group, objs in groups.items()}
        every = [o for objs in groups.values() for o in objs]
        # CRDs and namespaces first, everything else after them (custom resources need their CRD). The CRDs
        # as one CrdSet (components/crdset.py: why), never deleted, except clusterctl's own inventory CRDs:
        # the inventory objects go through a yaml.v2.ConfigGroup (components/objects.py), which must tell
        # whether a kind is namespaced before the CRD exists, and knows only CRDs its own provider declares
        first = [o for o in every if o["kind"] in ("CustomResourceDefinition", "Namespace")]
        in_set = [o for o in first if o["kind"] == "CustomResourceDefinition" and not _inventory_crd(o)]
        created: list[pulumi.Resource] = [CrdSet(
            f"{name}-crds", cluster=cluster.cluster_name, kubeconfig=cluster.kubeconfig, context=cluster.context,
            crds=in_set, opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))]
        created += [k8s_object(resource_name(name, o), o, pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(
            retain_on_delete=o["kind"] == "CustomResourceDefinition"))) for o in first
            if o["kind"] == "Namespace" or _inventory_crd(o)]
        after = pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=created))
        # with `adopt`, the serving Secrets and webhook configurations (where clusterctl + cert-manager put
        # objects of the same names) are taken over like everything else
        took = adopted if config.adopt else (lambda o: o)
        created += [k8s_object(resource_name(name, o), took(o), after) for s in served.values() for o in s.secrets]
        after = pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=list(created)))
        servers: dict[str, list[pulumi.Resource]] = {}
        for group, objs in groups.items():
            for o in objs:
                if o in first:
                    continue
                res = k8s_object(resource_name(name, o), o, after)
                created.append(res)
                if o["kind"] in ("Deployment", "Service"):
                    servers.setdefault(group, []).append(res)
        for group, s in served.items():
            hooked = pulumi.ResourceOptions.merge(base, pulumi.ResourceOptions(depends_on=servers.get(group, [])))
            created += [k8s_object(resource_name(name, o), took(o), hooked) for o in s.configurations]
        self.resources = created
        self.certificates = [c for s in served.values() for c in s.certificates.values()]
        self.register_outputs({"objects": len(created), "providers": sorted(groups)})

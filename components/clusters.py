"""The two management clusters as Pulumi components, each owning a pulumi_kubernetes Provider.

`cluster_identifier` is set so that a changed kubeconfig (a rotated certificate, a new port of a local
cluster) does not replace every resource under the provider.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s


class ManagementCluster(pulumi.ComponentResource):
    provider: k8s.Provider
    cluster_name: str
    kubeconfig: pulumi.Input[str]      # for the stack's own dynamic resources that write there (CrdSet)
    context: str | None

    def __init__(self, type_token: str, name: str, kubeconfig: pulumi.Input[str], context: str | None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(type_token, name, None, opts)
        self.cluster_name, self.kubeconfig, self.context = name, kubeconfig, context
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=pulumi.Output.secret(kubeconfig), context=context,
            cluster_identifier=name, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"name": name})


class EphemeralCluster(ManagementCluster):
    """The short-lived bootstrap cluster (kind in metal3-dev-env) where the objects start."""

    def __init__(self, name: str, kubeconfig: pulumi.Input[str], context: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("metal3:cluster:EphemeralCluster", name, kubeconfig, context, opts)


class TargetCluster(ManagementCluster):
    """The provisioned workload cluster that becomes its own management cluster after the pivot."""

    def __init__(self, name: str, kubeconfig: pulumi.Input[str], context: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("metal3:cluster:TargetCluster", name, kubeconfig, context, opts)

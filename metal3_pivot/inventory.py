"""clusterctl's provider inventory: where it lives in the API, and how its versions compare.

One place for these facts: discovery reads the inventory, the pre-flight and the policy pack compare
versions, the Pulumi layer and the lab write inventory entries.
"""

from __future__ import annotations

from metal3_pivot.kube import ResourceType

#: clusterctl's inventory entries (one per installed provider)
INVENTORY = ResourceType("clusterctl.cluster.x-k8s.io", "v1alpha3", "Provider", "providers")


def version_key(version: str) -> tuple[int, ...]:
    """A provider version as numbers to compare ("v1.12.0-beta.1" -> (1, 12, 0)); unparsable: (0,)."""
    core = version.lstrip("v").split("-", 1)[0].split("+", 1)[0]
    try:
        return tuple(int(p) for p in core.split("."))
    except ValueError:
        return (0,)

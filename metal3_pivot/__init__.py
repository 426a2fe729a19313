"""metal3-pivot's move engine: plain Python, no Pulumi import (docs/architecture.md).

The names below are the engine's public face: what the CLI, the Pulumi components, the lab and the
benchmarks use. Anything else is internal and may change; unit tests may still reach into modules.
"""

from metal3_pivot.discovery import ClusterView, discover, no_cyclic_gc, unpacked
from metal3_pivot.errors import (
    BlockMoveTimeoutError,
    InputError,
    InvalidObjectError,
    LockHeldError,
    LockLostError,
    MoveAbandonedError,
    MoveTimeoutError,
    PivotError,
    PreflightError,
    SourceChangedError,
)
from metal3_pivot.findings import Code, Finding
from metal3_pivot.graph import (
    BLOCK_MOVE_ANNOTATION,
    CLUSTERCTL_LABEL,
    MOVE_HIERARCHY_LABEL,
    MOVE_LABEL,
    ObjKey,
    kind_counts,
)
from metal3_pivot.inventory import INVENTORY, version_key
from metal3_pivot.kube import (
    CONFIGMAP,
    CRD,
    DEPLOYMENTS,
    LEASE,
    NAMESPACE,
    SECRET,
    VALIDATING_WEBHOOKS,
    Kube,
    ResourceType,
    Write,
    add_write_hook,
    group_of,
    load_kubeconfig,
    resource_type_of_crd,
)
from metal3_pivot.location import LOCATIONS, LocationInputs, LocationState, PendingMove, ProviderEntry, prop_key
from metal3_pivot.lock import LOCK_NAME, LOCK_NAMESPACE, read_lock
from metal3_pivot.mover import MoveOptions, Mover, MoveReport
from metal3_pivot.plan import (
    BMH_PAUSED,
    BMH_STATUS,
    DELETE_FOR_MOVE,
    SERVER_SET_METADATA,
    SOURCE_UID,
    SOURCE_VERSION,
    Plan,
    make_plan,
    unfinished,
)
from metal3_pivot.preflight import findings
from metal3_pivot.verify import VerifyReport, location_of, placement, verify

__all__ = [
    "BLOCK_MOVE_ANNOTATION",
    "BMH_PAUSED",
    "BMH_STATUS",
    "CLUSTERCTL_LABEL",
    "CONFIGMAP",
    "CRD",
    "DELETE_FOR_MOVE",
    "DEPLOYMENTS",
    "INVENTORY",
    "LEASE",
    "LOCATIONS",
    "LOCK_NAME",
    "LOCK_NAMESPACE",
    "MOVE_HIERARCHY_LABEL",
    "MOVE_LABEL",
    "NAMESPACE",
    "SECRET",
    "SERVER_SET_METADATA",
    "SOURCE_UID",
    "SOURCE_VERSION",
    "VALIDATING_WEBHOOKS",
    "BlockMoveTimeoutError",
    "ClusterView",
    "Code",
    "Finding",
    "InputError",
    "InvalidObjectError",
    "Kube",
    "LocationInputs",
    "LocationState",
    "LockHeldError",
    "LockLostError",
    "MoveAbandonedError",
    "MoveOptions",
    "MoveReport",
    "MoveTimeoutError",
    "Mover",
    "ObjKey",
    "PendingMove",
    "PivotError",
    "Plan",
    "PreflightError",
    "ProviderEntry",
    "ResourceType",
    "SourceChangedError",
    "VerifyReport",
    "Write",
    "add_write_hook",
    "discover",
    "findings",
    "group_of",
    "kind_counts",
    "load_kubeconfig",
    "location_of",
    "make_plan",
    "no_cyclic_gc",
    "placement",
    "prop_key",
    "read_lock",
    "resource_type_of_crd",
    "unfinished",
    "unpacked",
    "verify",
    "version_key",
]

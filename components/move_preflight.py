"""MovePreflight: the move's pre-flight as a read-only resource in front of every change of the stack.

Why it exists: the Python SDK sends a resource's registration only once its dependencies are done, and
ObjectLocation depends on Ironic (Ironic must leave the source before the objects move). So
ObjectLocation's `check` ran only after the Ironic handover: a move its pre-flight refused still handed
Ironic over, in `pulumi up --skip-preview` and in any `up` without a separate preview. This resource takes
the same inputs and runs the same `check` (components/object_location.check_location: the engine's
`inspect` + `findings`, the same refusals), and the installs and Ironic depend on it. When the pre-flight
refuses, its `check` fails, the program's later registrations never happen, and nothing is written to
either cluster. Its findings are also where the policy pack's `owner-chain` and `bmh-status-annotation`
resource policies look: the engine runs resource policies on a resource whose `check` failed (measured:
tests/test_policies_preview.py), so a preview with the pack still names them.

Its `check` takes the reading of both clusters that the program started as soon as it knew the
clusters (`start_reading`, components/gate_reading.py): the `reading` input names it. That reading ran
while the program declared the rest of the stack and the engine started its plugins, instead of after.

It owns nothing: `diff` never reports a change, `create` records only where the objects were declared,
`delete` forgets. It is also the anchor of `deleted_with` for the installs and Ironic (docs/pulumi-layer.md,
"Destroy"): deleting the whole stack deletes it, and Pulumi then skips the Kubernetes deletes.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider

from components import gate_reading
from components.object_location import READING, check_location, declared_props
from metal3_pivot import LocationInputs

#: the type token: `pulumi-python:dynamic/metal3:MovePreflight` (policies find it by this)
MODULE, NAME = "metal3", "MovePreflight"


class MovePreflightProvider(ResourceProvider):
    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return check_location(news, share=True, olds=olds)

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        """Never a change: the check is the whole point, and it runs on every preview and up."""
        return DiffResult(changes=False, replaces=[], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_="move-preflight", outs={"location": props.get("location")})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, {"location": props.get("location")})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete: the resource only checks."""


def start_reading(*, location: str, ephemeral_kubeconfig: str, target_kubeconfig: str, namespaces: list[str],
                  ephemeral_context: str | None = None, target_context: str | None = None, **_: Any) -> str:
    """Start the gate's reading of both clusters now (the program's side of components/gate_reading.py);
    the token goes to MovePreflight as `reading`. Takes ObjectLocation's keyword arguments."""
    return gate_reading.start(LocationInputs(
        location=location, ephemeral_kubeconfig=ephemeral_kubeconfig, target_kubeconfig=target_kubeconfig,
        namespaces=namespaces, ephemeral_context=ephemeral_context or "", target_context=target_context or ""))


class MovePreflight(pulumi.dynamic.Resource, module=MODULE, name=NAME):
    """Passes only when the declared move is allowed now; everything that changes a cluster depends on it."""

    def __init__(self, name: str, *, opts: pulumi.ResourceOptions | None = None, reading: str = "",
                 **declared: Any) -> None:
        """`declared`: the same keyword arguments as ObjectLocation (`declared_props`); `reading`: the token
        `start_reading` gave (none: the check reads both clusters itself)."""
        super().__init__(MovePreflightProvider(), name, {**declared_props(**declared), READING: reading}, opts)

"""Ironic's REST API over plain HTTP (urllib): what the lab and the live tests read and drive.

No client library: the project's virtualenv stays free of openstacksdk, and every call here is the
exact request a newcomer can repeat with curl (docs/live-plane.md). The microversion is pinned so the
answers keep their shape: 1.78 added the node history endpoint this module reads.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

MICROVERSION = "1.95"
NODE_FIELDS = ("uuid", "name", "provision_state", "target_provision_state", "power_state", "target_power_state",
               "maintenance", "last_error", "driver", "boot_interface", "deploy_interface")
FAILED_STATES = frozenset({"deploy failed", "clean failed", "inspect failed", "adopt failed", "error",
                           "rescue failed", "unrescue failed", "service failed"})


class IronicApiError(Exception):
    """Ironic answered an error; carries the HTTP status and Ironic's own message."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"Ironic {method} {path}: HTTP {status}: {message}")
        self.status = status
        self.message = message


class NodeStateError(Exception):
    """A node reached a failed state, or did not reach the expected one in time; says which and why."""


@dataclass(frozen=True)
class HistoryEvent:
    """One entry of a node's history (GET /v1/nodes/{id}/history): Ironic's own record of what happened."""

    created_at: str
    severity: str
    event_type: str
    event: str
    conductor: str


class IronicClient:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/").removesuffix("/v1")
        self.timeout = timeout

    # -- plain requests -------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "X-OpenStack-Ironic-API-Version": MICROVERSION, "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as err:
            raise IronicApiError(method, path, err.code, _error_message(err.read())) from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    # -- nodes ----------------------------------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        """Every node with the fields that say where it stands (provision and power state, last error)."""
        return list(self.get(f"/v1/nodes?fields={','.join(NODE_FIELDS)}")["nodes"])

    def node(self, ident: str) -> dict[str, Any]:
        return dict(self.get(f"/v1/nodes/{ident}"))

    def create_node(self, **fields: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/nodes", fields))

    def patch_node(self, ident: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/v1/nodes/{ident}", ops))

    def delete_node(self, ident: str) -> None:
        self.request("DELETE", f"/v1/nodes/{ident}")

    def history(self, ident: str) -> list[HistoryEvent]:
        entries = self.get(f"/v1/nodes/{ident}/history?detail=true")["history"]
        return [HistoryEvent(e["created_at"], e["severity"], e["event_type"], e["event"], e["conductor"])
                for e in entries]

    def set_provision_state(self, ident: str, target: str, **extra: Any) -> None:
        """PUT /v1/nodes/{id}/states/provision: `manage`, `provide`, `active`, `deleted`, `adopt`, ..."""
        self.request("PUT", f"/v1/nodes/{ident}/states/provision", {"target": target, **extra})

    def set_power_state(self, ident: str, target: str) -> None:
        self.request("PUT", f"/v1/nodes/{ident}/states/power", {"target": target})

    def wait_provision_state(self, ident: str, state: str, *, timeout: float = 120.0) -> dict[str, Any]:
        """Poll until the node is in `state` with no transition pending; a failed state raises at once."""
        deadline = time.monotonic() + timeout
        node: dict[str, Any] = {}
        while time.monotonic() < deadline:
            node = self.node(ident)
            if node["provision_state"] == state and not node.get("target_provision_state"):
                return node
            if node["provision_state"] in FAILED_STATES and node["provision_state"] != state:
                raise NodeStateError(f"node {ident} went to {node['provision_state']!r} instead of {state!r}: "
                                     f"{node.get('last_error')}")
            time.sleep(0.5)
        raise NodeStateError(f"node {ident} is {node.get('provision_state')!r} (target "
                             f"{node.get('target_provision_state')!r}), not {state!r}, after {timeout:.0f} s; "
                             f"last error: {node.get('last_error')}")


def _error_message(raw: bytes) -> str:
    """Ironic nests its message: {"error_message": "{\\"faultstring\\": \\"...\\"}"}."""
    try:
        outer = json.loads(raw)
        inner = outer.get("error_message", outer)
        if isinstance(inner, str):
            inner = json.loads(inner)
        return str(inner.get("faultstring", inner))
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:500]

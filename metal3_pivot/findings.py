"""One findings contract: what is wrong, about which object, and what to do.

The pre-flight (reasons to refuse a move), verify (broken invariants after one), the ObjectLocation
resource's `preflight` output and the policy pack all speak it. Codes are an enum, not strings
repeated in each place, so a renamed or misspelt code fails at import time instead of silently
matching nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Code(StrEnum):
    """Every problem code the engine reports. Values are stable: they appear in outputs and policies."""

    # pre-flight: the move is refused before any write
    MISSING_NAMESPACE = "missing-namespace"
    MISSING_CRD = "missing-crd"
    STORAGE_VERSION = "storage-version"
    PROVIDER_VERSION = "provider-version"
    NOT_PROVISIONED = "not-provisioned"
    ALREADY_PAUSED = "already-paused"
    OWNER_CHAIN = "owner-chain"
    BMH_STATUS = "bmh-status"
    CONFLICT = "conflict"
    FOREIGN_MOVE = "foreign-move"
    TOO_LARGE = "too-large"
    TOO_DEEP = "too-deep"
    # another mover holds the move lock (ObjectLocation's preview)
    MOVE_IN_PROGRESS = "move-in-progress"
    # verify: an invariant of a finished move does not hold
    DUPLICATE = "duplicate"
    LOCATION = "location"
    PAUSED = "paused"
    SECRET = "secret"
    IRONIC = "ironic"


@dataclass(frozen=True)
class Finding:
    """One problem: its code, the object (or namespace, kind, provider) concerned, and the sentence that
    says what is wrong and what to do."""

    code: Code
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"

    def tagged(self) -> str:
        """With its code, as `verify` prints it."""
        return f"[{self.code}] {self}"

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "subject": self.subject, "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Read back what `to_dict` wrote (a resource output); an unknown code is an error, not a skip."""
        return cls(Code(str(data["code"])), str(data.get("subject", "")), str(data.get("message", "")))

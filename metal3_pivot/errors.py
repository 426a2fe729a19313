"""The engine's exceptions: one type per thing a user must act on differently.

Every message names the object, file or cluster concerned and, where there is one, the fix. Nothing
here ever carries a kubeconfig's or a Secret's content.
"""

from __future__ import annotations

from typing import Any


class PivotError(Exception):
    """Base of every error the engine raises on purpose. CLI exit code: `exit_code`."""

    exit_code = 1


class InputError(PivotError):
    """Bad input found before anything was touched."""

    exit_code = 2


class KubeconfigError(InputError):
    """A kubeconfig that cannot be read or parsed, or whose credentials are unusable."""


class UnknownContextError(InputError):
    """The requested kubeconfig context does not exist."""


class UnreachableClusterError(PivotError):
    """The cluster's API server did not answer (connection refused, timeout, TLS failure)."""

    exit_code = 3


class ApiError(PivotError):
    """The API server answered with an error; carries its Status."""

    exit_code = 4

    def __init__(self, message: str, *, status: int = 0, reason: str = "", details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.details = details or {}

    @classmethod
    def from_response(cls, cluster: str, method: str, path: str, code: int, body: dict[str, Any] | None) -> ApiError:
        body = body or {}
        reason = str(body.get("reason") or "")
        message = str(body.get("message") or f"HTTP {code}")
        kind = {404: NotFoundError, 409: ConflictError, 422: InvalidObjectError}.get(code, ApiError)
        return kind(f"{cluster}: {method} {path}: {message}", status=code, reason=reason,
                    details=body.get("details") or {})


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    """409: AlreadyExists or a resourceVersion conflict (see `reason`)."""


class InvalidObjectError(ApiError):
    """422: the object was rejected by the schema or admission."""


class MoveTimeoutError(PivotError):
    """The move ran past its deadline; state is consistent and a re-run finishes it."""

    exit_code = 5


class LockHeldError(PivotError):
    """Another mover holds the move lock: nothing was changed; wait for it, then run again."""

    exit_code = 7


class LockLostError(PivotError):
    """This move stalled past its lock's expiry and another mover took over: stopped before the next write."""

    exit_code = 7


class Problem:
    """One pre-flight finding: which object, what is wrong, what to do."""

    __slots__ = ("code", "message", "subject")

    def __init__(self, code: str, subject: str, message: str) -> None:
        self.code = code
        self.subject = subject
        self.message = message

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({self.code!r}, {self.subject!r})"


class PreflightError(InputError):
    """The move was refused before any write. `problems` lists every finding, not just the first."""

    code = ""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class MissingNamespaceError(PreflightError):
    code = "missing-namespace"


class MissingCrdError(PreflightError):
    code = "missing-crd"


class ProviderVersionError(PreflightError):
    code = "provider-version"


class BlockedMoveError(PreflightError):
    code = "block-move"


class NotProvisionedError(PreflightError):
    code = "not-provisioned"


class AlreadyPausedError(PreflightError):
    code = "already-paused"


class BrokenOwnerChainError(PreflightError):
    code = "owner-chain"


class HostStatusError(PreflightError):
    code = "bmh-status"


class TargetConflictError(PreflightError):
    code = "conflict"


class ForeignMoveError(PreflightError):
    """Another tool (clusterctl move) is evidently moving these objects: its marks are on them."""

    code = "foreign-move"


class ObjectTooLargeError(PreflightError):
    """An object whose copy would exceed a size limit of the API server (annotations 256 KiB, etcd's
    request limit): the target would reject it halfway through the move."""

    code = "too-large"


class NestingTooDeepError(PreflightError):
    """An object nested deeper than this tool's JSON parser follows: refused before any write."""

    code = "too-deep"


PREFLIGHT_ERRORS: dict[str, type[PreflightError]] = {
    cls.code: cls for cls in (MissingNamespaceError, MissingCrdError, ProviderVersionError, BlockedMoveError,
                              NotProvisionedError, AlreadyPausedError, BrokenOwnerChainError, HostStatusError,
                              TargetConflictError, ForeignMoveError, ObjectTooLargeError, NestingTooDeepError)}

"""The engine's exceptions: one type per thing a user must act on differently.

Every message names the object, file or cluster concerned and, where there is one, the fix. Nothing
here ever carries a kubeconfig's or a Secret's content.
"""

from __future__ import annotations

from typing import Any

from metal3_pivot.findings import Code, Finding


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


class BlockMoveTimeoutError(MoveTimeoutError):
    """Objects still carried clusterctl's block-move annotation when the wait ran out. Raised after the
    source was paused, so not "nothing changed": the state is consistent and a re-run resumes the wait."""


class LockHeldError(PivotError):
    """Another mover holds the move lock: nothing was changed; wait for it, then run again."""

    exit_code = 7


class LockLostError(PivotError):
    """This move stalled past its lock's expiry and another mover took over: stopped before the next write.
    Unlike LockHeldError, this run may have written: the other mover (or a re-run) finishes the move."""

    exit_code = 8


class MoveAbandonedError(PivotError):
    """Whoever asked for this move is gone (the `pulumi` CLI that started the provider died: killed, or
    Pulumi's own crash): stopped before the next write and the lock released, rather than writing on
    with nobody to report to while the operator's next run is refused by our lock. Like LockLostError,
    this run may have written; the next run finishes the move."""

    exit_code = 8


class SourceChangedError(PivotError):
    """Objects of the move changed in the source after the move read them (a controller still running, a
    person): their copies would miss the change, which the source's delete would then lose. Found by the
    resourceVersion preconditions of the source's deletes (Mover._delete_one), before the changed object is
    deleted. The mover reads both clusters again and copies what changed (Mover.run); it raises this to
    its caller only when the source is still changing after that: nothing is lost (the changed objects are
    still in the source, and a re-run copies them again), but the source may be paused."""

    exit_code = 9


class PreflightError(InputError):
    """The move was refused before any write. `problems` lists every finding, not just the first."""

    code: Code | None = None

    def __init__(self, message: str, problems: list[Finding] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class MissingNamespaceError(PreflightError):
    code = Code.MISSING_NAMESPACE


class MissingCrdError(PreflightError):
    code = Code.MISSING_CRD


class StorageVersionError(PreflightError):
    """The target stores a moving kind at an older API version than the source, or no longer serves the
    version the source stores it at (objects are created at that version): fix the target's provider."""

    code = Code.STORAGE_VERSION


class ProviderVersionError(PreflightError):
    code = Code.PROVIDER_VERSION


class NotProvisionedError(PreflightError):
    code = Code.NOT_PROVISIONED


class AlreadyPausedError(PreflightError):
    code = Code.ALREADY_PAUSED


class BrokenOwnerChainError(PreflightError):
    code = Code.OWNER_CHAIN


class HostStatusError(PreflightError):
    code = Code.BMH_STATUS


class TargetConflictError(PreflightError):
    code = Code.CONFLICT


class ForeignMoveError(PreflightError):
    """Another tool (clusterctl move) is evidently moving these objects: its marks are on them."""

    code = Code.FOREIGN_MOVE


class ObjectTooLargeError(PreflightError):
    """An object whose copy would exceed a size limit of the API server (annotations 256 KiB, etcd's
    request limit): the target would reject it halfway through the move."""

    code = Code.TOO_LARGE


class NestingTooDeepError(PreflightError):
    """An object nested deeper than this tool's JSON parser follows: refused before any write."""

    code = Code.TOO_DEEP


PREFLIGHT_ERRORS: dict[Code, type[PreflightError]] = {
    cls.code: cls for cls in (MissingNamespaceError, MissingCrdError, StorageVersionError, ProviderVersionError,
                              NotProvisionedError, AlreadyPausedError, BrokenOwnerChainError, HostStatusError,
                              TargetConflictError, ForeignMoveError, ObjectTooLargeError, NestingTooDeepError)
    if cls.code is not None}

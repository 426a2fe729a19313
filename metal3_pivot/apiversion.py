"""Kubernetes' order of API versions: v1alpha1 < v1alpha2 < v1beta1 < v1beta2 < v1 < v2.

clusterctl orders a CRD's versions this way (apimachinery's kube-aware comparison, used by its contract
helpers) and the API server lists a group's versions in it. The pre-flight uses it to tell a target that
stores a kind at an older version than the source (an older provider: refused) from one that stores it
at a newer one (an upgraded provider that still serves the source's version: the move may go ahead).

Stability ranks first (every GA version is newer than every beta, every beta newer than every alpha),
then the major number, then the pre-release number. A name that is not of the form v<N>[alpha|beta<M>]
(CRD versions may be any DNS label) is older than every kube-like one; two such names are not ordered
in any meaningful way, so `at_least` treats them as comparable only when they are equal.
"""

from __future__ import annotations

import re

__all__ = ["at_least", "compare", "is_kube_like"]

_KUBE_LIKE = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?")
_STABILITY = {"alpha": 0, "beta": 1, None: 2}


def _parts(version: str) -> tuple[int, int, int] | None:
    """(stability, major, pre-release number) of a kube-like version, else None."""
    m = _KUBE_LIKE.fullmatch(version)
    if m is None:
        return None
    return _STABILITY[m.group(2)], int(m.group(1)), int(m.group(3) or 0)


def is_kube_like(version: str) -> bool:
    return _parts(version) is not None


def compare(a: str, b: str) -> int:
    """Negative if `a` is older than `b`, 0 if equal, positive if newer: apimachinery's order (names that are
    not kube-like sort below kube-like ones, and among themselves in reverse lexical order, as there)."""
    if a == b:
        return 0
    pa, pb = _parts(a), _parts(b)
    if pa is None and pb is None:
        return (a < b) - (a > b)
    if pa is None:
        return -1
    if pb is None:
        return 1
    return (pa > pb) - (pa < pb)


def at_least(have: str, want: str) -> bool:
    """`have` is the same version as `want` or a newer one; two different names that are not both
    kube-like are never "at least" each other (their order says nothing about their schemas)."""
    if have == want:
        return True
    return is_kube_like(have) and is_kube_like(want) and compare(have, want) > 0

"""Storage versions compared before a move (issue 15, rule 7): Kubernetes' order of API versions, and the
pre-flight rule over hand-made cluster views (pure: no cluster). The same rule on real API servers, next
to the real clusterctl, is in tests/test_parity_rules.py."""

from __future__ import annotations

from functools import cmp_to_key

import pytest

from metal3_pivot.apiversion import at_least, compare, is_kube_like
from metal3_pivot.discovery import ClusterView
from metal3_pivot.errors import MissingCrdError, PreflightError, StorageVersionError
from metal3_pivot.findings import Code
from metal3_pivot.graph import Graph, Node, ObjKey, TypeInfo
from metal3_pivot.kube import ResourceType
from metal3_pivot.plan import Plan
from metal3_pivot.preflight import check, target_serves_kinds

pytestmark = pytest.mark.unit

GK = ("cluster.x-k8s.io", "Cluster")


@pytest.mark.parametrize(("older", "newer"), [
    ("v1alpha1", "v1alpha2"),
    ("v1alpha3", "v1beta1"),      # every beta is newer than every alpha
    ("v2alpha1", "v1beta1"),      # ... whatever the major number
    ("v1beta1", "v1beta2"),
    ("v1beta2", "v1"),            # GA is newer than every pre-release
    ("v2beta1", "v1"),
    ("v1", "v2"),
    ("v1beta9", "v1beta10"),      # numbers, not text
    ("v1alpha1", "v11alpha1"),
    ("foo", "v1alpha1"),          # a name that is not kube-like is older than every kube-like one
    ("foo10", "foo1"),            # and among themselves in reverse lexical order (apimachinery's)
])
def test_kubernetes_order_of_api_versions(older: str, newer: str) -> None:
    assert compare(older, newer) < 0 and compare(newer, older) > 0
    assert at_least(newer, older) == (is_kube_like(newer) and is_kube_like(older))
    assert not at_least(older, newer)


def test_the_order_is_apimachinerys() -> None:
    """apimachinery's own example of its order, highest first."""
    order = ["v10", "v2", "v1", "v11beta2", "v10beta3", "v3beta1", "v12alpha1", "v11alpha2", "foo1", "foo10"]
    shuffled = sorted(order)
    assert sorted(shuffled, key=cmp_to_key(compare), reverse=True) == order


@pytest.mark.parametrize("version", ["v1", "v1beta2", "v1alpha1", "foo"])
def test_a_version_is_at_least_itself(version: str) -> None:
    assert compare(version, version) == 0 and at_least(version, version)


def test_names_that_are_not_kube_like_are_never_at_least_a_different_one() -> None:
    assert not at_least("v1", "foo") and not at_least("foo1", "foo10") and not at_least("v1beta1x", "v1beta1")


# ---------------------------------------------------------------------------------------------- the rule

def _view(name: str, storage: str | None, served: tuple[str, ...] = (), objects: int = 0) -> ClusterView:
    rt = ResourceType(*GK[:1], storage or "v1", GK[1], "clusters")
    nodes = {}
    for i in range(objects):
        obj = {"apiVersion": rt.api_version, "kind": GK[1],
               "metadata": {"name": f"c{i}", "namespace": "metal3", "uid": f"uid-{i}"}}
        nodes[ObjKey.of(obj)] = Node(ObjKey.of(obj), TypeInfo(rt, True, True), obj)
    crds = {GK: rt} if storage else {}
    versions = {GK: frozenset(served or (storage,))} if storage else {}
    return ClusterView(name, {GK: TypeInfo(rt, True, True)} if storage else {}, crds, [], {"metal3"},
                       Graph(nodes), versions)


def _plan(source: ClusterView, target: ClusterView) -> Plan:
    moving = source.graph.nodes
    return Plan(source, target, dict(moving), sorted(moving), [], [], [])


@pytest.mark.parametrize(("src", "dst", "served", "code"), [
    ("v1beta2", "v1beta2", (), None),                                   # the same version: as before
    ("v1beta1", "v1beta2", ("v1beta1", "v1beta2"), None),               # target newer, still serves v1beta1
    ("v1beta1", "v1", ("v1beta1", "v1beta2", "v1"), None),
    ("v1beta2", "v1beta1", ("v1beta1", "v1beta2"), Code.STORAGE_VERSION),  # target older, serves both
    ("v1", "v1beta2", ("v1beta2",), Code.STORAGE_VERSION),
    ("v1alpha4", "v1beta2", ("v1beta1", "v1beta2"), Code.STORAGE_VERSION),  # newer, dropped v1alpha4
    ("foo", "bar", ("foo", "bar"), Code.STORAGE_VERSION),                # no order: must be equal
    ("v1beta2", None, (), Code.MISSING_CRD),
])
def test_target_must_store_at_least_the_sources_version_and_serve_it(
        src: str, dst: str | None, served: tuple[str, ...], code: Code | None) -> None:
    plan = _plan(_view("ephemeral", src, objects=2), _view("target", dst, served))
    found = list(target_serves_kinds(plan, ()))
    assert [f.code for f in found] == ([code] if code else [])          # one finding per kind, not per object
    if code is Code.STORAGE_VERSION:
        assert found[0].subject == "kind Cluster.cluster.x-k8s.io"
        assert src in found[0].message and str(dst) in found[0].message and "upgrade" in found[0].message


def test_nothing_left_to_create_needs_no_crd() -> None:
    """A finished move (or one whose objects are all in the target already) checks no version."""
    plan = _plan(_view("ephemeral", "v1beta2"), _view("target", "v1beta1"))
    assert list(target_serves_kinds(plan, ())) == []


def test_the_refusal_is_its_own_error_type_and_message() -> None:
    plan = _plan(_view("ephemeral", "v1beta2", objects=1), _view("target", "v1beta1", ("v1beta1", "v1beta2")))
    with pytest.raises(StorageVersionError) as err:
        check(plan, (), (target_serves_kinds,))
    assert isinstance(err.value, PreflightError) and not isinstance(err.value, MissingCrdError)
    assert err.value.exit_code == 2
    assert "nothing was changed" in str(err.value)
    assert "target stores it at v1beta1, older than v1beta2 in ephemeral" in str(err.value)
    assert [p.code for p in err.value.problems] == [Code.STORAGE_VERSION]

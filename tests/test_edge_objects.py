"""Edge-case objects on real clusters: huge, deeply nested, names at the length limit, unicode.

An input the source accepted and the target will accept too simply moves, and the test proves the copy
equals the original (Secret data byte for byte); an input that would fail halfway through a move is
refused by the pre-flight (a specific PreflightError, exit 2) before the first write, with zero writes
(tests/kit/refusals.py). Refusals of bad kubeconfigs and of the pre-flight: tests/test_bad_input.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.cluster import LocalCluster
from metal3_pivot import BMH_STATUS, MoveOptions, Mover
from metal3_pivot.discovery import discover
from metal3_pivot.errors import ApiError, NestingTooDeepError, ObjectTooLargeError, PreflightError
from metal3_pivot.graph import ObjKey
from metal3_pivot.kube import CONFIGMAP, NAMESPACE, SECRET, group_of
from metal3_pivot.verify import verify
from tests.kit.move import (
    TOPOLOGY,
    Obj,
    bundle_types,
    canonical,
    diff_paths,
    engine_cli,
    kube,
    snapshot,
)
from tests.kit.refusals import move_args, refused, start_lab

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, LocalCluster]]:
    clusters = start_lab("edge-objects")
    yield clusters
    for c in clusters.values():
        c.stop()


# ---------------------------------------------------------------------------------------------- edge cases
# Huge, deeply nested, names at the length limit, unicode. Found out on these real clusters: an input the
# source accepted and the target will accept too simply moves, and the test proves the copy equals the
# original (Secret data byte for byte); an input that would fail halfway through a move is refused by the
# pre-flight (a specific PreflightError, exit 2) before the first write. Each row uses its own namespace,
# emptied from both clusters afterwards, so the seeded namespace the other rows use is untouched.

BMH_KIND = ("metal3.io", "BareMetalHost")


def _rt(group: str, kind: str) -> Any:
    if (group, kind) == ("", "Secret"):
        return SECRET
    if (group, kind) == ("", "ConfigMap"):
        return CONFIGMAP
    return next(r for r in bundle_types().values() if (r.group, r.kind) == (group, kind))


@contextlib.contextmanager
def edge_namespace(lab: dict[str, LocalCluster], ns: str) -> Iterator[str]:
    """A namespace of the ephemeral cluster for one row; afterwards every candidate object in it is deleted
    from both clusters (and waited for: a later row's zero-write check must not see them go)."""
    async def make() -> None:
        async with kube(lab["ephemeral"]) as k:
            await k.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    asyncio.run(make())
    try:
        yield ns
    finally:
        async def empty(c: LocalCluster) -> None:
            async with kube(c) as k:
                for _ in range(100):
                    view = await discover(k, [ns])
                    if not view.graph.nodes:
                        break
                    for key, node in view.graph.nodes.items():
                        md = node.obj["metadata"]
                        if md.get("finalizers"):
                            await k.patch(node.type.rt, key.name, ns, {"metadata": {"finalizers": None}},
                                          ok_missing=True)
                        await k.delete(node.type.rt, key.name, ns)
                    await asyncio.sleep(0.1)
                await k.delete(NAMESPACE, ns)
        with deep_parsing():
            for c in (lab["ephemeral"], lab["target"]):
                asyncio.run(empty(c))


@contextlib.contextmanager
def deep_parsing(limit: int = 30000) -> Iterator[None]:
    """This test process reads and writes objects nested deeper than Python's default recursion limit
    allows (the engine, in its own process, must refuse them cleanly)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def create(cluster: LocalCluster, *objs: Obj) -> list[Obj]:
    """Create objects in order; an ownerReference may name an earlier object's uid as `"uid": "@<index>"`."""
    async def go() -> list[Obj]:
        made: list[Obj] = []
        async with kube(cluster) as k:
            for obj in objs:
                obj = copy.deepcopy(obj)
                for ref in obj["metadata"].get("ownerReferences") or []:
                    if str(ref["uid"]).startswith("@"):
                        ref["uid"] = made[int(ref["uid"][1:])]["metadata"]["uid"]
                made.append(await k.create(_rt(group_of(obj["apiVersion"]), obj["kind"]), obj))
        return made
    with deep_parsing():
        return asyncio.run(go())


def seeded_status(lab: dict[str, LocalCluster]) -> str:
    """A BareMetalHost status annotation as BMO / CAPM3 leave it (a seeded host's)."""
    host = next(o for k, o in snapshot(lab["ephemeral"]).items() if k.kind == "BareMetalHost")
    return str(host["metadata"]["annotations"][BMH_STATUS])


def host(lab: dict[str, LocalCluster], ns: str, name: str, *, annotations: dict[str, str] | None = None,
         spec: Obj | None = None) -> Obj:
    return {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
            "metadata": {"name": name, "namespace": ns,
                         "annotations": {BMH_STATUS: seeded_status(lab), **(annotations or {})}},
            "spec": {"online": False, **(spec or {})}}


def owned_by_host(kind: str, ns: str, name: str, host_name: str, **fields: Any) -> Obj:
    return {"apiVersion": "v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns, "ownerReferences": [
                {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost", "name": host_name, "uid": "@0"}]},
            **fields}


def moves_intact(lab: dict[str, LocalCluster], ns: str, *, src_args: tuple[str, ...] = (),
                 dst_args: tuple[str, ...] = ()) -> dict[ObjKey, Obj]:
    """Move namespace `ns` with the engine CLI; the copies must equal the originals, nothing left behind."""
    with deep_parsing():
        original = snapshot(lab["ephemeral"], (ns,))
    assert original, f"nothing to move in {ns}"
    result = engine_cli("move", "--kubeconfig", *(src_args or (str(lab["ephemeral"].kubeconfig),)),
                        "--to-kubeconfig", *(dst_args or (str(lab["target"].kubeconfig),)), "--namespace", ns)
    assert result.returncode == 0, result.stderr[-3000:]

    async def verified() -> bool:
        async with kube(lab["ephemeral"], "ephemeral") as a, kube(lab["target"], "target") as b:
            report = await verify(a, b, (ns,), expect="target")
        assert report.ok, [str(v) for v in report.violations]
        return report.ok
    with deep_parsing():
        assert asyncio.run(verified())
        moved = snapshot(lab["target"], (ns,))
    assert set(moved) == set(original)
    for key, obj in original.items():
        assert canonical(moved[key]) == canonical(obj), (key, diff_paths(canonical(moved[key]), canonical(obj)))
        if key.kind == "Secret":          # byte for byte
            assert {k: base64.b64decode(v) for k, v in moved[key]["data"].items()} == \
                   {k: base64.b64decode(v) for k, v in obj["data"].items()}
    return moved


def edge_args(lab: dict[str, LocalCluster], ns: str) -> list[str]:
    args = move_args(lab["ephemeral"].kubeconfig, lab["target"].kubeconfig)
    args[args.index(TOPOLOGY.namespace)] = ns
    return args


def refused_in_process(lab: dict[str, LocalCluster], ns: str) -> PreflightError:
    """The same move in process, dry run (the pre-flight only): which PreflightError subclass refuses it."""
    async def go() -> None:
        async with kube(lab["ephemeral"], "source") as s, kube(lab["target"], "target") as d:
            await Mover(s, d, MoveOptions(namespaces=(ns,), dry_run=True)).run()
    with pytest.raises(PreflightError) as err:
        asyncio.run(go())
    return err.value


def test_huge_objects_move_intact(lab) -> None:
    """A 1 MiB Secret (the most a Secret may hold) and a 1.4 MB host: both clusters accept them, so they
    move, byte for byte."""
    blob = random.Random(6).randbytes(1024 * 1024 - 64)
    with edge_namespace(lab, "edge-huge") as ns:
        create(lab["ephemeral"], host(lab, ns, "big", spec={"description": "h" * 1_400_000}),
               owned_by_host("Secret", ns, "big-bmc-secret", "big", type="Opaque",
                             data={"blob": base64.b64encode(blob).decode()}))
        moved = moves_intact(lab, ns)
        secret = next(o for k, o in moved.items() if k.kind == "Secret")
        assert base64.b64decode(secret["data"]["blob"]) == blob


def test_object_too_large_to_copy_is_refused(lab) -> None:
    """A host just under etcd's request limit in the source: its copy (our marks added) would be refused by
    the target's etcd halfway through a move, so the pre-flight refuses it: ObjectTooLargeError, no write."""
    with edge_namespace(lab, "edge-big") as ns:
        for size in range(1_572_300, 1_560_000, -64):     # the largest the source stores (measured: ~1,572,313)
            try:
                create(lab["ephemeral"], host(lab, ns, "heavy", spec={"description": "h" * size}))
                break
            except ApiError as err:
                assert "request is too large" in str(err), err
        refused(lab, edge_args(lab, ns), 2,
                f"BareMetalHost.metal3.io {ns}/heavy", "once copied", "etcd's default request limit")
        assert isinstance(refused_in_process(lab, ns), ObjectTooLargeError)


def test_annotations_at_the_size_limit_are_refused(lab) -> None:
    """Annotations just under Kubernetes' 256 KiB total: the source accepts them, but the pause mark and the
    copy's marks would push them over, and the target (or the pause) would refuse the object halfway:
    refused by the pre-flight (ObjectTooLargeError), zero writes."""
    with edge_namespace(lab, "edge-annot") as ns:
        base = host(lab, ns, "annotated")
        used = sum(len(k) + len(v) for k, v in base["metadata"]["annotations"].items())
        filler = "example.com/notes"
        base["metadata"]["annotations"][filler] = "n" * (256 * 1024 - used - len(filler) - 40)
        create(lab["ephemeral"], base)
        refused(lab, edge_args(lab, ns), 2,
                f"BareMetalHost.metal3.io {ns}/annotated", "its annotations would grow to", "limit of 262144")
        assert isinstance(refused_in_process(lab, ns), ObjectTooLargeError)


def _nested_class(ns: str, name: str, levels: int) -> Obj:
    """A ClusterClass (a root of the move) whose variable schema nests 2 * `levels` maps deep (the API server
    keeps that part of the schema unpruned, up to its JSON limit of 10,000 levels)."""
    inner: Obj = {}
    cur = inner
    for _ in range(levels):
        cur["a"] = {"type": "object", "properties": {}}
        cur = cur["a"]["properties"]
    ref = {"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "Metal3ClusterTemplate", "name": "t"}
    return {"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "ClusterClass",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"controlPlane": {"templateRef": {**ref, "apiVersion": "controlplane.cluster.x-k8s.io/v1beta2",
                                                      "kind": "KubeadmControlPlaneTemplate"}},
                     "infrastructure": {"templateRef": ref},
                     "variables": [{"name": "v", "required": False,
                                    "schema": {"openAPIV3Schema": {"type": "object", "properties": inner}}}]}}


def test_nested_object_within_the_limit_moves_intact(lab) -> None:
    """A ClusterClass nested 90 levels deep (real objects nest < 20): moves, equal to the original."""
    with edge_namespace(lab, "edge-nested") as ns:
        create(lab["ephemeral"], _nested_class(ns, "nested", 40))
        moves_intact(lab, ns)


def test_deeply_nested_object_is_refused(lab) -> None:
    """Nested deeper than the engine copies safely (Python recursion): 320 levels are read but refused by the
    pre-flight; 4,000 levels (the API server allows 10,000) are deeper than the engine's readers follow
    (orjson: 1,024; Python's json: its recursion limit) and are refused while reading. Both:
    NestingTooDeepError, exit 2, no traceback, zero writes."""
    with edge_namespace(lab, "edge-deep") as ns:
        create(lab["ephemeral"], _nested_class(ns, "deep", 155))
        refused(lab, edge_args(lab, ns), 2,
                f"ClusterClass.cluster.x-k8s.io {ns}/deep", "levels deep, more than the 100")
        assert isinstance(refused_in_process(lab, ns), NestingTooDeepError)
    with edge_namespace(lab, "edge-deeper") as ns:
        create(lab["ephemeral"], _nested_class(ns, "deeper", 2000))
        with deep_parsing():
            refused(lab, edge_args(lab, ns), 2,
                    f"/namespaces/{ns}/clusterclasses", "nested deeper than metal3-pivot can read")


def test_deeply_nested_kubeconfig(lab, tmp_path) -> None:
    deep = tmp_path / "deep.kubeconfig"
    deep.write_text("apiVersion: v1\nclusters: " + "[" * 5000 + "]" * 5000 + "\n")
    refused(lab, move_args(deep, lab["target"].kubeconfig), 2, "nests deeper than a YAML parser follows")


def test_names_at_the_length_limit_move_intact(lab) -> None:
    """A 63-character namespace (the limit; created in the target by the move), a 253-character host and
    Secret (the DNS-subdomain limit), a label at its limits: the engine derives no names, so they move."""
    ns = "edge-" + "n" * 58
    assert len(ns) == 63
    name = "h" * 253
    secret = "s" * 253
    label = {("p" * 240) + ".io/" + "k" * 63: "v" * 63}
    with edge_namespace(lab, ns):
        bmh = host(lab, ns, name)
        bmh["metadata"]["labels"] = label
        create(lab["ephemeral"], bmh,
               owned_by_host("Secret", ns, secret, name, type="Opaque", data={"password": "YWRtaW4="}))
        moves_intact(lab, ns)


def test_unicode_moves_intact(lab, tmp_path) -> None:
    """Unicode where Kubernetes allows it (annotation values, string fields, ConfigMap data; any bytes in
    Secret data; names and label values must be ASCII, so none there), moved with kubeconfigs at a unicode
    path and with a unicode context name: moves, equal to the original, Secret bytes identical."""
    import yaml

    def renamed(c: LocalCluster, ctx: str, path: Path) -> Path:
        config = yaml.safe_load(c.kubeconfig.read_text())
        config["contexts"][0]["name"] = ctx
        config["current-context"] = ctx
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        return path

    src = renamed(lab["ephemeral"], "éphémère-☃", tmp_path / "kübeconfig ☃.yaml")
    dst = renamed(lab["target"], "ziel-目标", tmp_path / "ziel 目标.kubeconfig")
    text = "ノード ☃ ünïcødé 🚀"
    with edge_namespace(lab, "edge-unicode") as ns:
        create(lab["ephemeral"],
               host(lab, ns, "u", annotations={"example.com/note": text}, spec={"description": text}),
               owned_by_host("Secret", ns, "u-bmc-secret", "u", type="Opaque",
                             data={"utf8": base64.b64encode(text.encode()).decode(),
                                   "binary": base64.b64encode(b"\xff\xfe\x00\xc3(").decode()}),
               owned_by_host("ConfigMap", ns, "u-notes", "u", data={"greeting": "grüß dich ☃"},
                             binaryData={"raw": base64.b64encode(b"\x80\x81").decode()}))
        moved = moves_intact(lab, ns, src_args=(str(src), "--kubeconfig-context", "éphémère-☃"),
                             dst_args=(str(dst), "--to-kubeconfig-context", "ziel-目标"))
        host_copy = next(o for k, o in moved.items() if k.kind == "BareMetalHost")
        assert host_copy["metadata"]["annotations"]["example.com/note"] == text


def test_unicode_namespace_and_kubeconfig_refused(lab, tmp_path) -> None:
    """A namespace name cannot be unicode: refused as an invalid name. A kubeconfig that is not
    UTF-8: refused naming the file, not a traceback."""
    args = move_args(lab["ephemeral"].kubeconfig, lab["target"].kubeconfig)
    refused(lab, [*args[:-1], "métal3"], 2, "'métal3' is an invalid namespace name")
    latin1 = tmp_path / "latin1.kubeconfig"
    latin1.write_bytes(lab["ephemeral"].kubeconfig.read_bytes() + "# café\n".encode("latin-1"))
    refused(lab, move_args(latin1, lab["target"].kubeconfig), 2, "is not UTF-8 text")

"""CrdSet (components/crdset.py): the install's CRDs as one resource whose state keeps digests.

Unit: the packing is lossless, the digest follows what is applied, the diff asks for an update exactly
when a CRD is added or changes. On a real cluster: the provider applies every release CRD and waits
until each is Established, a CRD deleted by hand drops out at refresh and the next update restores it,
and a delete deletes nothing.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from components import manifests
from components.crdset import CRD, CrdSetError, CrdSetProvider, _applied, declared, digest, fetch, pack, unpack
from lab.cluster import LocalCluster, kube_for

Obj = dict[str, Any]


def release_crds() -> list[Obj]:
    return [c for spec in manifests.all_specs() for c in manifests.crds(spec)]


def props_for(crds: list[Obj], kubeconfig: str = "k", context: str | None = None) -> dict[str, Any]:
    return {"cluster": "target", "context": context, "kubeconfig": kubeconfig, **declared(crds)}


@pytest.mark.unit
def test_packing_is_lossless_and_small() -> None:
    crds = release_crds()
    packed = pack(crds)
    assert unpack(packed) == crds
    raw = sum(len(repr(c)) for c in crds)
    assert len(packed) < raw / 5, (len(packed), raw)


@pytest.mark.unit
def test_the_state_names_the_objects_and_the_provider_reads_them_back(tmp_path, monkeypatch) -> None:
    """The state keeps a reference, not the 430 KB of packed CRDs; the provider gets exactly what the
    program declared, or a CrdSetError naming the file, before anything is applied."""
    monkeypatch.setenv("METAL3_PIVOT_CACHE", str(tmp_path))
    crds = release_crds()
    props = declared(crds)
    assert len(props["manifests"]) == len("sha256:") + 64
    assert fetch(props["manifests"]) == sorted(crds, key=lambda c: c["metadata"]["name"])
    assert declared(list(reversed(crds)))["manifests"] == props["manifests"]      # one file per content
    (stashed,) = (tmp_path / "crdsets").iterdir()
    stashed.write_text(pack(crds[:1]))
    with pytest.raises(CrdSetError, match="does not match its name"):
        fetch(props["manifests"])
    stashed.unlink()
    with pytest.raises(CrdSetError, match=str(stashed)):
        CrdSetProvider().create({"cluster": "target", "context": None, "kubeconfig": "k", **props})
    with pytest.raises(CrdSetError, match="not a reference"):
        fetch(pack(crds[:1]))
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("METAL3_PIVOT_CACHE", str(tmp_path / "a-file"))       # no folder can be made there
    with pytest.raises(CrdSetError, match="METAL3_PIVOT_CACHE to a folder"):
        declared(crds)


@pytest.mark.unit
def test_the_digest_follows_what_is_applied() -> None:
    crd = next(c for c in release_crds() if c["metadata"]["name"] == "clusters.cluster.x-k8s.io")
    served = copy.deepcopy(crd)
    served["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                                    "clientConfig": {"caBundle": "QUJD", "service": {"name": "w", "namespace": "n"}}}}
    renewed = copy.deepcopy(served)
    renewed["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"] = "REVG"
    assert len({digest(crd), digest(served), digest(renewed)}) == 3
    # pulumi-kubernetes' instructions (`adopt`'s patchForce) are not applied, so not in the digest
    forced = copy.deepcopy(crd)
    forced["metadata"].setdefault("annotations", {})["pulumi.com/patchForce"] = "true"
    assert _applied(forced) == _applied(crd) and digest(_applied(forced)) == digest(_applied(crd))


@pytest.mark.unit
def test_an_update_is_asked_exactly_when_a_crd_is_added_or_changes() -> None:
    crds = release_crds()
    old = props_for(crds)
    provider = CrdSetProvider()
    assert not provider.diff("id", old, props_for(crds, kubeconfig="rotated")).changes
    assert provider.diff("id", old, props_for(crds[:-1])).changes             # one left out: names change
    changed = copy.deepcopy(crds)
    changed[0]["metadata"].setdefault("labels", {})["extra"] = "1"
    assert provider.diff("id", old, props_for(changed)).changes
    assert provider.diff("id", old, props_for(crds, context="other")).changes
    assert not provider.diff("id", old, props_for(list(reversed(crds)))).changes      # order is not identity


def _live(cluster: LocalCluster) -> dict[str, Obj]:
    async def go() -> dict[str, Obj]:
        async with kube_for(cluster) as k:
            return {c["metadata"]["name"]: c for c in await k.list(CRD)}
    return asyncio.run(go())


@pytest.mark.cluster
def test_apply_waits_for_established_refresh_sees_a_deleted_crd_and_delete_keeps_them(fresh_clusters) -> None:
    tgt = fresh_clusters(("target",), with_crds=False)["target"]
    crds = release_crds()
    props = props_for(crds, kubeconfig=tgt.kubeconfig.read_text())
    provider = CrdSetProvider()

    created = provider.create(props)
    live = _live(tgt)
    assert set(props["names"]) <= set(live)
    for name in props["names"]:
        conditions = {c["type"]: c["status"] for c in live[name]["status"]["conditions"]}
        assert conditions["Established"] == "True", name
        managers = {e["manager"] for e in live[name]["metadata"]["managedFields"]}
        assert "metal3-pivot-install" in managers
    assert "manifests" not in created.outs and created.outs["digests"] == props["digests"]
    assert provider.read(created.id, created.outs).outs == created.outs        # nothing drifted

    # a CRD deleted by hand: refresh drops it, so the next up sees a change and applies it again
    gone = "metal3datas.infrastructure.cluster.x-k8s.io"
    asyncio.run(_delete(tgt, gone))
    refreshed = provider.read(created.id, created.outs).outs
    assert gone not in refreshed["digests"] and gone not in refreshed["names"]
    assert provider.diff(created.id, refreshed, props).changes
    provider.update(created.id, refreshed, props)
    assert gone in _live(tgt)

    provider.delete(created.id, created.outs)
    assert set(props["names"]) <= set(_live(tgt))


async def _delete(cluster: LocalCluster, name: str) -> None:
    async with kube_for(cluster) as k:
        await k.delete(CRD, name)
        for _ in range(100):
            if await k.get(CRD, name) is None:
                return
            await asyncio.sleep(0.1)

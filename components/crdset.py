"""CrdSet: a provider install's CustomResourceDefinitions as one resource whose state keeps digests.

Why not one pulumi-kubernetes resource per CRD, as for every other object: a CRD's state holds its schema
three times (the inputs, pulumi-kubernetes' `__inputs` copy in the outputs, and the live `spec`), and the
release CRDs' schemas are large. The 42 CRDs were 5.3 MB of the local stack's 6.3 MB state, and Pulumi
writes the whole state at every step of an update: checkpointing took 52 of the 80 s of the install
`pulumi up` (`PULUMI_SKIP_CHECKPOINTS` measured it, docs/performance.md), and every later update and
preview paid for reading and diffing them too.

Here the state keeps, per CRD, its name and the digest of exactly what is applied (schema, labels,
conversion webhook and its caBundle); `pulumi preview --diff` shows which CRDs change by name. The
objects themselves do not travel in the state at all: the program packs them (compressed JSON) into a
content-addressed file in the project's cache (`<cache>/crdsets/<sha256>`, `stash`) and the input
`manifests` is that file's digest, which the provider reads back (`fetch`). Why: packed inline, the CRDs
were still 430 KB of the 1.2 MB state, written again at every step of every update (the Ironic handover
alone is ~70 checkpoints). Only `create` and `update` need the objects, and both run in the same
`pulumi up` as the program that wrote the file, on the same machine; `read` (refresh) uses the digests,
and `delete` deletes nothing. A missing or altered file is a `CrdSetError` naming it, before any write.

Semantics kept from the per-object install:
- server-side apply, forced (the stack owns what it declares, as pulumi-kubernetes' upsert did; CRDs that
  `clusterctl init` or an older state of this stack applied are taken over field by field, not recreated);
- each applied CRD is awaited until the API server reports it `Established`, so the custom resources
  declared after it (the inventory) never race it;
- nothing is ever deleted: a CRD left out of the set, a destroy, a replacement all keep the CRDs in the
  cluster, because deleting a CRD deletes every object of its kind (it was `retain_on_delete`);
- `pulumi refresh` reads which of the set's CRDs exist; one deleted by hand drops out of the outputs, so
  the next `pulumi up` applies it again.

The provider keeps nothing on `self` and lives in an importable module (pickled by reference), like
ObjectLocation's and WebhookCertificate's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from components import cache_dir, engine_watch, sweep
from metal3_pivot import CRD, Kube, load_kubeconfig

Obj = dict[str, Any]

#: in a provider plugin, notice a dead CLI (components/engine_watch.py); nothing happens elsewhere
engine_watch.start()

#: the field manager the stack applies CRDs with
MANAGER = "metal3-pivot-install"
#: how long one update waits for every applied CRD to be Established (the API server does it by itself,
#: in well under a second; minutes mean something is wrong with the cluster)
ESTABLISHED_TIMEOUT = 120.0
#: a stashed set not declared again for this long is swept when another is stashed: a program declares
#: its set (and so touches its file) in every run, before the provider reads it in the same run
STASH_KEEP_SECONDS = 24 * 3600.0

MODULE, NAME = "metal3", "CrdSet"
TYPE = f"pulumi-python:dynamic/{MODULE}:{NAME}"


class CrdSetError(Exception):
    """CRDs the API server did not accept or did not establish."""


def digest(crd: Obj) -> str:
    """What identifies a CRD as applied: sha256 of its canonical JSON (the first 16 hex digits)."""
    return "sha256:" + hashlib.sha256(json.dumps(crd, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def pack(crds: list[Obj]) -> str:
    """The CRDs as one compact string: zlib-compressed canonical JSON, base64. CRD schemas repeat
    themselves (every version, every nested ObjectMeta): 3 MB of YAML pack into a few hundred KB."""
    text = json.dumps(crds, sort_keys=True, separators=(",", ":")).encode()
    return base64.b64encode(zlib.compress(text, 9)).decode()


def unpack(packed: str) -> list[Obj]:
    out: list[Obj] = json.loads(zlib.decompress(base64.b64decode(packed)))
    return out


def _stash_dir() -> Path:
    return cache_dir() / "crdsets"


def stash(packed: str) -> str:
    """Writes packed CRDs where the provider will find them; returns their reference, `sha256:<hex>`.

    Written once per content (atomically: a temporary file renamed), touched when declared again, so that
    the sweep of sets nobody declared for a day never takes one a run is about to apply."""
    hexdigest = hashlib.sha256(packed.encode()).hexdigest()
    directory = _stash_dir()
    path = directory / hexdigest
    try:
        if path.exists():
            os.utime(path)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".stash-")
            with os.fdopen(fd, "w") as f:
                f.write(packed)
            os.replace(tmp, path)
            sweep(directory, STASH_KEEP_SECONDS)
    except OSError as err:
        raise CrdSetError(f"CrdSet: cannot write the CRDs to apply to {path} ({err.strerror}): set "
                          "METAL3_PIVOT_CACHE to a folder this user can write") from None
    return f"sha256:{hexdigest}"


def fetch(reference: str) -> list[Obj]:
    """The CRDs a `stash` reference names, checked against it."""
    prefix, _, hexdigest = reference.partition(":")
    if prefix != "sha256" or len(hexdigest) != 64:
        raise CrdSetError(f"CrdSet: `manifests` is {reference[:40]!r}, not a reference to stashed CRDs "
                          "(sha256:<hex>); the program writes them: run `pulumi up` again")
    path = _stash_dir() / hexdigest
    try:
        packed = path.read_text()
    except FileNotFoundError:
        raise CrdSetError(f"CrdSet: the CRDs to apply are not at {path}; the program stashes them there in "
                          "the same run before the provider applies them: run `pulumi up` again on the "
                          "machine that runs the program (and check METAL3_PIVOT_CACHE is the same for both)") from None
    if hashlib.sha256(packed.encode()).hexdigest() != hexdigest:
        raise CrdSetError(f"CrdSet: {path} does not match its name (changed since the program wrote it); "
                          "delete it and run `pulumi up` again")
    return unpack(packed)


def declared(crds: list[Obj]) -> dict[str, Any]:
    """The set's declared properties for these CRDs (resolved): `names`, `digests` of what is applied, and
    the reference to the packed objects in name order (so the order they come in changes nothing), which
    this stashes."""
    crds = sorted(crds, key=lambda c: str(c["metadata"]["name"]))
    return {"names": [str(c["metadata"]["name"]) for c in crds],
            "digests": {str(c["metadata"]["name"]): digest(_applied(c)) for c in crds},
            "manifests": stash(pack(crds))}


def _applied(crd: Obj) -> Obj:
    """The CRD as applied: pulumi-kubernetes' own annotations (`pulumi.com/patchForce` from `adopt`) are
    instructions to that provider, not part of the object; applying is always forced here."""
    md = crd["metadata"]
    annotations = {k: v for k, v in (md.get("annotations") or {}).items() if not k.startswith("pulumi.com/")}
    md = {k: v for k, v in md.items() if k != "annotations"}
    return {**crd, "metadata": {**md, **({"annotations": annotations} if annotations else {})}}


def _established(crd: Obj | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


async def _apply_all(kube: Kube, crds: list[Obj], timeout: float = ESTABLISHED_TIMEOUT) -> None:
    await asyncio.gather(*(kube.apply(CRD, crd, manager=MANAGER, force=True) for crd in crds))
    waiting = [c["metadata"]["name"] for c in crds]
    deadline = time.monotonic() + timeout
    while waiting:
        live = await _live(kube, waiting)
        waiting = [name for name in waiting if not _established(live[name])]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise CrdSetError(f"{kube.name}: CRDs not Established after {timeout:.0f} s: {', '.join(waiting)} "
                              "(kubectl describe crd NAME shows the API server's reason)")
        await asyncio.sleep(0.2)


async def _live(kube: Kube, names: list[str]) -> dict[str, Obj | None]:
    """Each named CRD as the cluster has it (None: absent), read in parallel."""
    return dict(zip(names, await asyncio.gather(*(kube.get(CRD, name) for name in names)), strict=True))


def _kube(props: dict[str, Any]) -> Kube:
    return Kube(load_kubeconfig(props["kubeconfig"], props.get("context"), label=f"{props['cluster']} kubeconfig"),
                name=str(props["cluster"]))


def _outputs(props: dict[str, Any], present: dict[str, str] | None = None) -> dict[str, Any]:
    """Outputs: the declared identity, never the objects (the inputs name them once)."""
    digests = dict(props.get("digests") or {}) if present is None else present
    return {"cluster": props["cluster"], "context": props.get("context"), "kubeconfig": props["kubeconfig"],
            "names": sorted(digests), "digests": digests}


class CrdSetProvider(ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        if not isinstance(news.get("kubeconfig"), str) or not news["kubeconfig"]:
            failures.append(CheckFailure("kubeconfig", f"the {news.get('cluster')} cluster's kubeconfig is missing"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A change when a CRD is added or its applied form differs (by digest); the kubeconfig may change
        (a rotated certificate, a new port) without anything to apply, as `cluster_identifier` keeps the
        Kubernetes provider's resources in place (components/clusters.py)."""
        changed = [k for k in ("names", "digests", "context") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        crds = [_applied(c) for c in fetch(str(props["manifests"]))]

        async def run() -> None:
            async with _kube(props) as kube:
                await _apply_all(kube, crds)
        asyncio.run(run())
        return _outputs(props)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['cluster']}-crds", outs=self._apply(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Applies the whole set again (unchanged CRDs are no-ops for the API server); a CRD no longer in
        the set is left in the cluster."""
        return UpdateResult(outs=self._apply(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        digests = dict(props.get("digests") or {})

        async def run() -> dict[str, Obj | None]:
            async with _kube(props) as kube:
                return await _live(kube, sorted(digests))
        live = asyncio.run(run())
        return ReadResult(id_, _outputs(props, {name: d for name, d in digests.items() if live[name] is not None}))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing is deleted: deleting a CRD deletes every object of its kind (see the module docstring)."""


class CrdSet(pulumi.dynamic.Resource, module=MODULE, name=NAME):
    """The CRDs one provider install applies to one cluster."""

    names: pulumi.Output[list[str]]
    digests: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, *, cluster: str, kubeconfig: pulumi.Input[str], context: str | None,
                 crds: list[Obj], opts: pulumi.ResourceOptions | None = None) -> None:
        """`crds`: the CRD objects; a served conversion webhook (`spec.conversion`, whose caBundle comes from
        the stack's certificates, components/webhooks.py) may hold outputs, nothing else may."""
        resolved = _resolved(crds).apply(declared)
        props: dict[str, Any] = {
            "cluster": cluster, "context": context, "kubeconfig": pulumi.Output.secret(kubeconfig),
            "names": sorted(str(c["metadata"]["name"]) for c in crds),
            "digests": resolved.apply(lambda d: d["digests"]),
            "manifests": resolved.apply(lambda d: d["manifests"]),
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"]))
        super().__init__(CrdSetProvider(), name, props, opts)


def _resolved(crds: list[Obj]) -> pulumi.Output[list[Obj]]:
    """The CRDs with their conversions resolved. Only `spec.conversion` goes through `Output.from_input`:
    given a whole CRD it makes an Output of every nested value of the schema (about a hundred thousand for
    the release CRDs), which took minutes per preview."""
    for crd in crds:
        rest = {**crd, "spec": {k: v for k, v in (crd.get("spec") or {}).items() if k != "conversion"}}
        if _has_output(rest):
            raise TypeError(f"CrdSet: {crd['metadata'].get('name')}: only spec.conversion may hold outputs")
    conversions = [pulumi.Output.from_input((c.get("spec") or {}).get("conversion")) for c in crds]

    def merged(convs: list[Any]) -> list[Obj]:
        out = []
        for crd, conv in zip(crds, convs, strict=True):
            spec = {k: v for k, v in (crd.get("spec") or {}).items() if k != "conversion"}
            out.append({**crd, "spec": {**spec, **({"conversion": conv} if conv is not None else {})}})
        return out
    return pulumi.Output.all(*conversions).apply(merged)


def _has_output(value: Any) -> bool:
    if isinstance(value, pulumi.Output):
        return True
    if isinstance(value, dict):
        return any(_has_output(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_output(v) for v in value)
    return False

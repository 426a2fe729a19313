"""`--to-directory` / `--from-directory`: the move set as files, in clusterctl's format, and back.

What clusterctl writes, so that each tool restores the other's backups: one object per file, named
`<Kind>_<namespace>_<name>.yaml` (an empty namespace for cluster-scoped objects), holding the object as
the API server returned it, in JSON (which YAML readers read), status, UID and ownerReferences included,
so a restore can rebuild the owner chains with the new cluster's UIDs and restore a host's status. The
objects are read after the pause, so Clusters are written paused (the restore unpauses them); none of
our marks is written.

The files hold Secrets (BMC credentials, cluster CAs), so the folder is created 0700 and every file
0600; docs/reliability.md says to treat a backup like the kubeconfigs themselves.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from metal3_pivot.discovery import ClusterView, unpacked
from metal3_pivot.errors import InputError
from metal3_pivot.graph import Graph, Node, TypeInfo, build_graph
from metal3_pivot.kube import CONFIGMAP, SECRET, ResourceType, group_of
from metal3_pivot.plan import PAUSED_BY, SOURCE_UID, SOURCE_VERSION, STATUS_ADDED

Obj = dict[str, Any]

#: annotations of ours that never go into a file
OUR_MARKS = (PAUSED_BY, SOURCE_UID, SOURCE_VERSION, STATUS_ADDED)


def file_name(obj: Obj) -> str:
    """clusterctl's name for an object's file (its node.getFilename)."""
    md = obj["metadata"]
    return f"{obj['kind']}_{md.get('namespace') or ''}_{md['name']}.yaml"


def empty_view(name: str = "directory") -> ClusterView:
    """The "target" of a backup: holds nothing, so every object of the move is to be written."""
    return ClusterView(name, {}, {}, [], set(), Graph({}))


def file_content(obj: Obj) -> Obj:
    out = copy.deepcopy(unpacked(obj))
    ann = out["metadata"].get("annotations")
    if ann:
        for mark in OUR_MARKS:
            ann.pop(mark, None)
        if not ann:
            del out["metadata"]["annotations"]
    return out


def write(nodes: Iterable[Node], directory: Path) -> int:
    """Write every given object; returns how many."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    count = 0
    for node in nodes:
        obj = file_content(node.obj)
        path = directory / file_name(obj)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, separators=(",", ":"))
        count += 1
    return count


def read(directory: Path, served: dict[tuple[str, str], ResourceType]) -> ClusterView:
    """A ClusterView of a backup folder: each kind at the file's version, named (plural, scope) as the restore
    target names it."""
    if not directory.is_dir():
        raise InputError(f"--from-directory {directory}: no such folder")
    objects: list[tuple[TypeInfo, Obj]] = []
    core = {("", "Secret"): SECRET, ("", "ConfigMap"): CONFIGMAP}
    for path in sorted(directory.glob("*.yaml")):
        try:
            obj = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise InputError(f"{path}: not valid YAML: {err}") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text, so not YAML") from None
        except RecursionError:
            raise InputError(f"{path}: nested deeper than a YAML parser follows: not a Kubernetes object") from None
        if not isinstance(obj, dict) or "kind" not in obj or "metadata" not in obj:
            raise InputError(f"{path}: not a Kubernetes object")
        api = obj["apiVersion"]
        gk = (group_of(api), obj["kind"])
        # created at the file's version, as clusterctl does (the pre-flight checks that the target serves it)
        there = core.get(gk) or served.get(gk)
        version = api.rsplit("/", 1)[-1]
        rt = (ResourceType(gk[0], version, gk[1], there.plural, there.namespaced) if there is not None
              else ResourceType(gk[0], version, gk[1], gk[1].lower() + "s"))
        # every object in a backup moves: mark the type as force-moved
        objects.append((TypeInfo(rt, force_move=True), obj))
    if not objects:
        raise InputError(f"--from-directory {directory}: no object files (*.yaml) in it")
    namespaces = {o["metadata"].get("namespace") for _, o in objects if o["metadata"].get("namespace")}
    graph = build_graph(objects)
    for node in graph.nodes.values():
        # nothing is ever deleted from a backup: an object the target already has is skipped (clusterctl),
        # and copies carry no mark of ours
        node.should_not_delete = True
    return ClusterView(f"directory {directory}", {}, dict(served), [], set(namespaces), graph)

"""`--to-directory` / `--from-directory`: the move set as readable YAML files, and back into a cluster.

The files hold Secrets (BMC credentials, cluster CAs), so the folder is created 0700 and every file
0600; docs/reliability.md says to treat a backup like the kubeconfigs themselves. One object per file,
named `<Kind>.<group>_<namespace>_<name>.yaml`, written with the source's UIDs and ownerReferences so a
restore can rebuild the owner chains and rewrite them to the new cluster's UIDs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from metal3_pivot.discovery import ClusterView
from metal3_pivot.errors import InputError
from metal3_pivot.graph import TypeInfo, build_graph
from metal3_pivot.kube import CONFIGMAP, SECRET, ResourceType, group_of
from metal3_pivot.plan import SERVER_SET_METADATA

Obj = dict[str, Any]

#: the server-set metadata, except the UID: a restore rewrites ownerReferences from the source's UIDs
DROP_ON_BACKUP = tuple(f for f in SERVER_SET_METADATA if f != "uid")


def file_name(obj: Obj) -> str:
    group = group_of(obj["apiVersion"]) or "core"
    md = obj["metadata"]
    return f"{obj['kind']}.{group}_{md.get('namespace') or '_cluster'}_{md['name']}.yaml"


def write(view: ClusterView, directory: Path) -> int:
    """Write every object that moves; returns how many."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    count = 0
    for node in view.graph.move_nodes().values():
        obj = {k: v for k, v in node.obj.items()}
        obj["metadata"] = {k: v for k, v in node.obj["metadata"].items() if k not in DROP_ON_BACKUP}
        path = directory / file_name(obj)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(obj, f, sort_keys=False)
        count += 1
    return count


def read(directory: Path, served: dict[tuple[str, str], ResourceType]) -> ClusterView:
    """A ClusterView of a backup folder, typed by what the restore target serves."""
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
        rt = core.get(gk) or served.get(gk)
        if rt is None:
            rt = ResourceType(gk[0], api.rsplit("/", 1)[-1], gk[1], gk[1].lower() + "s")
        # every object in a backup moves: mark the type as force-moved
        objects.append((TypeInfo(rt, force_move=True), obj))
    namespaces = {o["metadata"].get("namespace") for _, o in objects if o["metadata"].get("namespace")}
    return ClusterView(f"directory {directory}", {}, dict(served), [], set(namespaces), build_graph(objects))

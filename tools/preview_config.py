"""Write the config of a throw-away preview stack from a real stack's file, for pull-request previews.

Why: the PR job must never hold the real stack's passphrase (it decrypts the admin kubeconfigs in the
config and in the state), so it previews a stack of its own, with local state and read-only kubeconfigs
(docs/preview-rbac.yaml). Everything the pull request may change (location, namespaces, providers,
Ironic settings, ...) is copied from the real stack's file; what is secret (`secure:` values, kubeconfig
content) and the kubeconfig sources are dropped, and each cluster's `kubeconfigPath` points at the
read-only kubeconfig file instead (its current context is used).

    python tools/preview_config.py stacks/Pulumi.lab.yaml EPHEMERAL_KUBECONFIG TARGET_KUBECONFIG OUT.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

PROJECT = "metal3-pivot"


def _public(value: Any) -> Any:
    """`value` without any `secure:` entry (nested maps included); None when nothing public is left."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return None
        kept = {k: v for k, v in ((k, _public(v)) for k, v in value.items()) if v is not None}
        return kept
    return value


def preview_config(stack_file: Path, ephemeral: Path, target: Path) -> dict[str, Any]:
    config = dict((yaml.safe_load(stack_file.read_text()) or {}).get("config") or {})
    out: dict[str, Any] = {}
    for key, value in config.items():
        public = _public(value)
        if public is not None:
            out[key] = public
    for side, path in (("ephemeral", ephemeral), ("target", target)):
        out[f"{PROJECT}:{side}"] = {"kubeconfigPath": str(path.resolve())}
    return {"config": out}


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    stack_file, ephemeral, target, out = (Path(a) for a in argv)
    out.write_text(yaml.safe_dump(preview_config(stack_file, ephemeral, target), sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

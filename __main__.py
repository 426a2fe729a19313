"""The Pulumi program: validate the stack config, then declare the components. Nothing else here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi

from components.clusters import EphemeralCluster, TargetCluster
from components.config import ConfigError, parse


def load_config() -> dict[str, Any]:
    """The project's config as plain values (objects arrive as JSON text)."""
    raw = pulumi.runtime.get_config_env()
    prefix = f"{pulumi.get_project()}:"
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(prefix):
            try:
                values[key[len(prefix):]] = json.loads(value)
            except ValueError:
                values[key[len(prefix):]] = value
    return values


def secret_keys() -> set[str]:
    prefix = f"{pulumi.get_project()}:"
    return {k[len(prefix):] for k in pulumi.runtime.get_config_secret_keys_env() if k.startswith(prefix)}


try:
    config = parse(load_config(), secret_keys())
except ConfigError as err:
    raise SystemExit(f"metal3-pivot: {err}") from None

root = Path(__file__).resolve().parent
ephemeral = EphemeralCluster("ephemeral", config.ephemeral.kubeconfig_text(root), config.ephemeral.context)
target = TargetCluster("target", config.target.kubeconfig_text(root), config.target.context)
pulumi.export("location", config.location)
pulumi.export("namespaces", config.namespaces)

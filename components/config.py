"""The stack's configuration, validated before any resource is declared.

Why pydantic and a plain mapping as input: the model is testable without Pulumi, and a wrong value
fails `pulumi preview` with a message naming the key and the allowed values instead of surfacing as an
obscure provider error halfway through an update.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROJECT = "metal3-pivot"


class ConfigError(Exception):
    """The stack configuration is invalid; the message names every offending key."""


class ClusterConfig(BaseModel):
    """How to reach one management cluster: a kubeconfig file, or its content as *secret* config."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kubeconfig_path: str | None = Field(default=None, alias="kubeconfigPath")
    kubeconfig: str | None = Field(default=None, repr=False)      # content; must be secret config
    context: str | None = None

    @model_validator(mode="after")
    def one_source(self) -> ClusterConfig:
        if bool(self.kubeconfig_path) == bool(self.kubeconfig):
            raise ValueError("set exactly one of kubeconfigPath (a file) or kubeconfig (secret content)")
        return self

    def kubeconfig_text(self, base: Path) -> str:
        if self.kubeconfig:
            return self.kubeconfig
        path = Path(self.kubeconfig_path or "")
        path = path if path.is_absolute() else base / path
        try:
            return path.read_text()
        except OSError as err:
            raise ConfigError(f"kubeconfigPath {path}: {err.strerror}") from None


class StackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    location: Literal["ephemeral", "target"]
    ephemeral: ClusterConfig
    target: ClusterConfig
    namespaces: list[str] = Field(default_factory=lambda: ["metal3"], min_length=1)


def parse(values: dict[str, Any], secret_keys: set[str] | frozenset[str] = frozenset()) -> StackConfig:
    """Validate raw config (keys without the project prefix). Kubeconfig content must be a secret."""
    try:
        config = StackConfig.model_validate(values)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            problems.append(f"{PROJECT}:{key}: {e['msg']}" + (f" (got {e['input']!r})" if e["type"] in
                                                                ("literal_error", "string_type") else ""))
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(problems)) from None
    for side in ("ephemeral", "target"):
        if getattr(config, side).kubeconfig and side not in secret_keys:
            raise ConfigError(f"{PROJECT}:{side}.kubeconfig holds credentials and must be secret config: "
                              f"pulumi config set --secret --path '{side}.kubeconfig' < FILE")
    return config

"""The stack's configuration, validated before any resource is declared.

Why pydantic and a plain mapping as input: the model is testable without Pulumi, and a wrong value
fails `pulumi preview` with a message naming the key and the allowed values instead of surfacing as an
obscure provider error halfway through an update.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROJECT = "metal3-pivot"

class ConfigError(Exception):
    """The stack configuration is invalid; the message names every offending key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ClusterConfig(_Model):
    """How to reach one management cluster: a kubeconfig file, or its content as *secret* config."""

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


class ProvidersConfig(_Model):
    """What ProviderInstall puts on the target (what `clusterctl init` does in move.yml)."""

    install: bool = True
    # "modules": rendered from the pinned provider modules; a path: a release components file (YAML)
    source: str = "modules"
    controllers: bool = True          # namespaces, RBAC, Deployments besides CRDs and the inventory


class IronicConfig(_Model):
    """Ironic + BMO, placed on the cluster where the objects live (exactly one at any time)."""

    install: bool = True              # false: Ironic/BMO are run by something else (this stack only moves)
    # true: Ironic/BMO already run where the hosts are, installed by another tool (metal3-dev-env); the stack
    # takes them over (server-side apply with force: it becomes the owner of every field it declares)
    adopt: bool = False
    namespace: str = "baremetal-operator-system"
    image: str = "quay.io/metal3-io/ironic:v29.0.0"
    bmo_image: str = Field(default="quay.io/metal3-io/baremetal-operator:v0.13.2", alias="bmoImage")
    provisioning_interface: str = Field(default="ironicendpoint", alias="provisioningInterface")
    provisioning_ip: str = Field(default="172.22.0.2", alias="provisioningIp")
    provisioning_cidr: int = Field(default=24, alias="provisioningCidr", ge=8, le=30)
    dhcp_range: str = Field(default="172.22.0.10,172.22.0.100", alias="dhcpRange")

    @field_validator("provisioning_ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        ipaddress.ip_address(v)
        return v

    @field_validator("dhcp_range")
    @classmethod
    def _range(cls, v: str) -> str:
        parts = v.split(",")
        if len(parts) != 2:
            raise ValueError("dhcpRange must be 'FIRST_IP,LAST_IP'")
        for p in parts:
            ipaddress.ip_address(p.strip())
        return v


class StackConfig(_Model):
    location: Literal["ephemeral", "target"]
    ephemeral: ClusterConfig
    target: ClusterConfig
    namespaces: list[str] = Field(default_factory=lambda: ["metal3"], min_length=1)
    providers: ProvidersConfig = Field(default_factory=ProvidersConfig)
    ironic: IronicConfig = Field(default_factory=IronicConfig)
    move_timeout: float = Field(default=1800.0, alias="moveTimeout", gt=0)
    concurrency: int = Field(default=32, ge=1, le=256)
    protect: bool = True              # ObjectLocation protected against an accidental `pulumi destroy`
    skip_await: bool = Field(default=False, alias="skipAwait")   # true where no kubelet runs (the lab)
    # with skipAwait: still wait for Deployments' Available condition, and for their deletion (the live lab's
    # node agent reports availability and holds a deleted Deployment until its process has exited)
    await_deployments: bool = Field(default=False, alias="awaitDeployments")


def parse(values: dict[str, Any], secret_keys: set[str] | frozenset[str] = frozenset()) -> StackConfig:
    """Validate raw config (keys without the project prefix). Kubeconfig content must be a secret."""
    try:
        config = StackConfig.model_validate(values)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"])
            value = e.get("input")
            # echo scalars only, never anything that may hold a kubeconfig
            scalar = isinstance(value, str | int | float | bool) and "kubeconfig" not in key
            shown = f" (got {value!r})" if scalar and e["type"] != "missing" else ""
            problems.append(f"{PROJECT}:{key}: {e['msg']}{shown}")
        raise ConfigError("invalid stack configuration:\n  " + "\n  ".join(problems)) from None
    for side in ("ephemeral", "target"):
        if getattr(config, side).kubeconfig and side not in secret_keys:
            raise ConfigError(f"{PROJECT}:{side}.kubeconfig holds credentials and must be secret config: "
                              f"pulumi config set --secret --path '{side}.kubeconfig' < FILE")
    return config


def probe(name: str, kubeconfig: str, context: str | None) -> None:
    """Fail the program, before any resource is declared, when a cluster is unusable or unreachable."""
    import asyncio
    import concurrent.futures

    from metal3_pivot import Kube, PivotError, load_kubeconfig

    async def go() -> None:
        async with Kube(load_kubeconfig(kubeconfig, context, label=f"{PROJECT}:{name}"), name=name,
                        retries=1, timeout=10) as kube:
            await kube.version()

    try:  # in a thread of its own: the Pulumi program already runs inside an event loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, go()).result()
    except PivotError as err:
        raise ConfigError(f"{PROJECT}:{name}: the {name} cluster is not usable: {err}") from None

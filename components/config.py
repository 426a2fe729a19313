"""The stack's configuration, validated before any resource is declared.

Read through `pulumi.Config` (`load`), validated by a pydantic model (`parse`). Why pydantic and a plain
mapping in between: the model is testable without Pulumi, and a wrong value fails `pulumi preview` with a
message naming the key and the allowed values instead of surfacing as an obscure provider error halfway
through an update. The program turns a ConfigError into `pulumi.RunError`: one message, no traceback.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from components.manifests import manifest_label

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

    def kubeconfig_text(self, base: Path, side: str = "") -> str:
        """The kubeconfig's content; a relative kubeconfigPath is relative to the project folder."""
        if self.kubeconfig:
            return self.kubeconfig
        path = Path(self.kubeconfig_path or "")
        path = path if path.is_absolute() else base / path
        key = f"{PROJECT}:{side}.kubeconfigPath" if side else "kubeconfigPath"
        try:
            return path.read_text()
        except OSError as err:
            raise ConfigError(f"{key} {path}: {err.strerror}") from None


#: clusterctl's provider types (clusterctl.cluster.x-k8s.io/v1alpha3 Provider `type`)
ProviderType = Literal["CoreProvider", "BootstrapProvider", "ControlPlaneProvider", "InfrastructureProvider",
                       "IPAMProvider", "RuntimeExtensionProvider", "AddonProvider"]


class ComponentsFile(_Model):
    """One release components file and what clusterctl knows about it besides the file itself: its
    provider list gives the name and type (`clusterctl init --infrastructure metal3:v1.13.2`), the release
    the version. The file gives the namespace (its one Namespace object)."""

    path: str                         # relative paths are relative to the project folder
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")    # clusterctl's provider name, e.g. metal3
    type: ProviderType
    version: str = Field(pattern=r"^v\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")   # the release, e.g. v1.13.2

    @property
    def label(self) -> str:
        """clusterctl's name for it (inventory name, `cluster.x-k8s.io/provider`): e.g. infrastructure-metal3."""
        return manifest_label(self.name, self.type)


class ProvidersConfig(_Model):
    """What ProviderInstall puts on the target (what `clusterctl init` does in move.yml)."""

    install: bool = True
    # `modules` (None here): rendered from the pinned provider modules; or the release components files to
    # install, each with what clusterctl knows about it (ComponentsFile)
    source: list[ComponentsFile] | None = None
    # clusterctl's variables (`${NAME:=default}` in the manifests): NAME -> value; the environment
    # `pulumi` runs in fills the names not set here (components/variables.py)
    variables: dict[str, str] = Field(default_factory=dict)
    controllers: bool = True          # namespaces, RBAC, Deployments besides CRDs and the inventory
    # true: controllers of the same names already running on the target, created by something else
    # (kubectl, clusterctl), are taken over by the stack; false: the program refuses them (ownership.py)
    adopt: bool = False

    @field_validator("source", mode="before")
    @classmethod
    def _files_need_their_provider(cls, v: Any) -> Any:
        if v == "modules":
            return None
        if isinstance(v, str):
            raise ValueError(
                "a components file alone does not say which provider it installs: give `modules`, or a list "
                "of {path, name, type, version}, e.g. `pulumi config set --path 'providers.source[0].path' "
                "infrastructure-components.yaml`, then `providers.source[0].name metal3`, "
                "`providers.source[0].type InfrastructureProvider`, `providers.source[0].version v1.13.2`")
        return v

    @field_validator("variables", mode="before")
    @classmethod
    def _variables(cls, v: Any) -> Any:
        """Scalars as text (`pulumi config set --path` may store `true` or `8443` typed); names as in the
        manifests, unique ignoring case (clusterctl looks them up ignoring case)."""
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        for name, value in v.items():
            if not isinstance(name, str) or not name or not all(c == "_" or c.isalnum() for c in name):
                raise ValueError(f"variable name {name!r}: letters, digits and _ only (as in ${{NAME}})")
            if any(other.upper() == name.upper() for other in out):
                raise ValueError(f"variable {name!r} is set twice (names are compared ignoring case)")
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, int | float):
                value = str(value)
            out[name] = value
        return out

    @field_validator("source")
    @classmethod
    def _one_of_each(cls, v: list[ComponentsFile] | None) -> list[ComponentsFile] | None:
        if v is not None:
            if not v:
                raise ValueError("an empty list installs nothing: list the components files, or use `modules`")
            labels = [f.label for f in v]
            twice = sorted({x for x in labels if labels.count(x) > 1})
            if twice:
                raise ValueError(f"provider(s) listed twice: {', '.join(twice)}")
            if sum(f.type == "CoreProvider" for f in v) > 1:
                raise ValueError("more than one CoreProvider: a management cluster runs one core provider")
        return v


class IronicConfig(_Model):
    """Ironic + BMO, placed on the cluster where the objects live (exactly one at any time)."""

    install: bool = True              # false: Ironic/BMO are run by something else (this stack only moves)
    # true: Ironic/BMO already run where the hosts are, installed by another tool (metal3-dev-env); the stack
    # takes them over (server-side apply with force: it becomes the owner of every field it declares);
    # false: the program refuses Ironic/BMO Deployments that something else created there (ownership.py)
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


class ConfigSource(Protocol):
    """What `load` needs of `pulumi.Config` (and what the unit tests give it instead)."""

    def get(self, key: str) -> str | None: ...

    def full_key(self, key: str) -> str: ...


def _structured(name: str) -> bool:
    """Keys whose value is an object or a list (pulumi keeps them as JSON text), not a scalar."""
    annotation = StackConfig.model_fields[name].annotation
    return get_origin(annotation) is list or (isinstance(annotation, type) and issubclass(annotation, BaseModel))


def load(config: ConfigSource, is_secret: Callable[[str], bool], configured: Iterable[str] = ()) -> StackConfig:
    """The stack config as `pulumi.Config` gives it: every key the model knows, objects and lists decoded
    from their JSON text, then `parse`d. `is_secret` takes a full key (`pulumi.runtime.is_config_secret`).
    `configured`: the full keys the stack sets, so that a misspelt key of this project is an error instead
    of being ignored (pulumi.Config only answers for the keys it is asked about)."""
    values: dict[str, Any] = {}
    problems = []
    for name, spec in StackConfig.model_fields.items():
        key = spec.alias or name
        raw = config.get(key)
        if raw is None:
            continue
        if _structured(name):
            try:
                values[key] = json.loads(raw)
            except ValueError:
                problems.append(f"{config.full_key(key)}: must be a map or a list (set it with --path, or in "
                                "the stack file)")
        else:
            values[key] = raw
    known = {config.full_key(spec.alias or name) for name, spec in StackConfig.model_fields.items()}
    prefix = config.full_key("")
    problems += [f"{key}: not a setting of this program (known: "
                 f"{', '.join(sorted(k[len(prefix):] for k in known))})"
                 for key in sorted(configured) if key.startswith(prefix) and key not in known]
    if problems:
        raise ConfigError(_problems(problems))
    secret = {key for key in values if is_secret(config.full_key(key))}
    return parse(values, secret)


def _problems(lines: list[str]) -> str:
    """One line for one problem (what a terminal shows best), a list for several."""
    if len(lines) == 1:
        return f"invalid stack configuration: {lines[0]}"
    return "invalid stack configuration:\n  " + "\n  ".join(lines)


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
        raise ConfigError(_problems(problems)) from None
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

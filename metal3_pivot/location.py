"""ObjectLocation's properties, declared once: the contract between the Pulumi resource that writes them
(components/object_location.py) and the policy pack that reads them (policies/validators.py).

Plain data, no Pulumi import. Pulumi carries properties as camelCase JSON-like maps; these classes say
which keys exist and what they hold, and convert both ways, so neither side spells a key by hand.
`LocationInputs` is what the program declares; `LocationState` is what the provider computes (in
`check`, so a preview and the policy pack see it, and after every update or refresh).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from metal3_pivot.findings import Finding

#: where the objects may be declared to live
LOCATIONS = ("ephemeral", "target")


def prop_key(name: str) -> str:
    """The property key of a field: `target_kubeconfig` -> `targetKubeconfig`."""
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)



@dataclass
class LocationInputs:
    """What the program declares. The kubeconfig fields hold a Pulumi Input in the program (a secret
    Output) and the text itself in the provider, hence `Any`."""

    location: Any
    ephemeral_kubeconfig: Any
    target_kubeconfig: Any
    namespaces: list[str]
    ephemeral_context: str = ""
    target_context: str = ""
    timeout: float = 1800.0
    concurrency: int = 32
    target_providers_managed: bool = False
    holder: str = "a pulumi stack"              # who moves, as the cluster-side move lock shows it
    urn: Any = ""                               # the resource's own URN: its progress lines are logged on it

    @classmethod
    def prop_keys(cls) -> list[str]:
        return [prop_key(f.name) for f in fields(cls)]

    def to_props(self) -> dict[str, Any]:
        return {prop_key(f.name): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> LocationInputs:
        """Tolerant of what older states lack (defaults) and of the floats Pulumi makes of numbers."""
        return cls(**{name: cls.read(props, name) for name in _INPUT_READERS})

    @classmethod
    def read(cls, props: Mapping[str, Any], name: str) -> Any:
        """One field only: the policy pack reads what it needs, since touching a value unknown at preview
        time makes CrossGuard raise."""
        return _INPUT_READERS[name](props.get(prop_key(name)))

    def kubeconfig(self, side: str) -> Any:
        return self.ephemeral_kubeconfig if side == "ephemeral" else self.target_kubeconfig

    def context(self, side: str) -> str | None:
        return (self.ephemeral_context if side == "ephemeral" else self.target_context) or None


def _text(v: Any) -> str:
    return str(v or "")


_INPUT_READERS: dict[str, Callable[[Any], Any]] = {
    "location": lambda v: v,
    "ephemeral_kubeconfig": lambda v: v,
    "target_kubeconfig": lambda v: v,
    "namespaces": lambda v: [str(n) for n in v or []],
    "ephemeral_context": _text,
    "target_context": _text,
    "timeout": lambda v: float(v or 1800.0),
    "concurrency": lambda v: int(v or 32),
    "target_providers_managed": bool,
    "holder": lambda v: str(v or "a pulumi stack"),
    "urn": _text,
}


@dataclass(frozen=True)
class ProviderEntry:
    """One provider of clusterctl's inventory, as the target-initialised policy compares them."""

    name: str
    type: str
    version: str

    @classmethod
    def of(cls, inventory_entry: Mapping[str, Any]) -> ProviderEntry:
        return cls(str(inventory_entry["metadata"]["name"]), str(inventory_entry.get("type")),
                   str(inventory_entry.get("version")))


@dataclass(frozen=True)
class PendingMove:
    """What an update would move: from where, to where, how many objects of each kind; and `finish`, the
    writes of the move's end still due (plan.Finish.counts): a move stopped after its last delete has
    nothing left to move and yet is not done."""

    source: str
    target: str
    objects: dict[str, int]
    finish: dict[str, int] = field(default_factory=dict)


@dataclass
class LocationState:
    """What the provider computes. `location` in the outputs is where the objects really are."""

    actual: str | None = None                   # ephemeral, target, split or none
    objects: dict[str, int] | None = None       # per kind, where they are (after an update or refresh)
    digest: str | None = None                   # changes only when the set of objects changes
    pending: PendingMove | None = None
    preflight: list[Finding] = field(default_factory=list)
    providers: dict[str, list[ProviderEntry]] = field(default_factory=dict)
    last_move: dict[str, Any] | None = None

    @classmethod
    def prop_keys(cls) -> list[str]:
        return [prop_key(f.name) for f in fields(cls)]

    def to_props(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "actual": self.actual, "objects": self.objects, "digest": self.digest,
            "pending": ({"from": self.pending.source, "to": self.pending.target, "objects": self.pending.objects,
                         **({"finish": self.pending.finish} if self.pending.finish else {})}
                        if self.pending else {}),
            "preflight": [f.to_dict() for f in self.preflight],
            "providers": {side: [{"name": p.name, "type": p.type, "version": p.version} for p in entries]
                          for side, entries in self.providers.items()},
        }
        if self.last_move is not None:
            out["lastMove"] = self.last_move
        return out

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> LocationState:
        return cls(**{name: cls.read(props, name) for name in _STATE_READERS})

    @classmethod
    def read(cls, props: Mapping[str, Any], name: str) -> Any:
        """One field only (see LocationInputs.read)."""
        return _STATE_READERS[name](props.get(prop_key(name)))


def _pending(v: Any) -> PendingMove | None:
    return (PendingMove(str(v["from"]), str(v["to"]), dict(v.get("objects") or {}), dict(v.get("finish") or {}))
            if v else None)


def _providers(v: Any) -> dict[str, list[ProviderEntry]]:
    return {side: [ProviderEntry(str(p["name"]), str(p["type"]), str(p["version"])) for p in entries or []]
            for side, entries in (v or {}).items()}


_STATE_READERS: dict[str, Callable[[Any], Any]] = {
    "actual": lambda v: v,
    "objects": lambda v: v,
    "digest": lambda v: v,
    "pending": _pending,
    "preflight": lambda v: [Finding.from_dict(f) for f in v or []],
    "providers": _providers,
    "last_move": lambda v: v,
}

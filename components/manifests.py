"""The provider manifests a management cluster needs, rendered from the pinned provider modules.

What `clusterctl init` (and metal3-dev-env for BMO) would install, as plain objects: the CRDs of each
provider labelled as clusterctl labels them, its namespace, RBAC, controller Deployment and Service, and
clusterctl's `Provider` inventory object. No Pulumi import: the lab installs the same CRDs into local
clusters, and tests check the rendering without an engine.

clusterctl's variables (`${VAR:=default}` in the renders) are left in by `rendered()` and `controllers()`
unless a lookup is given (components/variables.py): the lab resolves them itself when it starts a
process, the stack passes its `providers.variables` and the environment. `components_file` makes a
release components file what `clusterctl init` installs from it (variables, labels, namespace, inventory).

Left out on purpose, with the reason:
- cert-manager itself and the release's `Issuer`/`Certificate`: the stack issues each release Certificate
  itself (components/webhook_cert.py, the documented equivalent) and declares the Secret it names.
- the admission webhook configurations and the CRDs' conversion webhooks are not in `controllers()` /
  `crds()` (which are also what the lab installs for tests that run no managers): ProviderInstall and
  Ironic add them from `webhook_configurations()` / `conversions()`, with the caBundle of the stack's
  certificate, once the controller that serves them is declared (components/webhooks.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.variables import Lookup, substitute
from metal3_pivot import CLUSTERCTL_LABEL, INVENTORY, MOVE_HIERARCHY_LABEL, MOVE_LABEL

ROOT = Path(__file__).resolve().parent.parent
MODULES_FILE = ROOT / ".tools" / "crd-modules.json"
RENDER_CACHE = ROOT / ".tools" / "manifests"

# clusterctl's labels, as the engine reads them (short names kept for the lab and the tests)
CLUSTERCTL, MOVE, MOVE_HIERARCHY = CLUSTERCTL_LABEL, MOVE_LABEL, MOVE_HIERARCHY_LABEL
PROVIDER_LABEL = "cluster.x-k8s.io/provider"
INVENTORY_API = INVENTORY.api_version

KEEP_KINDS = {"Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
              "ConfigMap", "Service", "Deployment"}

Obj = dict[str, Any]
#: libyaml's parser where PyYAML has it (its wheels do): the same safe loading, about ten times faster,
#: and these files are parsed on every `pulumi preview` (several MB of CRD schemas)
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load(text: str) -> Any:
    return yaml.load(text, Loader=LOADER)          # a safe loader: libyaml's SafeLoader


def _load_all(text: str) -> list[Any]:
    return [d for d in yaml.load_all(text, Loader=LOADER) if d]


_PARSED: dict[str, str] = {}
#: the parsed documents of every manifest text, as JSON, by the text's SHA-256: shared by every run on the
#: machine (the texts are pinned releases, so entries never go stale; a changed text is a new key)
PARSED_CACHE = RENDER_CACHE / "parsed"


def _write_whole(path: Path, text: str) -> None:
    """Writes a cache file whole or not at all (a temporary file renamed over it). Why: the caches are
    keyed by content or version and never written again once present, so a process killed in the middle
    of a plain write would leave a truncated manifest that every later run installs; runs side by side
    share the folder, hence the pid in the temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _docs_of(text: str) -> list[Any]:
    """The YAML documents of a text, parsed once per machine. Why: parsing the releases' YAML (several MB of
    CRD schemas, even with libyaml) was a third of the Python program's time in every `pulumi preview`
    (issue 17). The program asks for the same manifests several times (ownership check, ProviderInstall,
    Ironic) and callers change what they get, so each call gets fresh objects, from JSON (a C parser,
    ~20x faster than even libyaml)."""
    key = hashlib.sha256(text.encode()).hexdigest()
    if key not in _PARSED:
        cached = PARSED_CACHE / f"{key}.json"
        try:
            _PARSED[key] = cached.read_text()
        except OSError:
            _PARSED[key] = json.dumps(_load_all(text), separators=(",", ":"))
            with contextlib.suppress(OSError):   # a read-only checkout: parse again next time, nothing worse
                _write_whole(cached, _PARSED[key])
    docs: list[Any] = json.loads(_PARSED[key])
    return docs


def _docs(path: Path) -> list[Any]:
    return _docs_of(path.read_text())


class ManifestError(Exception):
    """The pinned provider modules are missing or a rendering failed; the message says what to run."""


@dataclass(frozen=True)
class ProviderSpec:
    """One provider: where its CRDs and kustomize folder are and how its inventory object reads."""

    name: str                  # inventory object name, e.g. infrastructure-metal3
    provider_name: str         # e.g. metal3
    type: str                  # CoreProvider, InfrastructureProvider, ... ("" = not a clusterctl provider)
    namespace: str
    module: str                # key in tools/versions.toml [crds]
    crd_dir: str               # CRD folder (with bases/) inside the module
    default_dir: str           # kustomize folder rendering the controller
    crd_labels: dict[str, dict[str, str]] = field(default_factory=dict)   # extra labels per CRD name


PROVIDERS = (
    ProviderSpec("cluster-api", "cluster-api", "CoreProvider", "capi-system", "cluster-api", "core/config/crd",
                 "core/config/default"),
    ProviderSpec("bootstrap-kubeadm", "kubeadm", "BootstrapProvider", "capi-kubeadm-bootstrap-system",
                 "cluster-api", "bootstrap/kubeadm/config/crd", "bootstrap/kubeadm/config/default"),
    ProviderSpec("control-plane-kubeadm", "kubeadm", "ControlPlaneProvider", "capi-kubeadm-control-plane-system",
                 "cluster-api", "controlplane/kubeadm/config/crd", "controlplane/kubeadm/config/default"),
    ProviderSpec("infrastructure-metal3", "metal3", "InfrastructureProvider", "capm3-system", "capm3",
                 "config/crd", "config/default"),
    ProviderSpec("ipam-metal3", "metal3", "IPAMProvider", "metal3-ipam-system", "ipam", "config/crd",
                 "config/default"),
)

#: BMO is installed by metal3-dev-env, not clusterctl: its CRDs get labels by hand, and only these two
BMO = ProviderSpec("baremetal-operator", "baremetal-operator", "", "baremetal-operator-system", "bmo",
                   "config/base/crds", "config/default", crd_labels={
                       "baremetalhosts.metal3.io": {CLUSTERCTL: "", MOVE: "", MOVE_HIERARCHY: ""},
                       "hardwaredata.metal3.io": {CLUSTERCTL: "", MOVE: ""}})


def module_dirs() -> dict[str, dict[str, str]]:
    """{key: {"dir": ..., "version": ...}} as tools/bootstrap.py recorded them."""
    if not MODULES_FILE.exists():
        raise ManifestError(f"{MODULES_FILE} is missing: run `python3 tools/bootstrap.py` (it downloads the "
                            "pinned provider modules whose manifests are installed)")
    data: dict[str, dict[str, str]] = json.loads(MODULES_FILE.read_text())
    return data


def kustomize_labels(folder: Path) -> dict[str, str]:
    """The `labels` / `commonLabels` pairs of a CRD folder's kustomization (e.g. CAPM3's contract labels)."""
    kfile = folder / "kustomization.yaml"
    if not kfile.exists():
        return {}
    k = _load(kfile.read_text()) or {}
    labels: dict[str, str] = dict(k.get("commonLabels") or {})
    for entry in k.get("labels") or []:
        labels.update(entry.get("pairs") or {})
    return labels


def _read_crds(folder: Path) -> list[Obj]:
    return [doc for p in sorted((folder / "bases").glob("*.yaml")) for doc in _docs(p)]


def crds(spec: ProviderSpec) -> list[Obj]:
    """The provider's CRDs, labelled as `clusterctl init` (or metal3-dev-env, for BMO) leaves them."""
    mods = module_dirs()
    folder = Path(mods[spec.module]["dir"]) / spec.crd_dir
    common = {CLUSTERCTL: "", PROVIDER_LABEL: spec.name, **kustomize_labels(folder)} if spec.type else {}
    out = []
    for crd in _read_crds(folder):
        labels = {**(crd["metadata"].get("labels") or {}), **common, **spec.crd_labels.get(crd["metadata"]["name"], {})}
        if labels:   # an empty map would show as a perpetual diff
            crd["metadata"]["labels"] = labels
        out.append(crd)
    if spec.type == "CoreProvider":      # clusterctl's own inventory CRDs come with the core provider
        for crd in _read_crds(Path(mods[spec.module]["dir"]) / "cmd/clusterctl/config/crd"):
            crd["metadata"].setdefault("labels", {}).update({CLUSTERCTL: "", f"{CLUSTERCTL}/core": "inventory"})
            out.append(crd)
    return out


def inventory(spec: ProviderSpec) -> Obj | None:
    if not spec.type:
        return None
    return {"apiVersion": INVENTORY_API, "kind": "Provider",
            "metadata": {"name": spec.name, "namespace": spec.namespace,
                         "labels": {CLUSTERCTL: "", PROVIDER_LABEL: spec.name}},
            "providerName": spec.provider_name, "type": spec.type, "version": version(spec)}


def version(spec: ProviderSpec) -> str:
    return module_dirs()[spec.module]["version"]


def rendered(spec: ProviderSpec, variables: Lookup | None = None) -> list[Obj]:
    """Every object of the provider's release config (`kubectl kustomize` of its default folder), as the
    release ships it: webhook configurations, cert-manager objects and CRD patches included. Cached per
    version in .tools/manifests. With `variables`, clusterctl's `${VAR:=default}` are substituted in the
    text first, as `clusterctl init` does (components/variables.py); without, they are left in."""
    cache = RENDER_CACHE / f"{spec.name}-{version(spec)}.yaml"
    if not cache.exists():
        folder = Path(module_dirs()[spec.module]["dir"]) / spec.default_dir
        try:
            out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise ManifestError("kubectl is not on PATH: run `python3 tools/bootstrap.py`") from None
        if out.returncode != 0:
            raise ManifestError(f"rendering {spec.name} from {folder} failed: {out.stderr.strip()[:500]}")
        _write_whole(cache, out.stdout)
    if variables is None:
        return _docs(cache)
    return _docs_of(substitute(cache.read_text(), variables, where=f"{spec.name} {version(spec)}"))


def controllers(spec: ProviderSpec, variables: Lookup | None = None) -> list[Obj]:
    """Namespace, RBAC, Service and Deployment of the provider's controller (`variables`: see rendered)."""
    objs = []
    for doc in rendered(spec, variables):
        if doc.get("kind") not in KEEP_KINDS:
            continue
        labels = doc["metadata"].setdefault("labels", {})
        if spec.type:
            labels.update({CLUSTERCTL: "", PROVIDER_LABEL: spec.name})
        objs.append(doc)
    return objs


#: clusterctl's provider types and the prefix each gives the provider's label and inventory name
PROVIDER_TYPES = {"CoreProvider": "", "BootstrapProvider": "bootstrap-", "ControlPlaneProvider": "control-plane-",
                  "InfrastructureProvider": "infrastructure-", "IPAMProvider": "ipam-",
                  "RuntimeExtensionProvider": "runtime-extension-", "AddonProvider": "addon-"}
#: kinds clusterctl treats as cluster-scoped (every other kind gets the provider's namespace)
CLUSTER_SCOPED = {"Namespace", "Node", "PersistentVolume", "PodSecurityPolicy", "CertificateSigningRequest",
                  "ClusterRoleBinding", "ClusterRole", "VolumeAttachment", "StorageClass", "CSIDriver", "CSINode",
                  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "CustomResourceDefinition",
                  "PriorityClass", "RuntimeClass"}
CORE_LABEL = f"{CLUSTERCTL}/core"


def inventory_crds() -> list[Obj]:
    """clusterctl's own inventory CRD (`providers.clusterctl.cluster.x-k8s.io`), labelled as `clusterctl init`
    installs it before any provider: a release components file does not carry it (clusterctl embeds it)."""
    out = [crd for crd in _read_crds(Path(module_dirs()["cluster-api"]["dir"]) / "cmd/clusterctl/config/crd")
           if crd["metadata"]["name"] == f"providers.{INVENTORY.group}"]     # not `metadata`: no cluster holds one
    for crd in out:
        crd["metadata"]["labels"] = {**(crd["metadata"].get("labels") or {}), CLUSTERCTL: "", CORE_LABEL: "inventory"}
    return out


def manifest_label(provider_name: str, provider_type: str) -> str:
    """clusterctl's name for a provider (`cluster.x-k8s.io/provider` label, inventory name): e.g.
    infrastructure-metal3; the core provider keeps its own name."""
    return PROVIDER_TYPES[provider_type] + provider_name


def components_file(path: Path, provider_name: str, provider_type: str, provider_version: str,
                    variables: Lookup, where: str = "providers.source") -> list[Obj]:
    """What `clusterctl init` installs from a release components file (e.g. infrastructure-components.yaml):
    its variables substituted (every missing one an error before anything is declared), the objects
    parsed, the file's one Namespace as the provider's namespace (namespaced objects without one get
    it), clusterctl's labels on every object, and its `Provider` inventory object. What clusterctl knows
    from its provider list (name, type, version) comes from the stack config; image overrides and
    `--target-namespace` (clusterctl config features) are not offered."""
    label = manifest_label(provider_name, provider_type)
    where = f"{where} ({path})"
    try:
        text = path.read_text()
    except OSError as err:
        raise ManifestError(f"{where}: {err.strerror}") from None
    text = substitute(text, variables, where=where)
    try:
        objs: list[Obj] = _load_all(text)
    except yaml.YAMLError as err:
        raise ManifestError(f"{where}: not YAML after clusterctl's variable substitution: {err}") from None
    if not all(isinstance(o, dict) and o.get("kind") and isinstance(o.get("metadata"), dict) for o in objs):
        raise ManifestError(f"{where}: every document must be a Kubernetes object (kind, metadata)")
    namespaces = [o["metadata"].get("name") for o in objs if o["kind"] == "Namespace"]
    if len(namespaces) != 1:
        raise ManifestError(f"{where}: a provider's components file holds exactly one Namespace (where "
                            f"clusterctl installs the provider and its inventory); found {len(namespaces)}")
    namespace = str(namespaces[0])
    common = {CLUSTERCTL: "", PROVIDER_LABEL: label}
    for o in objs:
        md = o["metadata"]
        if o["kind"] not in CLUSTER_SCOPED and not md.get("namespace"):
            md["namespace"] = namespace
        md["labels"] = {**(md.get("labels") or {}), **common}
    objs.append({"apiVersion": INVENTORY_API, "kind": "Provider",
                 "metadata": {"name": label, "namespace": namespace,
                              "labels": {**common, CORE_LABEL: "inventory"}},
                 "providerName": provider_name, "type": provider_type, "version": provider_version})
    return objs


def all_specs() -> tuple[ProviderSpec, ...]:
    return (*PROVIDERS, BMO)


# ---------------------------------------------------------------------------------------------- webhooks
#: the annotation that asks cert-manager's CA injector for a Certificate's CA ("<namespace>/<certificate>")
INJECT_CA_FROM = "cert-manager.io/inject-ca-from"
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


#: what cert-manager does for a release and the stack does itself (components/webhooks.py)
CERT_MANAGER_KINDS = ("Certificate", "Issuer", "ClusterIssuer")


def certificates(spec: ProviderSpec) -> list[Obj]:
    """The release's cert-manager `Certificate`s (the webhook serving certificate the Deployment mounts)."""
    return certificates_of(rendered(spec))


def certificates_of(release: list[Obj]) -> list[Obj]:
    return [d for d in release if d.get("kind") == "Certificate"]


def webhook_configurations(spec: ProviderSpec) -> list[Obj]:
    """The release's admission webhook configurations, `service:` client configs and all."""
    return webhook_configurations_of(rendered(spec))


def webhook_configurations_of(release: list[Obj]) -> list[Obj]:
    return [d for d in release if d.get("kind") in WEBHOOK_KINDS]


def conversions(spec: ProviderSpec) -> dict[str, tuple[str, Obj]]:
    """{CRD name: (the Certificate its caBundle comes from, `spec.conversion`)} for the release's CRDs that
    kustomize renders with a conversion webhook (the `bases` CRDs carry none)."""
    return conversions_of(rendered(spec))


def conversions_of(release: list[Obj]) -> dict[str, tuple[str, Obj]]:
    out = {}
    for d in release:
        if d.get("kind") != "CustomResourceDefinition":
            continue
        conversion = (d.get("spec") or {}).get("conversion") or {}
        if conversion.get("strategy") == "Webhook":
            out[d["metadata"]["name"]] = ((d["metadata"].get("annotations") or {}).get(INJECT_CA_FROM, ""), conversion)
    return out

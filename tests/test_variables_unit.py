"""clusterctl's variable substitution (components/variables.py), a components file as `clusterctl init`
installs it (components/manifests.components_file), and `providers.source` / `providers.variables`.

The expected values are what `clusterctl generate yaml` (v1.14.2, the binary tools/bootstrap.py builds)
prints for the same text; tests/test_variables_clusterctl.py checks the same cases against the binary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components import manifests
from components.config import ConfigError, ProvidersConfig, parse
from components.variables import MissingVariables, SubstitutionSyntaxError, lookup, substitute, variables
from tests.kit.variable_cases import BAD, CASES, EMPTY, MISSING, SET, UNSET

pytestmark = pytest.mark.unit


def _run(text: str, env: dict[str, str]) -> object:
    try:
        return yaml.safe_load(substitute(f"a: {text}\n", lookup({}, env)))["a"]
    except MissingVariables:
        return MISSING
    except SubstitutionSyntaxError:
        return BAD


@pytest.mark.parametrize(("text", "unset", "set_", "empty"), CASES, ids=[c[0] for c in CASES])
def test_every_form_substitutes_as_clusterctl_does(text: str, unset: object, set_: object, empty: object) -> None:
    assert _run(text, UNSET) == unset
    assert _run(text, SET) == set_
    assert _run(text, EMPTY) == empty


def test_every_missing_variable_is_named_with_how_to_set_it_and_nothing_is_substituted() -> None:
    text = "a: ${ZED}\nb: ${ALPHA}\nc: ${SET_ONE}\nd: ${HAS:=default}\n"
    with pytest.raises(MissingVariables) as err:
        substitute(text, lookup({"SET_ONE": "x"}, {}), where="providers.source[0] (f.yaml)")
    assert err.value.names == ["ALPHA", "ZED"]
    message = str(err.value)
    assert message.startswith("providers.source[0] (f.yaml): clusterctl variable(s) with no value and no "
                              "default: ALPHA, ZED.")
    assert "pulumi config set --path 'providers.variables.ALPHA' VALUE" in message
    assert "export ALPHA=VALUE ZED=VALUE" in message
    assert "nothing was installed" in message


def test_syntax_errors_name_the_line_and_the_expression() -> None:
    with pytest.raises(SubstitutionSyntaxError, match=r"line 2: missing closing brace \(clusterctl has no `-` "
                       r"form; write \$\{B:-\.\.\.\}\) in '\$\{B-x\}'"):
        substitute("a: 1\nb: ${B-x}\n", lookup({}, {}))
    for expr, what in [("${#A}", "length"), ("${A:1:2}", "substring"), ("${A,}", "case"), ("${A^^}", "case"),
                       ("${A/x/y}", "replace"), ("${A%x}", "suffix"), ("${A#x}", "prefix")]:
        with pytest.raises(SubstitutionSyntaxError, match=f"{what}.*not supported"):
            substitute(expr, lookup({}, {"A": "v"}))


def test_variables_lists_defaults_as_clusterctl_describes_them() -> None:
    text = "${A:=d} ${B} ${C:=x${D}y} ${A} ${E:=}"
    assert variables(text) == {"A": "d", "B": None, "C": "x${D}y", "E": None}


def test_values_come_from_the_stack_config_then_the_environment() -> None:
    get = lookup({"FROM_CONFIG": "c", "both": "config wins"}, {"BOTH": "env", "FROM_ENV": "e", "EMPTY": ""})
    assert get("FROM_CONFIG") == "c"
    assert get("BOTH") == "config wins"          # config keys compared ignoring case
    assert get("from_env") == "e"                # the environment by the upper-case name, as viper reads it
    assert get("EMPTY") == ""                    # set to empty is a value
    assert get("NOWHERE") is None


# ---------------------------------------------------------------------------------------------- config

BASE = {"location": "target", "ephemeral": {"kubeconfigPath": "a"}, "target": {"kubeconfigPath": "b"}}
CAPM3 = {"path": "infrastructure-components.yaml", "name": "metal3", "type": "InfrastructureProvider",
         "version": "v1.13.2"}


def test_a_components_file_is_listed_with_what_clusterctl_knows_about_it() -> None:
    cfg = parse({**BASE, "providers": {"source": [CAPM3], "variables": {"CAPM3_FAST_TRACK": True, "PORT": 8443}}})
    assert cfg.providers.source is not None
    assert cfg.providers.source[0].label == "infrastructure-metal3"
    assert cfg.providers.variables == {"CAPM3_FAST_TRACK": "true", "PORT": "8443"}
    assert ProvidersConfig().source is None and ProvidersConfig().variables == {}       # `modules`
    assert parse({**BASE, "providers": {"source": "modules"}}).providers.source is None


@pytest.mark.parametrize(("providers", "message"), [
    ({"source": "infrastructure-components.yaml"},
     "metal3-pivot:providers.source: Value error, a components file alone does not say which provider it installs"),
    ({"source": [{**CAPM3, "type": "Infrastructure"}]}, "metal3-pivot:providers.source.0.type: Input should be"),
    ({"source": [{**CAPM3, "version": "1.13"}]}, "metal3-pivot:providers.source.0.version: String should match"),
    ({"source": [{k: v for k, v in CAPM3.items() if k != "name"}]}, "metal3-pivot:providers.source.0.name: Field "
                                                                    "required"),
    ({"source": [CAPM3, {**CAPM3, "path": "other.yaml"}]}, "provider(s) listed twice: infrastructure-metal3"),
    ({"source": []}, "an empty list installs nothing"),
    ({"variables": {"A-B": "x"}}, "variable name 'A-B': letters, digits and _ only"),
    ({"variables": {"abc": "x", "ABC": "y"}}, "variable 'ABC' is set twice"),
])
def test_providers_config_errors_say_what_to_write(providers: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({**BASE, "providers": providers})
    assert message in str(err.value), str(err.value)


# ---------------------------------------------------------------------------------------------- files

FILE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: demo-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: demo}
data:
  FAST: ${DEMO_FAST:='false'}
  PORT: ${DEMO_PORT}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: demo-manager
rules: []
"""


def test_a_components_file_becomes_what_clusterctl_init_installs(tmp_path: Path) -> None:
    path = tmp_path / "infrastructure-components.yaml"
    path.write_text(FILE)
    objs = manifests.components_file(path, "demo", "InfrastructureProvider", "v0.1.0",
                                     lookup({"DEMO_PORT": "9443"}, {}))
    by_kind = {o["kind"]: o for o in objs}
    assert by_kind["ConfigMap"]["data"] == {"FAST": "false", "PORT": 9443}
    assert by_kind["ConfigMap"]["metadata"]["namespace"] == "demo-system"     # namespaced: the file's namespace
    assert "namespace" not in by_kind["ClusterRole"]["metadata"]
    for o in objs:
        assert {"clusterctl.cluster.x-k8s.io": "", "cluster.x-k8s.io/provider": "infrastructure-demo"}.items() <= \
            o["metadata"]["labels"].items(), o
    assert by_kind["ConfigMap"]["metadata"]["labels"]["app"] == "demo"
    assert by_kind["Provider"] == {
        "apiVersion": "clusterctl.cluster.x-k8s.io/v1alpha3", "kind": "Provider",
        "metadata": {"name": "infrastructure-demo", "namespace": "demo-system",
                     "labels": {"clusterctl.cluster.x-k8s.io": "", "cluster.x-k8s.io/provider": "infrastructure-demo",
                                "clusterctl.cluster.x-k8s.io/core": "inventory"}},
        "providerName": "demo", "type": "InfrastructureProvider", "version": "v0.1.0"}


def test_a_components_file_with_a_missing_variable_or_no_namespace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(FILE)
    with pytest.raises(MissingVariables, match=r"providers.source\[2\] \(.*c.yaml\): .*: DEMO_PORT\."):
        manifests.components_file(path, "demo", "InfrastructureProvider", "v0.1.0", lookup({}, {}),
                                  where="providers.source[2]")
    path.write_text(FILE.split("---\n", 1)[1])
    with pytest.raises(manifests.ManifestError, match=r"exactly one Namespace .* found 0"):
        manifests.components_file(path, "demo", "InfrastructureProvider", "v0.1.0", lookup({"DEMO_PORT": "1"}, {}))
    with pytest.raises(manifests.ManifestError, match="No such file"):
        manifests.components_file(tmp_path / "nope.yaml", "demo", "CoreProvider", "v0.1.0", lookup({}, {}))


def test_the_stack_declares_no_clusterctl_variable_and_takes_the_configured_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 3 of issue 16: what ProviderInstall and Ironic declare carries no `${` (the lab's runner no longer
    hides it), and a value from the stack config or the environment reaches the Deployment."""
    from components.config import IronicConfig
    from components.ironic import ironic_objects
    from components.providers import objects_for

    monkeypatch.delenv("CAPI_DIAGNOSTICS_ADDRESS", raising=False)
    monkeypatch.setenv("IPAM_DIAGNOSTICS_ADDRESS", ":9445")
    groups = objects_for(ProvidersConfig(variables={"EXP_MACHINE_POOL": "false"}), Path("."))
    declared = [o for objs in groups.values() for o in objs] + ironic_objects(IronicConfig())
    assert "${" not in json.dumps(declared)
    args = {o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0].get("args", [])
            for o in declared if o["kind"] == "Deployment"}
    assert "--diagnostics-address=:8443" in args["capi-controller-manager"]
    assert any(a.startswith("--feature-gates=MachinePool=false,") for a in args["capi-controller-manager"])
    assert "--diagnostics-address=:9445" in args["ipam-controller-manager"]
    fast_track = next(o for o in declared if o["kind"] == "ConfigMap" and "CAPM3_FAST_TRACK" in (o.get("data") or {}))
    assert fast_track["data"]["CAPM3_FAST_TRACK"] == "false"        # `${CAPM3_FAST_TRACK:='false'}`, YAML-quoted
    # the module source is otherwise unchanged: same groups, inventory as before
    assert set(groups) == {"cluster-api", "bootstrap-kubeadm", "control-plane-kubeadm", "infrastructure-metal3",
                           "ipam-metal3", "baremetal-operator"}


def test_a_files_source_installs_each_file_and_bmo_crds_from_the_module(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from components.providers import objects_for

    (tmp_path / "infrastructure-components.yaml").write_text(FILE)
    monkeypatch.setenv("DEMO_FAST", "true")                    # the environment fills what the config leaves out
    config = ProvidersConfig.model_validate({
        "source": [{"path": "infrastructure-components.yaml", "name": "demo", "type": "InfrastructureProvider",
                    "version": "v0.1.0"}],          # relative: to the project folder (root)
        "variables": {"DEMO_PORT": "9443"}, "adopt": True})
    groups = objects_for(config, tmp_path)
    assert set(groups) == {"infrastructure-demo", "baremetal-operator", "clusterctl"}
    assert [(o["metadata"]["name"], o["metadata"]["labels"]) for o in groups["clusterctl"]] == [
        ("providers.clusterctl.cluster.x-k8s.io", {"clusterctl.cluster.x-k8s.io": "",
                                                   "clusterctl.cluster.x-k8s.io/core": "inventory"})]
    settings = next(o for o in groups["infrastructure-demo"] if o["kind"] == "ConfigMap")
    assert settings["data"] == {"FAST": True, "PORT": 9443}
    assert settings["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}       # adopt applies too
    assert {o["metadata"]["name"] for o in groups["baremetal-operator"] if o["kind"] == "CustomResourceDefinition"} \
        >= {"baremetalhosts.metal3.io", "hardwaredata.metal3.io"}
    assert not any(o["kind"] in ("Deployment", "Provider") for o in groups["baremetal-operator"])

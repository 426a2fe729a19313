"""The Pulumi program: validate the stack config, then declare the components. Nothing else here."""

from __future__ import annotations

from pathlib import Path

import pulumi

from components import objects as objects_module
from components import ownership
from components.clusters import EphemeralCluster, TargetCluster
from components.config import ConfigError, load, probe
from components.ironic import Ironic
from components.manifests import ManifestError
from components.move_preflight import MovePreflight, start_reading
from components.object_location import ObjectLocation
from components.objects import deleted_with
from components.providers import ProviderInstall
from components.variables import VariableError

try:
    config = load(pulumi.Config(), pulumi.runtime.is_config_secret, pulumi.runtime.get_config_env())
except ConfigError as err:
    # RunError: the CLI shows the message alone, without the program's traceback
    raise pulumi.RunError(str(err)) from None

root = Path(__file__).resolve().parent
objects_module.SKIP_AWAIT.update(value=config.skip_await, deployments=config.await_deployments)
try:
    ephemeral_kubeconfig = config.ephemeral.kubeconfig_text(root, "ephemeral")
    target_kubeconfig = config.target.kubeconfig_text(root, "target")
    # what ObjectLocation and its pre-flight both take
    declared = dict(location=config.location, ephemeral_kubeconfig=ephemeral_kubeconfig,
                    target_kubeconfig=target_kubeconfig, namespaces=config.namespaces,
                    ephemeral_context=config.ephemeral.context, target_context=config.target.context,
                    timeout=config.move_timeout, concurrency=config.concurrency,
                    target_providers_managed=config.providers.install)
    # the gate's reading of both clusters starts now, beside the rest of the program and the plugins' start
    reading = start_reading(**declared)
    probe("ephemeral", ephemeral_kubeconfig, config.ephemeral.context)
    probe("target", target_kubeconfig, config.target.context)
    # controllers that run there already, created by something else: the operator chooses, nothing is adopted
    taken = ownership.find({"ephemeral": (ephemeral_kubeconfig, config.ephemeral.context),
                            "target": (target_kubeconfig, config.target.context)},
                           ownership.declared_deployments(config, root))
except (ConfigError, ManifestError, VariableError, ownership.OwnershipError) as err:
    raise pulumi.RunError(str(err)) from None
if taken:
    raise pulumi.RunError(ownership.refusal(taken))
ephemeral = EphemeralCluster("ephemeral", ephemeral_kubeconfig, config.ephemeral.context)
target = TargetCluster("target", target_kubeconfig, config.target.context)

# the pre-flight first: when it refuses the declared move, nothing below is registered, so nothing changes
# (the SDK registers a resource only after its dependencies); the installs and Ironic are kept by a destroy
preflight = MovePreflight("preflight", reading=reading, **declared)
guarded = pulumi.ResourceOptions(depends_on=[preflight], transforms=[deleted_with(preflight)])

# move.yml: `clusterctl init` the target, install BMO's CRDs there (labelled) before anything moves;
# move.yml / move_back.yml: Ironic (+ BMO) leaves the source and starts on the destination before the move
installs: list[pulumi.Resource] = []
movers_wait_for: list[pulumi.Resource] = [preflight]
try:
    if config.providers.install:
        installs.append(ProviderInstall("target-providers", target, config.providers, root, opts=guarded))
    movers_wait_for += installs
    if config.ironic.install:
        movers_wait_for.append(Ironic("ironic", (ephemeral if config.location == "ephemeral" else target).provider,
                                      config.ironic, config.location, opts=pulumi.ResourceOptions.merge(
                                          guarded, pulumi.ResourceOptions(depends_on=[preflight, *installs]))))
except (ManifestError, VariableError) as err:
    # a components file that does not parse, a clusterctl variable with no value, pinned modules missing:
    # the message says what to do
    raise pulumi.RunError(str(err)) from None

objects = ObjectLocation("objects", **declared,
                         opts=pulumi.ResourceOptions(depends_on=movers_wait_for, protect=config.protect))
pulumi.export("location", objects.location)
pulumi.export("objects", objects.objects)
pulumi.export("digest", objects.digest)
pulumi.export("ironic", config.location if config.ironic.install else "managed elsewhere")

"""`make demo`: the main job. metal3-dev-env's CI workflow on the live management plane, pivoting with
`pulumi up`, with visible progress.

1. dev-env: the rack's fake BMCs, the ephemeral management cluster with the CAPI, kubeadm, CAPM3, IPAM
   and BMO controllers and Ironic running (lab/plane/agent.py runs what the cluster declares), the
   BareMetalHosts registered to `available` through Ironic;
2. the target cluster provisioned through CAPI -> CAPM3 -> BMO -> Ironic on two of the machines (one
   KubeadmControlPlane machine, one worker); its control plane "boots" from the user data
   (lab/machines/node_agent.py) and is the target management cluster;
3. `pulumi up`, location=ephemeral: the providers installed on the target (they start there);
4. location=target: `pulumi preview --diff` (policy pack), then `pulumi up`: Ironic leaves the
   ephemeral cluster and starts on the target, the objects move;
5. the step-5 checks of metal3-dev-env against the target's controllers and Ironic, and nothing
   re-provisioned or power-cycled (the BMCs' own record);
6. location=ephemeral: the move back, the same checks on the ephemeral side; a `--to-directory` backup
   and the secrets audit (state, logs, output and backup searched for credentials);
7. de-provision: the workload cluster deleted, its hosts back to `available` through Ironic.

The stack is driven through Pulumi's Automation API (`pulumi.automation`: a LocalWorkspace on this
project), which runs the same `pulumi` CLI underneath; each step prints the command a user would type for
it, and the CLI's output streams as it comes. The tests keep the plain CLI as users type it
(tests/kit/pulumi_cli.py). State goes to a file:// backend in .state/; the passphrase defaults to the demo
value the committed local stack was created with (it protects nothing but these throw-away clusters).
Everything runs under .lab/ and keeps running afterwards; `make clusters-down` stops it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from pulumi import automation as auto

from components import cache_dir, file_backend_url
from lab import audit
from lab.cluster import LocalCluster, free_port
from lab.data import crds, live_metadata
from lab.data.topology import LiveTopology, live_objects
from lab.plane.checks import Check, IronicWatch
from lab.workflow import Lab, WorkflowError
from metal3_pivot import Kube, load_kubeconfig

ROOT = Path(__file__).resolve().parent.parent
STACK = "local"
LAB = ROOT / ".lab"
TRANSCRIPT = LAB / "demo-output.log"


def step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def progress(msg: str) -> None:
    print(f"    {time.strftime('%H:%M:%S')} {msg}", flush=True)


def pulumi_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PULUMI_BACKEND_URL", file_backend_url(ROOT / ".state"))
    env.setdefault("PULUMI_CONFIG_PASSPHRASE", "metal3-pivot-local-demo")
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return env


def run(*cmd: str, check: bool = True) -> int:
    """Run a command, its output shown and kept in TRANSCRIPT (which the secrets audit searches)."""
    print(f"$ {' '.join(cmd)}", flush=True)
    with subprocess.Popen(list(cmd), env=pulumi_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc, TRANSCRIPT.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            out.write(line)
    rc = proc.returncode
    if check and rc != 0:
        raise SystemExit(f"demo: `{' '.join(cmd)}` failed (exit {rc})")
    return rc


def echo(line: str, stream: TextIO = sys.stdout) -> None:
    """The CLI's output, shown as it comes and kept in TRANSCRIPT (which the secrets audit searches)."""
    line = line if line.endswith("\n") else line + "\n"
    stream.write(line)
    stream.flush()
    with TRANSCRIPT.open("a") as out:
        out.write(line)


def echo_err(line: str) -> None:
    echo(line, sys.stderr)


def pulumi_stack() -> auto.Stack:
    """The `local` stack of this project (created on first use), through a LocalWorkspace whose commands
    get the demo's backend and passphrase."""
    keys = ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_SKIP_UPDATE_CHECK")
    env = {k: v for k, v in pulumi_env().items() if k in keys}
    return auto.create_or_select_stack(STACK, work_dir=str(ROOT), opts=auto.LocalWorkspaceOptions(env_vars=env))


def pulumi(stack: auto.Stack, typed: str, op: str, **kwargs: object) -> object:
    """One Automation API operation; `typed` is the command a user would type for it, printed first."""
    echo(f"$ {typed}")
    try:
        return getattr(stack, op)(on_output=echo, on_error=echo_err, color="never", **kwargs)
    except auto.errors.CommandError:
        raise SystemExit(f"demo: `{typed}` failed; its output is above") from None


def set_location(stack: auto.Stack, location: str) -> None:
    echo(f"$ pulumi config set location {location}")
    stack.set_config("location", auto.ConfigValue(location))


def show(checks: list[Check], seconds: float, where: str) -> bool:
    for c in checks:
        print(c, flush=True)
    ok = all(c.ok for c in checks)
    print(f"    {'all checks passed' if ok else 'CHECKS FAILED'} on {where} ({seconds:.1f} s after `pulumi up` "
          "returned)", flush=True)
    return ok


def relocate(lab: Lab, stack: auto.Stack, what: str, location: str, dest: LocalCluster) -> float:
    """Set `location`, show the preview a pull request would show (policy pack included), `pulumi up`,
    then wait for the destination's controllers: returns the seconds from `pulumi up` to reconciled."""
    step(f"{what}: location={location} -- what would happen")
    set_location(stack, location)
    pulumi(stack, "pulumi preview --diff --policy-pack policies", "preview", diff=True,
           policy_packs=[str(ROOT / "policies")])
    step(f"{what}: pulumi up")
    mark = lab.checkpoint()
    t0 = time.monotonic()
    with IronicWatch(lab.base) as watch:      # Ironic's handover: never two at once
        pulumi(stack, "pulumi up --yes --skip-preview", "up")
    up = time.monotonic() - t0
    progress(watch.summary())
    if watch.max_seen != 1:
        raise SystemExit(f"demo: two Ironics ran at once during the {what}: {watch.overlaps[:3]}")
    lab.timings[f"{what}: pulumi up"] = up
    run("metal3-pivot", "verify", "--kubeconfig", str(lab.base / "ephemeral" / "kubeconfig"), "--to-kubeconfig",
        str(lab.target_kubeconfig), "-n", lab.namespace, "--expect", "target" if location == "target" else "source")
    step(f"{what}: metal3-dev-env's checks against the controllers and Ironic of {dest.name}")
    result, waited = lab.verify(dest, mark)
    lab.timings[f"{what}: pulumi up start -> reconciled"] = up + waited
    if not show(result, waited, dest.name):
        raise SystemExit(f"demo: the checks after the {what} failed; logs: {dest.directory / 'logs'}")
    return up + waited


def secrets_audit(lab: Lab, since: float, backup: Path) -> audit.AuditReport:
    eph, tgt = lab.base / "ephemeral" / "kubeconfig", lab.target_kubeconfig
    assert lab.rack is not None
    needles = {**audit.kubeconfig_needles(eph, "ephemeral kubeconfig"),
               **audit.kubeconfig_needles(tgt, "target kubeconfig"),
               **audit.password_needles(live_objects(lab.topology, lab.rack))}
    moves = cache_dir() / "logs" / "moves"
    files = [*audit.files_under(ROOT / ".state"), *audit.files_under(moves, since=since),
             *audit.files_under(lab.base, suffixes=(".log",))]
    return audit.audit(files, needles, [backup])


def capture_live_metadata(cluster: LocalCluster, namespace: str) -> None:
    """The finalizers and annotations the live controllers left, per kind, for the benchmark's seed
    (lab/data/live_metadata.py): written to .lab/live-metadata.json."""
    async def go() -> dict[str, live_metadata.KindMetadata]:
        async with Kube(load_kubeconfig(cluster.kubeconfig), name=cluster.name) as kube:
            return await live_metadata.capture(kube, namespace, crds.bundle().resource_types())
    found = asyncio.run(go())
    live_metadata.dump(found, LAB / "live-metadata.json", source=f"make demo, after step 2, namespace {namespace}")
    with_finalizers = sorted(k for k, m in found.items() if m.common_finalizers())
    progress(f"what the controllers left on {sum(m.objects for m in found.values())} objects: finalizers on every "
             f"{', '.join(with_finalizers) or 'none'}; written to {(LAB / 'live-metadata.json').relative_to(ROOT)}")


def stop_previous() -> None:
    if LAB.exists():
        subprocess.run([sys.executable, "-m", "lab.cli", "--dir", str(LAB), "down"], cwd=ROOT, check=False)


def main() -> int:
    t0 = time.monotonic()
    started = time.time()
    stop_previous()
    shutil.rmtree(LAB, ignore_errors=True)
    LAB.mkdir()
    TRANSCRIPT.write_text("")
    lab = Lab(LAB, LiveTopology(api_port=free_port()), attached=False, progress=progress)
    try:
        step("1. dev-env: the rack's BMCs, the ephemeral cluster, its controllers and Ironic, hosts available")
        lab.dev_env()
        step(f"2. provision the target cluster {lab.topology.cluster} on the rack's machines")
        lab.provision()
        eph, tgt = LocalCluster.load(LAB / "ephemeral"), lab.target()
        capture_live_metadata(eph, lab.namespace)
        progress(f"target kubeconfig (from the {lab.topology.cluster}-kubeconfig Secret): {lab.target_kubeconfig}")

        step(f"3. pulumi stack {STACK} (file:// backend in .state/): providers onto the target")
        shutil.rmtree(ROOT / ".state", ignore_errors=True)
        (ROOT / ".state").mkdir()
        echo(f"$ pulumi stack init {STACK}")
        stack = pulumi_stack()
        set_location(stack, "ephemeral")
        t1 = time.monotonic()
        pulumi(stack, "pulumi up --yes --skip-preview", "up")
        lab.timings["3. pulumi up: providers on the target"] = time.monotonic() - t1

        relocate(lab, stack, "4. pivot", "target", tgt)
        relocate(lab, stack, "6. move back", "ephemeral", eph)
        echo("$ pulumi stack output")
        for key, value in stack.outputs().items():
            echo(f"    {key}: {'[secret]' if value.secret else value.value}")
        backup = LAB / "backup"
        step(f"a --to-directory backup into {backup.relative_to(ROOT)} (holds Secrets: 0700 folder, 0600 files)")
        run("metal3-pivot", "move", "--kubeconfig", str(eph.kubeconfig), "-n", lab.namespace,
            "--to-directory", str(backup))
        step("secrets audit: state, logs, output and backup searched for kubeconfig credentials and BMC passwords")
        report = secrets_audit(lab, started, backup)
        for finding in report.findings:
            print(f"  {finding}")
        print(report.summary(), flush=True)

        step("7. de-provision: delete the workload cluster; its hosts go back to available through Ironic")
        lab.deprovision(eph)
    except WorkflowError as err:
        print(f"\ndemo: {err}", file=sys.stderr, flush=True)
        return 1
    step("seconds per step")
    for name, seconds in lab.timings.items():
        print(f"  {seconds:7.1f}  {name}")
    step(f"done in {time.monotonic() - t0:.0f} s. Everything keeps running under .lab/ (the ephemeral "
         "cluster's kubeconfig: .lab/ephemeral/kubeconfig); `make clusters-down` stops it")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

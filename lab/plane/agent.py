"""The lab's node of one management cluster: a process that runs what the cluster declares, for as long
as the cluster lives.

In metal3-dev-env the ephemeral cluster is a kind node (its kubelet runs the providers' and Ironic's
Pods) and the target cluster runs on the provisioned machines (their kubelets do). Here one agent per
management cluster plays that part: its DeploymentRunner (lab/plane/runner.py) starts, restarts and
stops the managers and Ironic the cluster's Deployments ask for, and, when the rack's machines are
given, its MachineAgent (lab/machines/node_agent.py) plays the provisioned machines' operating system for
the hosts this cluster manages: it registers their Nodes in the workload cluster and boots that
cluster's control plane from the user data. A workload cluster that boots gets an agent of its own
(it becomes a management cluster when the providers are installed there).

The agent is a separate process, not a thread of whoever asked for it, for two reasons: its children
get PR_SET_PDEATHSIG from its main thread and so live exactly as long as it does, and a `pulumi up`
killed mid-pivot (the kill tests) leaves the controllers running, as a killed CI job leaves a real
cluster's controllers running.

    python -m lab.plane.agent --cluster DIR [--bmcs DIR --machines DIR] [--interval 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from lab.cluster import LocalCluster
from lab.plane import spawn
from lab.plane.runner import DeploymentRunner


class AgentError(Exception):
    """The agent of a cluster could not be started or found; the message says which and where its log is."""


def agent_file(directory: Path) -> Path:
    return directory / "agent.json"


def log_file(directory: Path) -> Path:
    return directory / "logs" / "agent.log"


def start_agent(cluster: LocalCluster, *, bmcs: Path | None = None, machines: Path | None = None,
                attached: bool = True, interval: float = 1.0) -> int:
    """Start the agent of `cluster` (tests: attached, so it dies with the test process; `metal3-lab`:
    detached). Returns its pid once its first pass is done."""
    argv = [sys.executable, "-m", "lab.plane.agent", "--cluster", str(cluster.directory), "--interval",
            str(interval)]
    if bmcs is not None:
        argv += ["--bmcs", str(bmcs)]
    if machines is not None:
        argv += ["--machines", str(machines)]
    marker = cluster.directory / "agent.ready"
    marker.unlink(missing_ok=True)
    pid = spawn.spawn(argv, log=log_file(cluster.directory), cwd=cluster.directory, attached=attached)
    agent_file(cluster.directory).write_text(json.dumps({"pid": pid}))
    deadline = time.monotonic() + 300
    while not marker.exists():
        if not spawn.alive(pid):
            raise AgentError(f"the agent of {cluster.name} exited during its first pass; see "
                             f"{log_file(cluster.directory)}:\n{spawn.tail(log_file(cluster.directory))}")
        if time.monotonic() > deadline:
            spawn.stop(pid)
            raise AgentError(f"the agent of {cluster.name} did not finish its first pass in 300 s; see "
                             f"{log_file(cluster.directory)}")
        time.sleep(0.1)
    return pid


def agent_pid(directory: Path) -> int | None:
    path = agent_file(directory)
    if not path.exists():
        return None
    pid = int(json.loads(path.read_text())["pid"])
    return pid if spawn.alive(pid) else None


def stop_agent(directory: Path, grace: float = 60.0) -> None:
    """Stop the agent of the cluster in `directory` and everything it runs; safe when none runs."""
    pid = agent_pid(directory)
    if pid is not None:
        spawn.stop(pid, grace)
    agent_file(directory).unlink(missing_ok=True)


def _machine_agent(cluster: LocalCluster, bmcs: Path | None, machines: Path | None) -> Any:
    """The machines' stand-in for this cluster's hosts, when the rack is given."""
    if bmcs is None or machines is None:
        return None
    from lab.machines.bmc import LocalBmcs
    from lab.machines.node_agent import MachineAgent

    def boot(workload: LocalCluster) -> None:      # a booted workload cluster gets its own node agent
        if agent_pid(workload.directory) is None:
            start_agent(workload, bmcs=bmcs, machines=machines, attached=False)
    return MachineAgent(cluster, LocalBmcs.load(bmcs), machines, attached=False, on_boot=boot)


def run(cluster: LocalCluster, bmcs: Path | None, machines: Path | None, interval: float) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner = DeploymentRunner(cluster)
    machine_agent = _machine_agent(cluster, bmcs, machines)
    shown = 0
    first = True
    try:
        while not stop.is_set():
            for name, step in (("runner", runner.sync), ("machines", machine_agent.sync if machine_agent else None)):
                if step is None:
                    continue
                try:
                    step()
                except Exception:   # an apiserver restart, a conflict: the next pass retries
                    print(f"{time.strftime('%H:%M:%S')} {name} pass failed:\n{traceback.format_exc()}", flush=True)
            for line in runner.events[shown:]:
                print(line, flush=True)
            shown = len(runner.events)
            if first:
                (cluster.directory / "agent.ready").write_text(str(time.time()))
                first = False
            stop.wait(interval)
    finally:
        # the machines keep running: a workload cluster lives on its own machine, not in this agent
        # (it is stopped when its host is deprovisioned, or by the lab's teardown)
        runner.stop(release=cluster.running())
        for line in runner.events[shown:]:
            print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lab.plane.agent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", type=Path, required=True, help="the cluster's folder (cluster.json)")
    p.add_argument("--bmcs", type=Path, help="the rack's folder (bmcs.json): play the provisioned machines")
    p.add_argument("--machines", type=Path, help="where booted workload clusters live")
    p.add_argument("--interval", type=float, default=1.0)
    args = p.parse_args(argv)
    cluster = LocalCluster.load(args.cluster)
    print(f"{time.strftime('%H:%M:%S')} agent of {cluster.name} (pid {os.getpid()}) starting",
          flush=True)
    run(cluster, args.bmcs, args.machines, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())

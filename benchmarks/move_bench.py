"""Benchmark: our move against `clusterctl move` on the same seeded data, on the same apiservers.

    make bench                                          # 10, 100, 1000 hosts
    python -m benchmarks.move_bench --hosts 1000 2500 5000 --clusterctl-max 2500 --json bench.json

For each size: start a fresh pair of local clusters, seed the ephemeral one, then measure
1. our engine moving ephemeral -> target, then back (the back move restores the starting point). Each
   move runs in a process of its own that imports only the engine, so its peak RSS is the engine's own
   (the seed data lives in this process, not in that one);
2. `clusterctl move` ephemeral -> target (up to `--clusterctl-max` hosts);
3. the apiserver's limit for this data, in the same run: the same objects created in parallel into a
   spare namespace of the target (no owner order, no reads), then patched once each, then deleted, each
   timed. The limit for a move is its own writes priced at those rates: creates / create rate + deletes
   / delete rate + patches (and updates) / patch rate. "vs limit" is the move's time over that. The
   patch is then timed again one kind at a time, and the JSON's "limit_by_kind_s" prices each of the
   move's patches at the rate of its own kind. It is not the table's limit: a kind alone cannot fill the
   server (the small kinds run at their latency), so it overstates (the first run with it, 2026-12-01,
   had a move at 0.98 of it). Last, before the deletes, the forward move's own patches (so many per
   resource, a status patch as one of its object) are made again, all kinds at once, each kind's objects
   in turn: the table's "move's mix" column prices the move's patches at that rate, creates and deletes
   as above (JSON: "limit_mix_s", "vs_limit_mix").
While a move (or the raw run) goes, the CPU time of the engine and of every process of both clusters is
sampled, and each phase's line says how busy the cores were and who used them.
Progress goes to stderr as it happens; the table to stdout; every figure to the JSON file.
Speed targets live here, not in timed unit tests (docs/performance.md records runs).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import json
import math
import multiprocessing
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lab.cli import start_clusters
from lab.cluster import LocalCluster, kube_for
from lab.data import crds, live_metadata
from lab.data.seed import seed, settle, type_index
from lab.data.seed_objects import Topology, build
from metal3_pivot import NAMESPACE, Kube, group_of

ROOT = Path(__file__).resolve().parent.parent
RAW_NAMESPACE = "raw"
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f} s] {text}", file=sys.stderr, flush=True)


def topology_for(hosts: int) -> Topology:
    """Clusters of at most 100 hosts (3 control planes + workers), like a fleet of workload clusters."""
    clusters = max(1, math.ceil(hosts / 100))
    per = hosts // clusters
    return Topology(namespace="metal3", clusters=clusters, control_planes=3 if per >= 4 else 1,
                    workers=per - (3 if per >= 4 else 1))


def kube(c: LocalCluster, name: str, concurrency: int = 64) -> Kube:
    return kube_for(c, name, concurrency=concurrency)


def settle_after_move(c: LocalCluster, topo: Topology) -> None:
    """Write back the statuses the moved objects' controllers would recompute (none run here), so the
    next move's pre-flight finds the objects as a real cluster would leave them."""
    async def run() -> None:
        async with kube(c, c.name) as k:
            await settle(k, topo, crds.bundle().resource_types(), concurrency=64)
    asyncio.run(run())


# -- the engine, alone in a process ------------------------------------------------------------------------
def _move_in_child(src_kubeconfig: str, dst_kubeconfig: str, concurrency: int, label: str,
                   out: Any, engine: str | None = None) -> None:
    """Runs in a fresh interpreter (spawn): the engine and its HTTP client, nothing of the seed. `engine`:
    a checkout whose metal3_pivot moves instead of this one's (to compare two versions on the same clusters)."""
    if engine:
        for name in [m for m in sys.modules if m == "metal3_pivot" or m.startswith("metal3_pivot.")]:
            del sys.modules[name]
        sys.path.insert(0, engine)
    from metal3_pivot import Kube, MoveOptions, Mover, load_kubeconfig

    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{label} +{time.monotonic() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    async def go() -> dict[str, Any]:
        async with Kube(load_kubeconfig(src_kubeconfig), name="source", concurrency=concurrency) as s, \
                Kube(load_kubeconfig(dst_kubeconfig), name="target", concurrency=concurrency) as d:
            opts = MoveOptions(namespaces=("metal3",), concurrency=concurrency, progress=progress)
            t_start = time.monotonic()
            r = await Mover(s, d, opts).run()
            return {"seconds": r.seconds, "phases": r.phases, "t_start": t_start, "writes": r.writes,
                    "writes_by_method": r.writes_by_method,
                    "writes_by_resource": getattr(r, "writes_by_resource", {}),
                    "created": r.created, "deleted": r.deleted,
                    "objects": sum(r.moved.values())}

    result = asyncio.run(go())
    result["rss_base_mib"] = base_kb / 1024
    result["rss_peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.send(result)


def engine_move(src: LocalCluster, dst: LocalCluster, concurrency: int, label: str,
                engine: str | None = None) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_move_in_child, args=(str(src.kubeconfig), str(dst.kubeconfig), concurrency,
                                                     label, writer, engine))
    proc.start()
    writer.close()
    assert proc.pid is not None
    with CpuMeter(metered(proc.pid, src, dst)) as meter:
        try:
            result: dict[str, Any] = reader.recv()
        except EOFError:
            proc.join()
            raise SystemExit(f"the {label} move failed (exit {proc.exitcode}): see its output above") from None
    proc.join()
    result["cpu"] = meter.by_phase(result["t_start"], result["phases"])
    return result


# -- who used the cores ------------------------------------------------------------------------------------
def metered(engine: int, source: LocalCluster, target: LocalCluster) -> dict[str, int]:
    """The processes a CpuMeter watches during a move: the engine (or the raw run's client) and both clusters'."""
    return {"engine": engine, **{f"source {c}": p for c, p in source.pids.items()},
            **{f"target {c}": p for c, p in target.pids.items()}}


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_speed(rounds: int = 3, seconds: float = 2.0) -> dict[str, float]:
    """How fast this machine is right now, for comparing runs made at different times.

    Why: the machine is shared, and its speed has moved by 2x between runs on the same day (the same
    no-change preview took 4.3-4.8 s at 01:15 and 7.1-8.8 s at 20:45 on 2026-12-01, with the host
    taking no CPU at 20:45 by `vmstat`). So each run records `calibration_s`, the best of `rounds`
    timings of the same pure-Python work on one core (JSON encoding and decoding and hashing, what the
    engine's client does), and `steal` and `iowait`, the machine's shares over `seconds` of idling
    before the run. A rough guide only: it is taken at the start, and the machine's speed can move
    within a run (22:51 that day: the fastest calibration yet, then a run slower throughout than
    20:45's); the per-phase `steal` columns are sampled throughout."""
    doc = [{"metadata": {"name": f"host-{i}", "labels": {"cluster.x-k8s.io/cluster-name": f"c{i % 20}"},
                         "annotations": {"note": "x" * 200}}, "spec": {"bootMACAddress": f"00:00:00:00:{i:08x}"}}
           for i in range(5000)]
    best = math.inf
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(4):
            text = json.dumps(doc)
            json.loads(text)
            hashlib.sha256(text.encode() * 4).hexdigest()
        best = min(best, time.perf_counter() - t)
    a = machine_ticks()
    time.sleep(seconds)
    return {"calibration_s": round(best, 3), **machine_shares(a, machine_ticks())}


#: the machine's counters kept beside the processes' in each sample (/proc/stat, in clock ticks)
MACHINE = ("machine iowait", "machine steal", "machine total")


def machine_ticks() -> dict[str, float]:
    """The whole machine's CPU time waiting on I/O, taken by the host (steal), and in all (/proc/stat).

    Why: on this shared machine the host takes CPU (vmstat's `st`), and a phase whose cores were idle was
    either waiting (on the disk, on the API servers' latency) or not given them; the two read alike in
    the processes' counters. Zeros where /proc/stat cannot be read."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return dict.fromkeys(MACHINE, 0.0)
    iowait = fields[4] if len(fields) > 4 else 0
    steal = fields[7] if len(fields) > 7 else 0
    return dict(zip(MACHINE, (float(iowait), float(steal), float(sum(fields[:8]))), strict=True))


def machine_shares(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """The machine's I/O wait and steal between two readings (`machine_ticks`, or samples holding them), as
    shares of all its CPU time then; zeros when no tick passed."""
    total = b.get("machine total", 0.0) - a.get("machine total", 0.0)
    return {name: round((b.get(f"machine {name}", 0.0) - a.get(f"machine {name}", 0.0)) / total, 3) if total > 0
            else 0.0 for name in ("iowait", "steal")}


def speed_line(speed: dict[str, Any]) -> str:
    return (f"calibration {speed['calibration_s']:.3f} s (lower is faster), the host's steal {speed['steal']:.0%}, "
            f"iowait {speed['iowait']:.0%} before the run")


class CpuMeter:
    """Samples the CPU time of the engine and of both clusters' processes four times a second, so each phase
    of a move can say who used the cores: a phase slower than its writes at the raw rates is either waiting
    (cores idle) or paying for work the raw run does not make (the garbage collector, the engine itself).
    The machine's iowait and steal are sampled too: idle cores that the host took are not the move's."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.samples.append((time.monotonic(), {**{n: cpu_seconds(p) for n, p in self.pids.items()},
                                                **machine_ticks()}))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _at(self, t: float) -> dict[str, float]:
        """The counters at time t, from the last sample at or before it (the engine's counter only grows
        while it runs: its last sample is kept once it has exited)."""
        best = self.samples[0][1]
        for when, values in self.samples:
            if when > t:
                break
            best = {n: max(v, best.get(n, 0.0)) for n, v in values.items()}
        return best

    def by_phase(self, t_start: float, phases: dict[str, float]) -> dict[str, dict[str, float]]:
        """CPU seconds per process for each phase of the move, and the share of the machine's cores used."""
        out: dict[str, dict[str, float]] = {}
        t = t_start
        for name, seconds in phases.items():
            a, b = self._at(t), self._at(t + seconds)
            used = {n: round(max(0.0, b.get(n, 0.0) - a.get(n, 0.0)), 2) for n in self.pids}
            busy = sum(used.values()) / max(seconds, 1e-9) / (os.cpu_count() or 1)
            out[name] = {**used, "wall": round(seconds, 2), "cores_busy": round(busy, 2), **machine_shares(a, b)}
            t += seconds
        return out


def cpu_table(label: str, cpu: dict[str, dict[str, float]]) -> str:
    """One line per phase of at least a second: wall, the share of the cores busy, the machine's CPU taken by
    the host (steal) and waiting on I/O, CPU per process."""
    procs = [n for n in next(iter(cpu.values()), {}) if n not in ("wall", "cores_busy", "iowait", "steal")]
    short = [n.replace("kube-controller-manager", "kcm").replace("kube-apiserver", "apiserver") for n in procs]
    lines = [f"# {label}: CPU seconds per phase (cores busy = all CPU / wall / cores; steal and iowait: the "
             "machine's share)",
             "| phase | wall s | cores busy | steal | iowait | " + " | ".join(short) + " |",
             "|---|---|---|---|---|" + "---|" * len(procs)]
    for phase, row in cpu.items():
        if row["wall"] >= 1.0:
            lines.append(f"| {phase} | {row['wall']:.1f} | {row['cores_busy']:.0%} | {row.get('steal', 0.0):.0%} | "
                         f"{row.get('iowait', 0.0):.0%} | " + " | ".join(f"{row[n]:.1f}" for n in procs) + " |")
    return "\n".join(lines)


# -- the apiserver's limit -----------------------------------------------------------------------------------
async def raw_rates(c: LocalCluster, topo: Topology, concurrency: int,
                    live: dict[str, live_metadata.KindMetadata] | None,
                    patch_mix: dict[str, int] | None = None) -> dict[str, Any]:
    """Create, patch and delete the seed's objects in parallel, without owners, finalizers or reads: per-verb
    rates (with the live annotations and, for the patches and deletes, the statuses, so the objects are as
    big as the moved ones). `patch_mix` (patches per resource, as a move made them: `mix_of`): those
    patches, all kinds at once, timed too (`write_limit_mix`)."""
    index = type_index(crds.bundle().resource_types())
    objs = []
    built = build(topo)
    seeded = [copy.deepcopy(so.obj) for so in built]
    statuses = {(so.obj["kind"], so.obj["metadata"]["name"]): so.status for so in built if so.status}
    if live:
        live_metadata.apply(seeded, live)
    for o in seeded:
        o["metadata"]["namespace"] = RAW_NAMESPACE
        o["metadata"].pop("ownerReferences", None)
        o["metadata"].pop("finalizers", None)
        objs.append(o)
    async with kube(c, c.name, concurrency) as k:
        await k.apply(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RAW_NAMESPACE}})
        sem = asyncio.Semaphore(concurrency)

        async def timed(verb: str, one: Callable[[dict[str, Any]], Awaitable[object]]) -> float:
            done = 0

            async def limited(o: dict[str, Any]) -> None:
                nonlocal done
                async with sem:
                    await one(o)
                done += 1
                if done % 2000 == 0:
                    say(f"raw {verb}: {done}/{len(objs)}")
            t0 = time.monotonic()
            await asyncio.gather(*(limited(o) for o in objs))
            took = time.monotonic() - t0
            say(f"raw {verb}: {len(objs)} in {took:.1f} s ({len(objs) / took:.0f}/s)")
            return took

        def rt(o: dict[str, Any]) -> Any:
            return index[(group_of(o["apiVersion"]), o["kind"])]

        mark = {"metadata": {"annotations": {"bench.metal3-pivot.io/touched": "yes"}}}
        t_start = time.monotonic()
        # the answers as a move asks for them (its metadata alone: kube.METADATA_ONLY), so the rates price the
        # same writes; deletes always ask for the metadata alone
        create_s = await timed("create", lambda o: k.create(rt(o), o, metadata_only=True))
        t_status = time.monotonic()
        # not timed: the statuses the source's objects carry (a host's is its hardware inventory), so the
        # patches and deletes below work on objects as big as those a move patches and deletes; a create
        # never carries a status (the API server drops it), so the creates above are as a move's are
        await asyncio.gather(*(_limited(sem, k.patch(rt(o), o["metadata"]["name"], RAW_NAMESPACE,
                                                     {"status": statuses[(o["kind"], o["metadata"]["name"])]},
                                                     sub="status"))
                               for o in objs if (o["kind"], o["metadata"]["name"]) in statuses))
        say(f"raw: statuses written ({len(statuses)}, not timed)")
        status_s = time.monotonic() - t_status
        patch_s = await timed("patch", lambda o: k.patch(rt(o), o["metadata"]["name"], RAW_NAMESPACE, mark,
                                                         metadata_only=True))
        t_end = time.monotonic()
        # the same patch again, one kind at a time: a move patches hosts (pause, status, unpause) far more
        # than the seed's mix does, and a host costs the API server more than a Secret
        by_resource: dict[str, float] = {}
        by_plural: dict[str, list[dict[str, Any]]] = {}
        for o in objs:
            by_plural.setdefault(rt(o).plural, []).append(o)
        again = {"metadata": {"annotations": {"bench.metal3-pivot.io/touched": "again"}}}
        for plural, group in sorted(by_plural.items()):
            t0 = time.monotonic()
            await asyncio.gather(*(_limited(sem, k.patch(rt(o), o["metadata"]["name"], RAW_NAMESPACE, again,
                                                         metadata_only=True))
                                   for o in group))
            by_resource[plural] = len(group) / (time.monotonic() - t0)
        say("raw patch by kind: " + ", ".join(f"{r} {v:.0f}/s" for r, v in by_resource.items()))
        t_kinds = time.monotonic() - t_end
        t_mix = time.monotonic()
        mix = mixed_patches(patch_mix or {}, by_plural)
        await asyncio.gather(*(_limited(sem, k.patch(rt(o), o["metadata"]["name"], RAW_NAMESPACE, {
            "metadata": {"annotations": {"bench.metal3-pivot.io/mix": str(i)}}}, metadata_only=True))
            for i, o in enumerate(mix)))
        mix_s = time.monotonic() - t_mix
        if mix:
            say(f"raw patch, the move's mix: {len(mix)} in {mix_s:.1f} s ({len(mix) / mix_s:.0f}/s)")
        delete_s = await timed("delete", lambda o: k.delete(rt(o), o["metadata"]["name"], RAW_NAMESPACE))
    n = len(objs)
    return {"objects": n, "t_start": t_start, "create_s": create_s, "status_s": status_s, "patch_s": patch_s,
            "delete_s": delete_s,
            "patch_by_kind_s": t_kinds, "create_per_s": n / create_s, "patch_per_s": n / patch_s,
            "delete_per_s": n / delete_s, "patch_per_s_by_resource": by_resource,
            "patch_mix": dict(patch_mix or {}), "patch_mix_n": len(mix), "patch_mix_s": mix_s}


def mix_of(writes_by_resource: dict[str, int]) -> dict[str, int]:
    """A move's patches per resource (a status patch counted as a patch of its object): what the raw run
    patches again, all at once, to price them."""
    out: dict[str, int] = {}
    for key, n in writes_by_resource.items():
        method, _, resource = key.partition(" ")
        if method == "PATCH":
            plural = resource.split("/")[0]
            out[plural] = out.get(plural, 0) + n
    return out


def mixed_patches(mix: dict[str, int], by_plural: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The objects to patch for `mix`: each resource's count spread over its objects in turn (a host patched
    four times by a move is patched four times here), kinds the raw run does not hold left out. In rounds,
    each object at most once a round, each round shuffled with a fixed seed: the kinds interleave as
    parallel writes do and runs compare, and an object's patches never run at once, as in a move, which
    patches an object in different phases. (Made in rounds after a first run without them priced the mix
    at 216/s at 2,500 hosts, below what each kind alone gives; with rounds it was 216/s at 1,000 hosts too:
    the mix is dearer than its kinds alone, not by same-object retries. docs/performance.md.)"""
    rounds: dict[int, list[dict[str, Any]]] = {}
    for plural, n in sorted(mix.items()):
        group = by_plural.get(plural) or []
        for i in range(n if group else 0):
            rounds.setdefault(i // len(group), []).append(group[i % len(group)])
    out: list[dict[str, Any]] = []
    shuffle = random.Random(17).shuffle
    for r in sorted(rounds):
        shuffle(rounds[r])
        out += rounds[r]
    return out


async def _limited(sem: asyncio.Semaphore, call: Awaitable[object]) -> None:
    async with sem:
        await call


def write_limit(writes_by_method: dict[str, int], raw: dict[str, Any]) -> float:
    """Seconds the apiserver needs for these writes at the raw rates (PUT priced as a patch)."""
    rate = {"POST": raw["create_per_s"], "DELETE": raw["delete_per_s"], "PATCH": raw["patch_per_s"],
            "PUT": raw["patch_per_s"]}
    return sum(n / rate.get(m, raw["patch_per_s"]) for m, n in writes_by_method.items())


def write_limit_by_kind(writes_by_resource: dict[str, int], raw: dict[str, Any]) -> float:
    """The same, with each patch (and update) priced at the raw patch rate of its own kind: the move creates
    and deletes exactly the raw run's objects, so those two are priced right by the mixed rates, but its
    patches are mostly of hosts (pause, status, unpause, finalizers), the largest objects. A status patch
    is priced as a patch of its object; a kind the raw run did not patch, at the mixed rate."""
    rate = {"POST": raw["create_per_s"], "DELETE": raw["delete_per_s"]}
    by_kind = raw.get("patch_per_s_by_resource") or {}
    total = 0.0
    for key, n in writes_by_resource.items():
        method, _, resource = key.partition(" ")
        if method in rate:
            total += n / rate[method]
        else:
            total += n / by_kind.get(resource.split("/")[0], raw["patch_per_s"])
    return total


def write_limit_mix(writes_by_method: dict[str, int], raw: dict[str, Any]) -> float:
    """The limit with the patches (and updates) priced at the rate of the move's own mix of patches, timed
    all kinds at once (`raw_rates`' `patch_mix`): neither the seed's average kind (`write_limit`: the move
    patches hosts and Machines far more than Secrets) nor each kind alone (`write_limit_by_kind`: a small
    kind alone does not fill the server). NaN when the raw run timed no mix."""
    if not raw.get("patch_mix_n"):
        return float("nan")
    patch_rate = raw["patch_mix_n"] / raw["patch_mix_s"]
    rate = {"POST": raw["create_per_s"], "DELETE": raw["delete_per_s"]}
    return sum(n / rate.get(m, patch_rate) for m, n in writes_by_method.items())


# -- clusterctl --------------------------------------------------------------------------------------------
def clusterctl(src: LocalCluster, dst: LocalCluster, home: Path) -> float:
    env = dict(os.environ, HOME=str(home), CLUSTERCTL_DISABLE_VERSIONCHECK="true")
    t0 = time.monotonic()
    proc = subprocess.Popen(["clusterctl", "move", "--kubeconfig", str(src.kubeconfig), "--to-kubeconfig",
                             str(dst.kubeconfig), "--namespace", "metal3"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:                     # clusterctl's own progress, passed on as it comes
        lines.append(line)
        say(f"clusterctl: {line.rstrip()}")
    took = time.monotonic() - t0
    if proc.wait() != 0:
        raise SystemExit(f"clusterctl move failed:\n{''.join(lines)[-3000:]}")
    return took


# -- one size ----------------------------------------------------------------------------------------------
def run_size(hosts: int, concurrency: int, with_clusterctl: bool, base: Path,
             live: dict[str, live_metadata.KindMetadata] | None, compare: str | None = None) -> dict[str, Any]:
    topo = topology_for(hosts)
    say(f"{hosts} hosts: starting two clusters")
    clusters = start_clusters(["ephemeral", "target"], base / f"h{hosts}", attached=True)
    eph, tgt = clusters["ephemeral"], clusters["target"]
    try:
        built_at = time.perf_counter()
        objects = len(build(topo))
        build_s = time.perf_counter() - built_at
        say(f"{hosts} hosts: the seed's {objects} objects built in memory in {build_s:.2f} s")
        step = max(1, objects // 10)

        def seed_progress(text: str) -> None:
            done = int(text.split()[1].split("/")[0])
            if done % step < 64 or done == objects:
                say(f"{hosts} hosts: {text}")

        async def do_seed() -> float:
            async with kube(eph, "ephemeral") as k:
                r = await seed(k, topo, crds.bundle().resource_types(), concurrency=64, progress=seed_progress,
                               live=live)
                return r.seconds

        say(f"{hosts} hosts: seeding {objects} objects")
        seed_s = asyncio.run(do_seed())
        say(f"{hosts} hosts: our move, ephemeral -> target")
        fwd = engine_move(eph, tgt, concurrency, f"{hosts} fwd")
        settle_after_move(tgt, topo)
        say(f"{hosts} hosts: our move back, target -> ephemeral")
        back = engine_move(tgt, eph, concurrency, f"{hosts} back")
        settle_after_move(eph, topo)
        alt: dict[str, Any] = {}
        if compare:
            say(f"{hosts} hosts: the engine of {compare}, there and back")
            alt = {"engine": compare, "forward": engine_move(eph, tgt, concurrency, f"{hosts} fwd (compared)", compare)}
            settle_after_move(tgt, topo)
            alt["back"] = engine_move(tgt, eph, concurrency, f"{hosts} back (compared)", compare)
            settle_after_move(eph, topo)
        cc_s = float("nan")
        if with_clusterctl:
            say(f"{hosts} hosts: clusterctl move, ephemeral -> target")
            cc_s = clusterctl(eph, tgt, base)
        say(f"{hosts} hosts: the apiserver's raw rates")
        raw = raw_rates(tgt, topo, concurrency, live, mix_of(fwd["writes_by_resource"]))
        with CpuMeter(metered(os.getpid(), eph, tgt)) as meter:
            raw_result = asyncio.run(raw)
        raw_result["cpu"] = meter.by_phase(raw_result["t_start"], {
            "create": raw_result["create_s"], "statuses (not timed)": raw_result["status_s"],
            "patch": raw_result["patch_s"],
            "patch by kind": raw_result["patch_by_kind_s"], "patch, the move's mix": raw_result["patch_mix_s"],
            "delete": raw_result["delete_s"]})
        for move in (fwd, back, *(alt.get(d) for d in ("forward", "back") if alt)):
            assert move is not None
            move["limit_s"] = write_limit(move["writes_by_method"], raw_result)
            move["vs_limit"] = move["seconds"] / move["limit_s"]
            move["limit_by_kind_s"] = write_limit_by_kind(move["writes_by_resource"], raw_result) \
                if move["writes_by_resource"] else float("nan")
            move["vs_limit_by_kind"] = move["seconds"] / move["limit_by_kind_s"]
            move["limit_mix_s"] = write_limit_mix(move["writes_by_method"], raw_result)
            move["vs_limit_mix"] = move["seconds"] / move["limit_mix_s"]
            move["writes_per_object"] = move["writes"] / max(1, move["objects"])
        return {"hosts": topo.clusters * (topo.control_planes + topo.workers), "objects": objects,
                "build_s": build_s, "seed_s": seed_s, "forward": fwd, "back": back, "clusterctl_s": cc_s,
                "raw": raw_result, "compared": alt}
    finally:
        for c in clusters.values():
            c.stop()


def table(rows: list[dict[str, Any]]) -> str:
    head = ["hosts", "objects", "ours s", "back s", "clusterctl s", "vs clusterctl", "limit s", "vs limit",
            "move's mix: limit s, vs limit", "writes/obj", "engine RSS MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("-" * (len(h) + 2) for h in head) + "|"]
    for r in rows:
        f, b, cc = r["forward"], r["back"], r["clusterctl_s"]
        vs_cc = f"{cc / f['seconds']:.1f}x / {cc / b['seconds']:.1f}x" if cc == cc else "-"
        cells = [str(r["hosts"]), str(r["objects"]), f"{f['seconds']:.1f}", f"{b['seconds']:.1f}",
                 f"{cc:.1f}" if cc == cc else "-", vs_cc, f"{f['limit_s']:.1f}",
                 f"{f['vs_limit']:.2f} / {b['vs_limit']:.2f}",
                 f"{f['limit_mix_s']:.1f}, {f['vs_limit_mix']:.2f} / {b['vs_limit_mix']:.2f}",
                 f"{f['writes_per_object']:.2f}",
                 f"{max(f['rss_peak_mib'], b['rss_peak_mib']):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--no-clusterctl", action="store_true")
    p.add_argument("--clusterctl-max", type=int, default=2500, help="no clusterctl run above this many hosts")
    p.add_argument("--json", type=Path, default=ROOT / ".bench" / "move_bench.json",
                   help="where every figure goes (default .bench/move_bench.json)")
    p.add_argument("--live-metadata", type=Path, default=live_metadata.FILE,
                   help="finalizers and annotations the live controllers leave, per kind, added to the seed "
                        "(default: lab/data/live_metadata.json, captured by `make demo`)")
    p.add_argument("--bare-seed", action="store_true", help="the seed without them")
    p.add_argument("--compare-engine", metavar="CHECKOUT",
                   help="also move there and back with the engine of another checkout (e.g. a `git worktree` "
                        "of an earlier commit), on the same clusters, after ours")
    a = p.parse_args()
    if not a.bare_seed and not a.live_metadata.exists():
        raise SystemExit(f"{a.live_metadata} is missing: run `make demo` and copy .lab/live-metadata.json there, "
                         "or pass --bare-seed")
    live = None if a.bare_seed else live_metadata.load(a.live_metadata)
    machine = {"machine": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
               "concurrency": a.concurrency, "seed": "bare" if live is None else str(a.live_metadata),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **machine_speed()}
    print(f"# machine: {machine['machine']}, {machine['cores']} cores, Python {machine['python']}, "
          f"concurrency {a.concurrency}, seed {machine['seed']}; {speed_line(machine)}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="m3p-bench-") as tmp:
        for hosts in a.hosts:
            with_cc = not a.no_clusterctl and hosts <= a.clusterctl_max
            rows.append(run_size(hosts, a.concurrency, with_cc, Path(tmp), live, a.compare_engine))
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps({"machine": machine, "sizes": rows}, indent=2))   # after every size
    print(table(rows))
    for r in rows:
        for name in ("forward", "back"):
            m = r[name]
            print(f"# {r['hosts']} hosts {name}: phases {m['phases']}; writes {m['writes_by_method']}; "
                  f"engine RSS {m['rss_base_mib']:.0f} MiB at start, {m['rss_peak_mib']:.0f} MiB peak")
            print(cpu_table(f"{r['hosts']} hosts {name}", m["cpu"]))
            other = (r.get("compared") or {}).get(name)
            if other:
                print(f"# {r['hosts']} hosts {name}, the engine of {r['compared']['engine']}: "
                      f"{other['seconds']:.1f} s (ours {m['seconds']:.1f} s), vs limit {other['vs_limit']:.2f} "
                      f"(ours {m['vs_limit']:.2f}); phases {other['phases']}")
                print(cpu_table(f"{r['hosts']} hosts {name}, compared engine", other["cpu"]))
        raw = r["raw"]
        mixed = (f", the move's mix of patches {raw['patch_mix_n'] / raw['patch_mix_s']:.0f}/s"
                 if raw["patch_mix_n"] else "")
        print(f"# {r['hosts']} hosts raw rates: create {raw['create_per_s']:.0f}/s, patch {raw['patch_per_s']:.0f}/s, "
              f"delete {raw['delete_per_s']:.0f}/s ({raw['objects']} objects){mixed}")
        print(cpu_table(f"{r['hosts']} hosts raw rates (the 'engine' is this process's client)", raw["cpu"]))
    print(f"# every figure: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`metal3-pivot`: the engine on its own, with clusterctl's words.

    metal3-pivot move --kubeconfig SRC --to-kubeconfig DST [-n NS ... | -A] [--dry-run]
    metal3-pivot move --kubeconfig SRC --to-directory DIR          (backup: clusterctl's files, 0600)
    metal3-pivot move --from-directory DIR --to-kubeconfig DST     (restore; clusterctl's backups too)
    metal3-pivot plan --kubeconfig SRC [--to-kubeconfig DST] [--output text|json|dot]
    metal3-pivot verify --kubeconfig A --to-kubeconfig B [--expect source|target]

Scope, as clusterctl's: the namespaces given with -n; without -n, the namespace of the source kubeconfig's
context, else `default`; every namespace only with -A / --all-namespaces.

Exit codes: 0 done; 1 other error; 2 bad input or move refused by the pre-flight (nothing changed);
3 a cluster unreachable; 4 the API server refused a request; 5 deadline passed, or objects still
blocked the move when its wait ran out (the source may be paused: run again to finish); 6 verify found
violations; 7 another move holds the move lock (nothing changed; wait, then run again); 8 this move
lost its lock to another mover, or its caller abandoned it (stopped before its next write: let that one
finish, or run again); 9
objects kept changing in the source while the move ran, after it read them again (nothing lost; the
source may be paused: stop the writer, then run again).
Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metal3_pivot import backup
from metal3_pivot.discovery import discover
from metal3_pivot.errors import InputError, PivotError, UnreachableClusterError
from metal3_pivot.graph import Node
from metal3_pivot.kube import Kube, load_kubeconfig
from metal3_pivot.mover import MoveOptions, Mover
from metal3_pivot.plan import Plan, make_plan
from metal3_pivot.verify import verify

EXIT_VIOLATIONS = 6


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):     # no passwd entry (containers): the lock still names host and pid
        return "unknown user"


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _kube(path: str, context: str | None, name: str, concurrency: int) -> Kube:
    return Kube(load_kubeconfig(path, context, label=name), name=name, concurrency=concurrency)


#: a namespace name is a DNS-1123 label
_NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def scope(a: argparse.Namespace) -> tuple[str, ...]:
    """The namespaces a command works on (empty: every namespace), by clusterctl's rule: -n as given, else
    the source kubeconfig context's namespace, else `default`; -A for every namespace."""
    if a.all_namespaces:
        if a.namespace:
            raise InputError("--all-namespaces and --namespace exclude each other: pick one")
        return ()
    if a.namespace:
        for ns in a.namespace:
            if len(ns) > 63 or not _NAMESPACE_NAME.match(ns):
                raise InputError(f"--namespace {ns!r} is an invalid namespace name (lower-case letters, digits "
                                 "and '-', starting and ending with a letter or digit, at most 63 characters)")
        return tuple(dict.fromkeys(a.namespace))
    if not a.kubeconfig:
        return ()
    return (load_kubeconfig(a.kubeconfig, a.kubeconfig_context, label="source").namespace,)


async def _probe(*kubes: Kube) -> None:
    """Reachability first, with a short retry budget: a wrong port should fail in seconds."""
    async def one(k: Kube) -> None:
        retries, k.retries = k.retries, 2
        try:
            await k.version()
        except UnreachableClusterError as err:
            if "CERTIFICATE_VERIFY_FAILED" in str(err) or "certificate verify failed" in str(err):
                raise UnreachableClusterError(
                    f"{k.name}: the API server at {k.server} answered, but its certificate failed verification "
                    "against the kubeconfig's certificate-authority: the kubeconfig belongs to another cluster, "
                    f"or its CA is out of date ({err})") from None
            raise UnreachableClusterError(f"{k.name}: the API server at {k.server} does not answer; check the "
                                          f"kubeconfig and that the cluster is up ({err})") from None
        finally:
            k.retries = retries
    await asyncio.gather(*(one(k) for k in kubes))


# ---------------------------------------------------------------------------------------------- plan output

def plan_text(plan: Plan) -> str:
    lines = [f"move from {plan.source.name} to {plan.target.name}: {len(plan.moving)} objects "
             f"({len(plan.to_create)} to create, {len(plan.already_in_target)} already there)"]
    for i, level in enumerate(plan.ordered(), 1):
        lines.append(f"level {i}:")
        lines.extend(f"  {n.key}" + (" (in target)" if n.key in plan.already_in_target else "") for n in level)
    lines.append("per kind: " + ", ".join(f"{k}={v}" for k, v in plan.counts().items()))
    return "\n".join(lines)


def plan_json(plan: Plan) -> str:
    def node(n: Node) -> dict[str, Any]:
        return {"group": n.key.group, "kind": n.key.kind, "namespace": n.key.namespace, "name": n.key.name,
                "owners": [str(o) for o in sorted(n.owners)], "softOwners": [str(o) for o in sorted(n.soft_owners)],
                "inTarget": n.key in plan.already_in_target}
    return json.dumps({"source": plan.source.name, "target": plan.target.name, "counts": plan.counts(),
                       "levels": [[node(n) for n in level] for level in plan.ordered()]}, indent=2)


def plan_dot(plan: Plan) -> str:
    """Graphviz: every object of the source graph, moving ones filled, edges from owner to dependent."""
    def nid(n: Node) -> str:
        return json.dumps(str(n.key))
    out = ["digraph move {", "  rankdir=LR; node [shape=box, fontsize=10];"]
    for n in plan.source.graph.nodes.values():
        style = 'style=filled, fillcolor="#9fd69f"' if n.key in plan.moving else 'color="#999999"'
        out.append(f"  {nid(n)} [label={json.dumps(n.key.kind + chr(10) + n.key.name)}, {style}];")
    nodes = plan.source.graph.nodes
    for n in nodes.values():
        for o in sorted(n.owners):
            out.append(f"  {nid(nodes[o])} -> {nid(n)};")
        for o in sorted(n.soft_owners):
            out.append(f"  {nid(nodes[o])} -> {nid(n)} [style=dashed];")
    out.append("}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- commands

async def cmd_move(a: argparse.Namespace) -> int:
    opts = MoveOptions(namespaces=scope(a), dry_run=a.dry_run, concurrency=a.concurrency,
                       timeout=a.timeout, progress=progress, holder=f"metal3-pivot CLI ({_user()})",
                       lock_duration=a.lock_duration, block_move_timeout=a.block_move_timeout)
    if a.from_directory:
        if not a.to_kubeconfig:
            raise InputError("--from-directory needs --to-kubeconfig")
        async with _kube(a.to_kubeconfig, a.to_kubeconfig_context, "target", a.concurrency) as dst:
            await _probe(dst)
            report = await Mover(dst, dst, opts).restore(Path(a.from_directory))
    elif a.to_directory:
        async with _kube(a.kubeconfig, a.kubeconfig_context, "source", a.concurrency) as src:
            await _probe(src)
            count = await Mover(src, src, opts).backup(Path(a.to_directory))
            if not a.dry_run:
                print(f"wrote {count} objects to {a.to_directory} (contains Secrets: mode 0600)")
            return 0
    elif not a.to_kubeconfig:
        if not a.dry_run:
            raise InputError("move needs --to-kubeconfig, --to-directory or --from-directory")
        # clusterctl's --dry-run needs no target: the plan against an empty one
        async with _kube(a.kubeconfig, a.kubeconfig_context, "source", a.concurrency) as src:
            await _probe(src)
            plan = make_plan(await discover(src, list(opts.namespaces)), backup.empty_view("target"))
            where = ", ".join(opts.namespaces) or "every namespace"
            progress(f"would move {len(plan.moving)} objects from source ({where}); no target given, none checked")
            print(plan_text(plan))
            return 0
    else:
        async with _kube(a.kubeconfig, a.kubeconfig_context, "source", a.concurrency) as src, \
                _kube(a.to_kubeconfig, a.to_kubeconfig_context, "target", a.concurrency) as dst:
            await _probe(src, dst)
            report = await Mover(src, dst, opts).run()
    print(report.summary())
    return 0


async def cmd_plan(a: argparse.Namespace) -> int:
    namespaces = scope(a)
    async with _kube(a.kubeconfig, a.kubeconfig_context, "source", a.concurrency) as src:
        if a.to_kubeconfig:
            async with _kube(a.to_kubeconfig, a.to_kubeconfig_context, "target", a.concurrency) as dst:
                await _probe(src, dst)
                plan = await Mover(src, dst, MoveOptions(namespaces=namespaces)).discover()
        else:
            await _probe(src)
            plan = make_plan(await discover(src, list(namespaces)), backup.empty_view("target"))
    print({"text": plan_text, "json": plan_json, "dot": plan_dot}[a.output](plan))
    return 0


async def cmd_verify(a: argparse.Namespace) -> int:
    async with _kube(a.kubeconfig, a.kubeconfig_context, "source", a.concurrency) as src, \
            _kube(a.to_kubeconfig, a.to_kubeconfig_context, "target", a.concurrency) as dst:
        await _probe(src, dst)
        report = await verify(src, dst, scope(a), expect=a.expect)
    for name, counts in report.counts.items():
        print(f"{name}: {sum(counts.values())} objects " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    for v in report.violations:
        print(v.tagged())
    print("verify: OK" if report.ok else f"verify: {len(report.violations)} violation(s)")
    return 0 if report.ok else EXIT_VIOLATIONS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metal3-pivot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, source_required: bool = True) -> None:
        sp.add_argument("--kubeconfig", required=source_required, help="the source cluster's kubeconfig")
        sp.add_argument("--kubeconfig-context")
        sp.add_argument("--to-kubeconfig", help="the target cluster's kubeconfig")
        sp.add_argument("--to-kubeconfig-context")
        sp.add_argument("-n", "--namespace", action="append",
                        help="namespace to work on (repeatable); default: the source kubeconfig context's "
                             "namespace, else `default`, as clusterctl")
        sp.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
        sp.add_argument("--concurrency", type=int, default=32, help="parallel requests per cluster (default 32)")

    mv = sub.add_parser("move", help="move (or back up / restore) the Cluster-API objects")
    common(mv, source_required=False)
    mv.add_argument("--dry-run", action="store_true", help="discover and check only: write nothing")
    mv.add_argument("--to-directory", help="write the objects as YAML files instead of moving them")
    mv.add_argument("--from-directory", help="create the objects of a --to-directory backup in the target")
    mv.add_argument("--timeout", type=float, help="give up (safely) after this many seconds")
    mv.add_argument("--block-move-timeout", type=float, default=120.0,
                    help="seconds to wait, after pausing, for providers to drop clusterctl's block-move "
                         "annotation (default 120, clusterctl's ~2 minutes); then exit 5, source paused: run "
                         "again to keep waiting, or move back to undo")
    mv.add_argument("--lock-duration", type=float, default=60.0,
                    help="seconds the move lock outlives this process if it dies (default 60)")
    pl = sub.add_parser("plan", help="show the object graph and the ordered plan; writes nothing")
    common(pl)
    pl.add_argument("-o", "--output", choices=("text", "json", "dot"), default="text")
    vf = sub.add_parser("verify", help="check the move invariants on two clusters")
    common(vf)
    vf.add_argument("--expect", choices=("source", "target"), help="where every object should be")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "move" and not args.from_directory and not args.kubeconfig:
        print("metal3-pivot: error: move needs --kubeconfig (or --from-directory)", file=sys.stderr)
        return 2
    if args.command == "verify" and not args.to_kubeconfig:
        print("metal3-pivot: error: verify needs --to-kubeconfig", file=sys.stderr)
        return 2
    commands = {"move": cmd_move, "plan": cmd_plan, "verify": cmd_verify}
    try:
        return asyncio.run(commands[args.command](args))
    except BrokenPipeError:
        # the reader went away (`plan | head`): stop quietly, as other command-line tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except PivotError as err:
        print(f"metal3-pivot: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("metal3-pivot: interrupted; nothing is lost: run the same command again to finish", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

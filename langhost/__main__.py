"""Entry point the engine runs: `pulumi-language-python [-flags ...] ENGINE_ADDRESS`.

The engine passes its flags first and its own address last; we accept and ignore flags we do not use
(tracing, logging), take `--exec-dir` from our launcher, print the port and serve until killed.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import types
from pathlib import Path
from types import FrameType


def import_protos_alone() -> None:
    """Loads the SDK's gRPC stubs without the SDK: what `pulumi.runtime.proto` imports for us is ~0.15 s
    of `pulumi/__init__` (the whole SDK), paid at each of the engine's two starts of the host per CLI run,
    on its critical path. The packages `pulumi` and `pulumi.runtime` stand in as empty namespaces while the
    stubs load (they import each other relatively), then go, so nothing later in this process meets them;
    if a future SDK's stubs need more of it, the plain import runs instead."""
    spec = importlib.util.find_spec("pulumi")
    if "pulumi" in sys.modules or spec is None or not spec.submodule_search_locations:
        return
    base = next(iter(spec.submodule_search_locations))
    stand_ins = {"pulumi": base, "pulumi.runtime": os.path.join(base, "runtime")}
    for name, path in stand_ins.items():
        module = types.ModuleType(name)
        module.__path__ = [path]
        sys.modules[name] = module
    try:
        import pulumi.runtime.proto  # noqa: F401
    except ImportError:
        for name in [n for n in sys.modules if n == "pulumi" or n.startswith("pulumi.")]:
            del sys.modules[name]
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)


import_protos_alone()

from langhost.host import serve, stop_when_engine_gone  # noqa: E402


def main(argv: list[str]) -> int:
    exec_dir = Path(__file__).resolve().parent
    positional: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg.startswith("--exec-dir="):
            exec_dir = Path(arg.split("=", 1)[1])
        elif arg == "--exec-dir":
            exec_dir = Path(next(it))
        elif arg.startswith("-"):
            continue  # engine flags (-tracing=..., -root=..., -binary=...): accepted, unused
        else:
            positional.append(arg)
    engine = positional[-1] if positional else ""
    exec_script = exec_dir / "pulumi-language-python-exec"
    if not exec_script.exists():
        print(f"pulumi-language-python: {exec_script} is missing; run python3 tools/bootstrap.py", file=sys.stderr)
        return 1
    server, host = serve(engine, exec_script)

    def shutdown(signum: int, frame: FrameType | None) -> None:
        # the engine stops its plugins with SIGINT/SIGTERM when it is done: a normal, quiet exit
        server.stop(grace=None)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    if engine:
        stop_when_engine_gone(server, host)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

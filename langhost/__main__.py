"""Entry point the engine runs: `pulumi-language-python [-flags ...] ENGINE_ADDRESS`.

The engine passes its flags first and its own address last; we accept and ignore flags we do not use
(tracing, logging), take `--exec-dir` from our launcher, print the port and serve until killed.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

from langhost.host import serve


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
    server = serve(engine, exec_script)

    def shutdown(signum: int, frame: FrameType | None) -> None:
        # the engine stops its plugins with SIGINT/SIGTERM when it is done: a normal, quiet exit
        server.stop(grace=None)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

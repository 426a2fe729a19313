"""A tiny HTTP server for the live plane: static files, plus a sink for the fake BMCs' notifications.

Two jobs a Metal3 site has an httpd for: the Ironic pod's httpd serves Ironic's `http_root` (the ISOs
it builds for virtual media), and the image cache serves the images hosts are provisioned with (our
"live-iso" is a small file). The same server also accepts `PUT /bmc-events`: sushy-tools' fake driver,
for systems with `external_notifier: true`, PUTs its whole system record there on every change it makes
(power request, power change, boot device, virtual media). Each one is appended to a JSON-lines file,
so the BMCs' own history survives the processes that watched it.

Standard library only, run as `python -m lab.machines.httpd --root DIR --port P [--events FILE]`.
"""

from __future__ import annotations

import argparse
import functools
import json
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

EVENTS_PATH = "/bmc-events"


class Handler(SimpleHTTPRequestHandler):
    events: Path | None = None
    lock = threading.Lock()

    def do_PUT(self) -> None:
        if self.path != EVENTS_PATH or self.events is None:
            self.send_error(404, "only PUT /bmc-events is accepted")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            record = json.loads(body)
        except ValueError:
            self.send_error(400, "the body must be JSON")
            return
        line = json.dumps({"t": time.time(), "system": record}, sort_keys=True)
        with self.lock, self.events.open("a") as f:
            f.write(line + "\n")
        self.send_response(204)
        self.end_headers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="folder served for GET/HEAD")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=Path, help="append PUT /bmc-events bodies to this JSON-lines file")
    args = parser.parse_args()
    Handler.events = args.events
    handler = functools.partial(Handler, directory=str(args.root))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

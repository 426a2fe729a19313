"""Ironic's endpoint as BMO sees it in the lab: a pass-through to the cluster's Ironic that fills in one
field BMO v0.13.2 leaves out when it adopts a provisioned live-iso host.

Why it exists: after a pivot the destination Ironic has never seen the hosts; BMO registers each one
and asks Ironic to `adopt` it (take it over as `active` without touching the machine). For a host
provisioned with a `live-iso` image Ironic's ramdisk deploy validates the boot ISO on adoption, and
BMO v0.13.2 does not write `instance_info/boot_iso` before it adopts, so adoption fails ("Missing are:
['kernel', 'ramdisk']", docs/live-plane.md). metal3-dev-env never meets this: its hosts are provisioned
with disk images, whose adoption validates no boot, and the lab cannot provision disk images (they need
the Ironic Python Agent, which is not on PyPI). So the lab stands in for a BMO that writes the field:
right before it forwards an `adopt` request, it PATCHes the node's `instance_info` with what BMO writes
for a live-iso deployment (`boot_iso` = the host's `status.provisioning.image.url`, the boot mode
capability, `driver_info/force_persistent_boot_device`), read from the BareMetalHost the node belongs
to (Ironic node name `<namespace>~<name>`, as BMO names it). Every such PATCH is appended to
`adoptions.jsonl` beside the log, so a test can show it happened and nothing else was changed.

Everything else is forwarded unchanged, byte for byte, in both directions. The endpoint's port is the
cluster's "provisioning IP:6385": stable while Ironic comes and goes (lab/plane/runner.py), refusing
connections while no Ironic runs there, as a real Ironic endpoint would.

Run: `python -m lab.plane.adoption --port P --ironic URL --kubeconfig KC --record FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import http.server
import json
import re
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from metal3_pivot import Kube, ResourceType, load_kubeconfig

BMH = ResourceType("metal3.io", "v1alpha1", "BareMetalHost", "baremetalhosts")
_PROVISION = re.compile(r"^/v1/nodes/([^/?]+)/states/provision$")
_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"})
_MICROVERSION = "1.95"


def boot_mode_capability(mode: str | None) -> str:
    """BMO's boot modes as Ironic's `boot_mode` capability (UEFISecureBoot is uefi + secure_boot)."""
    return "bios" if (mode or "").lower() == "legacy" else "uefi"


def live_iso_patch(host: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """The PATCH BMO would have sent for a live-iso host before adopting it, or [] when nothing is missing
    (not a live-iso host, or Ironic already has a boot ISO for it)."""
    image = ((host.get("status") or {}).get("provisioning") or {}).get("image") or {}
    # a BareMetalHost's image says `format` (a Metal3Machine's says `diskFormat`)
    if (image.get("format") or image.get("diskFormat")) != "live-iso" or not image.get("url"):
        return []
    if (node.get("instance_info") or {}).get("boot_iso"):
        return []
    mode = boot_mode_capability(((host.get("status") or {}).get("provisioning") or {}).get("bootMode"))
    return [{"op": "add", "path": "/instance_info/boot_iso", "value": image["url"]},
            {"op": "add", "path": "/instance_info/capabilities", "value": {"boot_mode": mode}},
            {"op": "add", "path": "/driver_info/force_persistent_boot_device", "value": "Default"}]


class Shim:
    def __init__(self, ironic: str, kubeconfig: Path, record: Path) -> None:
        parsed = urllib.parse.urlsplit(ironic)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 6385
        self.kubeconfig = kubeconfig
        self.record = record

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes | None
                ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _ironic(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"X-OpenStack-Ironic-API-Version": _MICROVERSION, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        status, _, raw = self.forward(method, path, headers, data)
        if status >= 400:
            raise RuntimeError(f"Ironic {method} {path}: HTTP {status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def before_adopt(self, ident: str) -> None:
        """Fill in a live-iso host's boot ISO from its BareMetalHost, as BMO would, before `adopt`."""
        node = self._ironic("GET", f"/v1/nodes/{ident}")
        name = node.get("name") or ""
        if "~" not in name:
            return
        namespace, host_name = name.split("~", 1)

        async def read() -> dict[str, Any] | None:
            async with Kube(load_kubeconfig(self.kubeconfig), name="adoption") as kube:
                return await kube.get(BMH, host_name, namespace)
        host = asyncio.run(read())
        ops = live_iso_patch(host, node) if host is not None else []
        if ops:
            self._ironic("PATCH", f"/v1/nodes/{ident}", ops)
            print(f"{time.strftime('%H:%M:%S')} {name}: boot_iso {ops[0]['value']} written before adopt", flush=True)
            with self.record.open("a") as out:
                out.write(json.dumps({"time": time.time(), "node": node.get("uuid"), "name": name,
                                      "patch": ops}) + "\n")


def handler_for(shim: Shim) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
            match = _PROVISION.match(self.path.split("?", 1)[0])
            if self.command == "PUT" and match and body:
                try:
                    if json.loads(body).get("target") == "adopt":
                        shim.before_adopt(match.group(1))
                except Exception as err:   # the adopt then fails as it would have without us: say why
                    self.log_message("could not prepare adoption of %s: %s", match.group(1), err)
            try:
                status, resp_headers, data = shim.forward(self.command, self.path, headers, body)
            except OSError as err:
                self.send_error(502, f"Ironic unreachable: {err}")
                return
            self.send_response(status)
            for k, v in resp_headers:
                if k.lower() not in _HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _relay

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lab.plane.adoption", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ironic", required=True, help="Ironic's own URL, e.g. http://127.0.0.1:PORT")
    p.add_argument("--kubeconfig", type=Path, required=True, help="the management cluster's (to read hosts)")
    p.add_argument("--record", type=Path, required=True, help="where each boot-ISO PATCH is appended")
    args = p.parse_args(argv)
    shim = Shim(args.ironic, args.kubeconfig, args.record)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(shim))
    server.daemon_threads = True
    print(f"adoption shim on 127.0.0.1:{args.port} -> {args.ironic}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""EndpointSlices for the Services that select a manager the lab runs: how the API server reaches its webhooks.

The providers' webhook configurations and CRD conversions name a Service (`clientConfig.service`), as
released; nothing in the stack or the lab re-points them. In a cluster the API server reaches such a
Service through kube-proxy (ClusterIP) or, with `--enable-aggregator-routing=true`, directly through
the Service's EndpointSlices (k8s.io/apiserver pkg/util/proxy ResolveEndpoint: the slice port whose name
equals the Service port's name, the first Ready endpoint's first address; the TLS server name stays
`<service>.<namespace>.svc`, so the release's certificate validates as it is). The lab's kube-apiserver
runs with that flag (lab/cluster.py) and no kube-proxy; this module plays the two parts that make a
Pod's address appear there: the EndpointSlice controller (which Services select the Pod) and the kubelet
(the Pod's IP and its ports). The lab's controller-manager runs no EndpointSlice controller, and the
slices carry a managed-by label of the lab's own, so nothing else writes or removes them.

The address: a Pod IP may not be loopback, link-local or unspecified (the API validates endpoint IPs),
so it is this host's own non-loopback IPv4 address, where the managers' webhook servers listen (the
controller-runtime webhook server binds every interface when no host is given, as in all six managers).
The port: the process's actual webhook port, under the Service port's name.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import socket
import struct
from pathlib import Path
from typing import Any

from metal3_pivot import Kube, ResourceType

Obj = dict[str, Any]

ENDPOINT_SLICES = ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
SERVICES = ResourceType("", "v1", "Service", "services")
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LAB = "lab.metal3-pivot.io"
FIELD_MANAGER = "metal3-lab-endpoints"


class EndpointError(Exception):
    """The host has no address the API server may use as a Pod IP; the message says what is needed."""


def usable(address: str) -> bool:
    """Whether the API server accepts `address` as an endpoint IP (IPv4 here: the slices are IPv4)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == 4 and not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def _local_addresses() -> list[str]:
    """Every local IPv4 address of this host (network namespace), in the kernel's order: the `host LOCAL`
    entries of /proc/net/fib_trie (Linux; an address on `lo` counts too), else each interface's first
    address (SIOCGIFADDR)."""
    out: list[str] = []
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for prev, line in itertools.pairwise(lines):
        if line.strip() == "/32 host LOCAL" and prev.strip().startswith("|-- "):
            address = prev.strip()[4:]
            if address not in out:
                out.append(address)
    if out:
        return out
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
            raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
            out.append(socket.inet_ntoa(raw[20:24]))
    return out


def host_address() -> str:
    """This host's own non-loopback IPv4 address: the source address of its default route if it has one
    (a UDP "connect" sends nothing), else the first usable local address (tools/offline gives its network
    namespace one on `lo`, from the documentation range 198.51.100.0/24)."""
    candidates = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
        s.connect(("192.0.2.254", 9))       # TEST-NET-1: only the route is looked up
        candidates.append(s.getsockname()[0])
    candidates += _local_addresses()
    for address in candidates:
        if usable(address):
            return address
    raise EndpointError(
        "the lab needs this host to have a non-loopback IPv4 address (found only "
        f"{', '.join(candidates) or 'none'}): the API server reaches the managers' webhooks through their "
        "Services' EndpointSlices, and an endpoint may not be a loopback, link-local or unspecified address. "
        "Give the host (or the network namespace the tests run in) one, e.g. "
        "`ip addr add 198.51.100.1/32 dev lo` as tools/offline does.")


def selects(service: Obj, pod_labels: dict[str, str]) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())


def slice_for(service: Obj, pod_ports: dict[str | int, int], address: str, pod: str) -> Obj | None:
    """The EndpointSlice for `service` with the Pod at `address`: every Service port whose targetPort (a
    number, or a container port's name) the process serves, at its actual port. None if it serves none."""
    ports = []
    for p in service["spec"].get("ports") or []:
        actual = pod_ports.get(p.get("targetPort", p["port"]))
        if actual is not None:
            ports.append({"name": p.get("name", ""), "port": actual, "protocol": p.get("protocol", "TCP")})
    if not ports:
        return None
    md = service["metadata"]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{md['name']}-lab", "namespace": md["namespace"],
                         "labels": {SERVICE_NAME: md["name"], MANAGED_BY: LAB}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "nodeName": "lab",
                           "conditions": {"ready": True, "serving": True, "terminating": False},
                           "targetRef": {"kind": "Pod", "namespace": md["namespace"], "name": pod}}],
            "ports": ports}


async def publish(kube: Kube, namespace: str, pod_labels: dict[str, str], pod_ports: dict[str | int, int],
                  address: str, pod: str, *, services: list[Obj] | None = None,
                  written_already: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Write the slices of every Service in `namespace` that selects the Pod (from `services` when given,
    else read), but those in `written_already`; returns the names written."""
    written = []
    for service in await kube.list(SERVICES, namespace) if services is None else services:
        md = service["metadata"]
        if md["namespace"] != namespace or f"{md['name']}-lab" in written_already or not selects(service, pod_labels):
            continue
        es = slice_for(service, pod_ports, address, pod)
        if es is not None:
            await kube.apply(ENDPOINT_SLICES, es, manager=FIELD_MANAGER)
            written.append(es["metadata"]["name"])
    return written


async def withdraw(kube: Kube, namespace: str, names: list[str]) -> None:
    """The Pod is gone: its slices go (the API server then answers "no endpoints available")."""
    for name in names:
        await kube.delete(ENDPOINT_SLICES, name, namespace)

"""Ironic as the tests watch it: where it runs, and the most Ironics ever seen at once."""

from __future__ import annotations

import asyncio
import threading

from lab.cluster import LocalCluster, kube_for
from metal3_pivot.kube import DEPLOYMENTS


class IronicWatcher(threading.Thread):
    """Polls both clusters for Ironic Deployments and records the most it ever saw at once."""

    def __init__(self, clusters: list[LocalCluster]) -> None:
        super().__init__(daemon=True)
        self.clusters = clusters
        self.stop_event = threading.Event()
        self.max_seen = 0
        self.samples = 0

    def run(self) -> None:
        async def poll() -> None:
            kubes = [kube_for(c) for c in self.clusters]
            try:
                while not self.stop_event.is_set():
                    counts = await asyncio.gather(*(k.list(DEPLOYMENTS, "baremetal-operator-system") for k in kubes))
                    seen = sum(1 for items in counts for d in items if d["metadata"]["name"] == "ironic")
                    self.max_seen = max(self.max_seen, seen)
                    self.samples += 1
                    await asyncio.sleep(0.05)
            finally:
                for k in kubes:
                    await k.close()
        asyncio.run(poll())

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def ironic_on(cluster: LocalCluster) -> bool:
    async def go() -> bool:
        async with kube_for(cluster) as k:
            return await k.get(DEPLOYMENTS, "ironic", "baremetal-operator-system") is not None
    return asyncio.run(go())

"""One /metrics for all workers: each worker publishes its exposition to a shared directory; any worker merges.

With ``server.workers = N`` the admin port is shared (SO_REUSEPORT), so a scrape reaches one worker at random; on
its own, its registry would show a different fraction of the traffic on every scrape. prometheus_client's
multiprocess mode solves this for plain counters/gauges/histograms but not for custom collectors (the planes
register some) and needs an environment variable set before any import. Instead, every worker writes its own
exposition text every ``PUBLISH_INTERVAL`` to ``<dir>/worker-<n>-<pid>.prom`` (atomic rename; during an online
restart two generations share a slot, and the newest file of each slot counts); ``/metrics`` answers
with the answering worker's live registry plus the other workers' latest files, every sample labelled
``worker="<n>"`` so Prometheus can ``sum by`` or look at one worker. ``/metrics?scope=worker`` gives only the
answering worker, unlabelled. Files older than ``STALE_AFTER`` (a worker that died and was not replaced yet) are
left out.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from nexus_fast.observe.metrics import Metrics

PUBLISH_INTERVAL = 1.0
STALE_AFTER = 10.0


def _path(directory: str, worker_id: int) -> str:
    return os.path.join(directory, f"worker-{worker_id}-{os.getpid()}.prom")


def publish(directory: str, worker_id: int, metrics: Metrics) -> None:
    """Write this worker's exposition where its siblings read it (atomically: never a half-written file)."""
    path = _path(directory, worker_id)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(metrics.exposition())
    os.replace(tmp, path)


def sibling_expositions(directory: str, worker_id: int) -> Iterator[tuple[str, str]]:
    """(worker id, exposition text) of every other worker slot that published recently (newest file per slot)."""
    now = time.time()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    newest: dict[str, tuple[float, str]] = {}
    for name in names:
        if not (name.startswith("worker-") and name.endswith(".prom")):
            continue
        slot = name[len("worker-"):-len(".prom")].split("-")[0]
        if slot == str(worker_id):
            continue
        path = os.path.join(directory, name)
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            continue
        if now - mtime <= STALE_AFTER and mtime > newest.get(slot, (0.0, ""))[0]:
            newest[slot] = (mtime, path)
    for slot in sorted(newest, key=lambda s: (len(s), s)):
        try:
            with open(newest[slot][1], encoding="utf-8") as handle:
                yield slot, handle.read()
        except OSError:
            continue


class _Merged:
    """A collector over already-parsed families (what generate_latest renders)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def merge(expositions: Iterable[tuple[str, str]]) -> bytes:
    """Prometheus text of several workers' expositions, every sample labelled with its worker."""
    families: dict[str, Metric] = {}
    for worker, text in expositions:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                labels = dict(sample.labels)
                labels.setdefault("worker", worker)
                merged.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(families.values()))  # type: ignore[arg-type]
    return generate_latest(registry)


def all_workers_exposition(directory: str, worker_id: int, metrics: Metrics) -> bytes:
    own = metrics.exposition().decode()
    return merge([(str(worker_id), own), *sibling_expositions(directory, worker_id)])


async def publish_forever(directory: str, worker_id: int, metrics: Metrics) -> None:
    while True:
        try:
            publish(directory, worker_id, metrics)
        except OSError:
            pass  # the directory went away (supervisor shutting down): the next scrape just lacks this worker
        await asyncio.sleep(PUBLISH_INTERVAL)


def withdraw(directory: str, worker_id: int, orphaned: bool = False) -> None:
    """Remove this worker's file (on a clean exit its numbers must not linger as if it still served).

    ``orphaned``: the supervisor died without cleaning up; the last worker out removes the directory.
    """
    try:
        os.unlink(_path(directory, worker_id))
    except OSError:
        pass
    if orphaned:
        try:
            os.rmdir(directory)  # fails while a sibling's file is still there: that sibling removes it
        except OSError:
            pass

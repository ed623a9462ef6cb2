"""pytest-benchmark suite for the Redis hot path (opt-in: ``pytest tests/benchmarks/redis --benchmark-only``).

Each case runs over the compiled module and its pure-Python twin in one benchmark group, so the table shows the
speed-up side by side; per-item times go to ``extra_info`` (``--benchmark-json``). The compiled twin must be
faster than the pure one by the factor named in each case: a regression there is a failure, not a number.
"""

from __future__ import annotations

import time

import pytest

from nexus_fast.redis.commands import SINGLE_KEY, TABLE, keys_of, lookup
from tests.conftest import load_twin, twin_params

PIPELINE = 100
GET = b"*2\r\n$3\r\nGET\r\n$16\r\nkey:%012d\r\n"
SET = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$32\r\n" + b"v" * 32 + b"\r\n"
REQUESTS = b"".join((GET if i % 2 else SET) % i for i in range(PIPELINE))
REPLIES = b"".join(b"$32\r\n" + b"v" * 32 + b"\r\n" if i % 2 else b"+OK\r\n" for i in range(PIPELINE))
KEYS = [b"user:%d:profile" % i for i in range(1000)]
NODES = [(f"10.0.0.{i}:6379", 1) for i in range(1, 9)]


def _per_item(fn, items: int, rounds: int = 200) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - started) / rounds / items)
    return best


def _compare(benchmark, name: str, which: str, fn, items: int, factor: float) -> None:
    benchmark.group = f"redis {name}"
    benchmark(fn)
    benchmark.extra_info["ns_per_item"] = round(_per_item(fn, items) * 1e9, 1)
    if which == "native":
        pure_fn = CASES[name](load_twin(_MODULE[name], "pure"))
        speedup = _per_item(pure_fn, items, 20) / _per_item(fn, items)
        benchmark.extra_info["speedup_over_pure"] = round(speedup, 1)
        assert speedup >= factor, f"{name}: compiled only {speedup:.1f}x the pure twin"


def _parse(resp):
    def run():
        return resp.RequestParser().feed(REQUESTS)
    return run


def _scan(resp):
    def run():
        return resp.ReplyScanner().feed(REPLIES)
    return run


def _ring(ring_module):
    ring = ring_module.KetamaRing(NODES, hash="fnv1a_64", hash_tag="{}")
    lookup_key = ring.lookup

    def run():
        for key in KEYS:
            lookup_key(key)
    return run


def _slot(ring_module):
    key_slot = ring_module.key_slot

    def run():
        for key in KEYS:
            key_slot(key)
    return run


CASES = {"parse": _parse, "scan": _scan, "ring lookup": _ring, "cluster slot": _slot}
_MODULE = {"parse": "resp", "scan": "resp", "ring lookup": "ring", "cluster slot": "ring"}


@pytest.mark.parametrize("which", twin_params("resp"))
def test_parse_pipeline(benchmark, which):
    resp = load_twin("resp", which)
    assert len(_parse(resp)()) == PIPELINE
    _compare(benchmark, "parse", which, _parse(resp), PIPELINE, factor=5)


@pytest.mark.parametrize("which", twin_params("resp"))
def test_scan_replies(benchmark, which):
    resp = load_twin("resp", which)
    assert len(_scan(resp)()) == PIPELINE
    _compare(benchmark, "scan", which, _scan(resp), PIPELINE, factor=5)


@pytest.mark.parametrize("which", twin_params("ring"))
def test_ring_lookup(benchmark, which):
    _compare(benchmark, "ring lookup", which, _ring(load_twin("ring", which)), len(KEYS), factor=5)


@pytest.mark.parametrize("which", twin_params("ring"))
def test_cluster_slot(benchmark, which):
    _compare(benchmark, "cluster slot", which, _slot(load_twin("ring", which)), len(KEYS), factor=5)


def test_key_extraction(benchmark):
    """What the session does per command: the fast-path table for single-key commands (no twin: pure Python by
    design, measured against the general ``lookup`` + ``keys_of`` it short-cuts)."""
    commands = [[b"GET", b"user:%d" % i] for i in range(PIPELINE)]

    def fast():
        for args in commands:
            entry = SINGLE_KEY.get(args[0])
            if entry is not None and entry[1] <= len(args) <= entry[2]:
                args[entry[0]]

    def general():
        for args in commands:
            keys_of(lookup(args), args)

    benchmark.group = "redis key extraction"
    benchmark(fast)
    speedup = _per_item(general, PIPELINE) / _per_item(fast, PIPELINE)
    benchmark.extra_info.update(ns_per_item=round(_per_item(fast, PIPELINE) * 1e9, 1),
                                speedup_over_general=round(speedup, 1))
    assert TABLE[b"GET"].first == 1 and speedup >= 2

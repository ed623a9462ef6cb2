"""Batch hashing and placement kernels against their naive references, compiled and interpreted."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_fast.balance import _ring_py, selectors
from nexus_fast.kernels import hashing as H
from nexus_fast.kernels.jitmode import interpreted
from nexus_fast.kernels.reference import hashing as R
from tests.conftest import load_twin, twin_params

KEYS = st.lists(st.binary(max_size=40), max_size=30)
SETTINGS = settings(max_examples=25, deadline=None)


@pytest.fixture(scope="module", params=["jit", "python"])
def mode(request: pytest.FixtureRequest):
    """A context manager factory: compiled kernels, or the same kernels interpreted as Python."""
    if request.param == "jit":
        return contextlib.nullcontext
    return lambda: interpreted(H)


def test_known_vectors() -> None:
    # FNV test vectors (draft-eastlake-fnv) and MurmurHash3 x86_32 values from SMHasher's implementation.
    assert H.fnv1a_32([b"", b"a", b"foobar"]).tolist() == [0x811C9DC5, 0xE40C292C, 0xBF9CF968]
    assert H.fnv1a_64([b"", b"a", b"foobar"]).tolist() == [0xCBF29CE484222325, 0xAF63DC4C8601EC8C, 0x85944171F73967E8]
    fox = b"The quick brown fox jumps over the lazy dog"
    assert H.murmur3_32([b"", b"hello", fox]).tolist() == [0, 0x248BFA47, 0x2E4FF723]
    assert H.murmur3_32([b""], seed=1).tolist() == [0x514E28B7]
    assert H.jump_hash([0], 1).tolist() == [0]


@SETTINGS
@given(keys=KEYS, seed=st.integers(0, 2**32 - 1))
def test_standard_hashes_match_reference(mode, keys, seed) -> None:
    with mode():
        assert H.fnv1a_32(keys).tolist() == [R.fnv1a_32(k) for k in keys]
        assert H.fnv1a_64(keys).tolist() == [R.fnv1a_64(k) for k in keys]
        assert H.murmur3_32(keys, seed).tolist() == [R.murmur3_32(k, seed) for k in keys]


@SETTINGS
@given(keys=KEYS, name=st.sampled_from(H.TWEMPROXY_HASHES), tag=st.sampled_from([None, b"{}", b"::"]))
def test_twemproxy_hashes_match_the_ring(mode, keys, name, tag) -> None:
    with mode():
        assert H.twemproxy_hash(name, keys, tag).tolist() == [R.twemproxy_hash(name, k, tag) for k in keys]


@SETTINGS
@given(
    weights=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    live_bits=st.integers(0, 63),
    keys=KEYS,
    name=st.sampled_from(H.TWEMPROXY_HASHES),
    tag=st.sampled_from([None, "{}"]),
)
def test_ring_batch_lookup_matches_single_lookups(mode, weights, live_bits, keys, name, tag) -> None:
    nodes = [(f"10.0.0.{i}:6379", w) for i, w in enumerate(weights)]
    live = [bool(live_bits >> i & 1) for i in range(len(nodes))]
    ring = _ring_py.KetamaRing(nodes, hash=name, hash_tag=tag, live=live)
    with mode():
        assert H.ring_lookup_batch(ring, keys).tolist() == [ring.lookup(k) for k in keys]
        values, owners = ring.points()
        hashes = [R.twemproxy_hash(name, k) for k in keys]
        got = H.ketama_lookup(np.array(values), np.array(owners), np.array(hashes, dtype=np.uint32))
        assert got.tolist() == [R.ketama_lookup(list(values), list(owners), h) for h in hashes]


@SETTINGS
@given(keys=st.lists(st.integers(0, 2**64 - 1), max_size=40), n=st.integers(1, 300))
def test_jump_hash_matches_reference(mode, keys, n) -> None:
    with mode():
        assert H.jump_hash(np.array(keys, dtype=np.uint64), n).tolist() == [R.jump_hash(k, n) for k in keys]


def test_jump_hash_moves_only_to_the_new_bucket() -> None:
    keys = np.arange(20000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    before, after = H.jump_hash(keys, 10), H.jump_hash(keys, 11)
    moved = before != after
    assert set(after[moved].tolist()) == {10}
    assert 0.05 < moved.mean() < 0.13  # about 1/11 of the keys


@SETTINGS
@given(
    hashes=st.lists(st.integers(0, 2**64 - 1), max_size=30),
    weights=st.lists(st.one_of(st.just(0.0), st.floats(0.1, 10.0)), min_size=1, max_size=8),
)
def test_rendezvous_matches_reference(mode, hashes, weights) -> None:
    with mode():
        assert H.rendezvous(np.array(hashes, dtype=np.uint64), weights).tolist() == [
            R.rendezvous(h, weights) for h in hashes
        ]


def test_rendezvous_agrees_with_the_ip_hash_selector() -> None:
    keys = [f"192.168.{i // 256}.{i % 256}".encode() for i in range(500)]
    weights = [1.0, 2.0, 1.0, 0.5]
    sel = selectors.create_selector("ip_hash", 4, weights, seed=1)
    expected = [sel.select([True] * 4, key=k) for k in keys]
    assert H.rendezvous(H.fnv1a_64(keys), weights).tolist() == expected


def test_wrappers_validate() -> None:
    with pytest.raises(ValueError):
        H.jump_hash([1], 0)
    with pytest.raises(ValueError):
        H.rendezvous([1], [-1.0])
    with pytest.raises(ValueError):
        H.ketama_lookup(np.array([3, 1], dtype=np.uint32), np.array([0, 1]), np.array([2], dtype=np.uint32))
    with pytest.raises(ValueError):
        H.twemproxy_hash("md5", [b"a"])
    with pytest.raises(ValueError):
        H.fnv1a_32((np.zeros(3, dtype=np.uint8), np.array([0, 5])))
    assert H.ketama_lookup(np.array([], dtype=np.uint32), np.array([]), np.array([7])).tolist() == [-1]
    buf, offsets = H.pack_keys([b"ab", b"", b"c"])
    assert H.fnv1a_32((buf, offsets)).tolist() == H.fnv1a_32([b"ab", b"", b"c"]).tolist()


@pytest.mark.parametrize("which", twin_params("ring"))
def test_ring_batch_lookup_over_both_ring_implementations(which) -> None:
    ring_module = load_twin("ring", which)
    keys = [f"k{i}".encode() for i in range(300)] + [b"", b"{a}1", b"{a}2", b"\xff\xfe"]
    for name in H.TWEMPROXY_HASHES + ("md5",):  # md5 has no batch kernel: falls back to ring.lookup
        ring = ring_module.KetamaRing([("a:1", 1), ("b:1", 2), ("c:1", 1)], hash=name, hash_tag="{}")
        assert H.ring_lookup_batch(ring, keys).tolist() == [ring.lookup(k) for k in keys]
    single = ring_module.KetamaRing([("only:1", 1)])
    assert H.ring_lookup_batch(single, keys).tolist() == [0] * len(keys)
    dead = ring_module.KetamaRing([("a:1", 1)], live=[False])
    assert H.ring_lookup_batch(dead, keys[:3]).tolist() == [-1, -1, -1]

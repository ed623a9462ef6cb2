"""The ketama ring and twemproxy's hash functions, over the compiled and the pure twin."""

from __future__ import annotations

import random
import zlib
from collections import Counter

import pytest
import xxhash

from nexus_fast.balance import _ring_py
from tests.conftest import load_twin, twin_params


@pytest.fixture(params=twin_params("ring"))
def ring(request):
    return load_twin("ring", request.param)


NODES = [("127.0.0.1:7001", 1), ("127.0.0.1:7002", 1), ("127.0.0.1:7003", 1)]


def test_fnv1a_64_is_twemproxys_32_bit_variant(ring):
    # twemproxy seeds with the low 32 bits of the 64-bit basis and multiplies by the low 32 bits of the prime
    h = 0x84222325
    for b in b"foo":
        h = ((h ^ b) * 0x1B3) & 0xFFFFFFFF
    assert ring.hash_key("fnv1a_64", b"foo") == h
    # FNV-1a 32 test vector: fnv1a_32("a") = 0xe40c292c
    assert ring.hash_key("fnv1a_32", b"a") == 0xE40C292C


def test_signed_char_sign_extension(ring):
    # (uint32_t)(char)0xff is 0xffffffff on x86: differs from an unsigned read
    unsigned = ((2166136261 ^ 0xFF) * 16777619) & 0xFFFFFFFF
    assert ring.hash_key("fnv1a_32", b"\xff") != unsigned
    assert ring.hash_key("fnv1a_32", b"\xff") == ((2166136261 ^ 0xFFFFFFFF) * 16777619) & 0xFFFFFFFF


def test_reference_hashes(ring):
    for key in (b"", b"a", b"hello world", bytes(range(200))):
        assert ring.hash_key("crc32a", key) == zlib.crc32(key)
        assert ring.hash_key("crc32", key) == (zlib.crc32(key) >> 16) & 0x7FFF
        assert ring.hash_key("xxhash", key) == xxhash.xxh32_intdigest(key)
    assert ring.crc16(b"123456789") == 0x31C3  # CRC16/XMODEM check value (Redis cluster spec appendix)
    assert ring.key_slot(b"{user1000}.following") == ring.key_slot(b"user1000")
    assert ring.key_slot(b"foo{}{bar}") == ring.crc16(b"foo{}{bar}") % 16384  # empty tag: whole key


def test_twins_agree_on_every_hash():
    native = load_twin("ring", "native")
    rnd = random.Random(7)
    for _ in range(500):
        key = bytes(rnd.randrange(256) for _ in range(rnd.randrange(40)))
        for name in _ring_py.HASH_FUNCTIONS:
            assert native.hash_key(name, key) == _ring_py.hash_key(name, key), (name, key)
        assert native.key_slot(key) == _ring_py.key_slot(key)


def test_points_per_server_follow_weight(ring):
    r = ring.KetamaRing([("a", 1), ("b", 2), ("c", 1)])
    values, indices = r.points()
    assert list(values) == sorted(values)
    counts = Counter(indices)
    assert counts[0] == 120 and counts[1] == 240 and counts[2] == 120  # 160 * weight share * nlive
    assert len(ring.KetamaRing(NODES).points()[0]) == 480


def test_lookup_is_first_point_at_or_after_hash(ring):
    r = ring.KetamaRing(NODES, hash="murmur")
    values, indices = r.points()
    for i in range(300):
        key = b"k%d" % i
        h = r.key_hash(key)
        pos = next((j for j, v in enumerate(values) if v >= h), 0)
        assert r.lookup(key) == indices[pos]


def test_hash_tag_groups_keys(ring):
    r = ring.KetamaRing(NODES, hash_tag="{}")
    owners = {r.lookup(b"{user:7}:%d" % i) for i in range(50)}
    assert len(owners) == 1
    assert r.lookup(b"{user:7}:x") == r.lookup(b"user:7")


def test_ejecting_a_node_moves_only_its_keys(ring):
    full = ring.KetamaRing(NODES)
    without = ring.KetamaRing(NODES, live=[True, False, True])
    moved = 0
    for i in range(3000):
        key = b"key:%d" % i
        a, b = full.lookup(key), without.lookup(key)
        assert b != 1
        if a != 1:
            assert a == b
        else:
            moved += 1
    assert 600 < moved < 1400
    assert ring.KetamaRing(NODES, live=[False, False, False]).lookup(b"x") == -1


def test_lookup_n_distinct_successors(ring):
    r = ring.KetamaRing(NODES)
    for i in range(200):
        owners = r.lookup_n(b"k%d" % i, 2)
        assert len(set(owners)) == 2 and owners[0] == r.lookup(b"k%d" % i)
    assert sorted(r.lookup_n(b"x", 5)) == [0, 1, 2]


def test_spread_is_even(ring):
    r = ring.KetamaRing(NODES)
    counts = Counter(r.lookup(b"key:%d" % i) for i in range(30000))
    assert all(8000 < c < 12000 for c in counts.values())


def test_modula(ring):
    r = ring.KetamaRing(NODES, hash="fnv1a_64", distribution="modula")
    for i in range(100):
        key = b"k%d" % i
        assert r.lookup(key) == ring.hash_key("fnv1a_64", key) % 3


def test_bad_arguments(ring):
    with pytest.raises(ValueError, match="unknown hash"):
        ring.KetamaRing(NODES, hash="sha1")
    with pytest.raises(ValueError, match="hash_tag"):
        ring.KetamaRing(NODES, hash_tag="{")
    with pytest.raises(ValueError, match="weight"):
        ring.KetamaRing([("a", 0)])

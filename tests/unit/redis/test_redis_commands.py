"""The command table: every Redis 7 command classified, key positions, movable keys."""

from __future__ import annotations

import pytest

from nexus_fast.redis.command_table import COMMANDS
from nexus_fast.redis.commands import TABLE, Kind, is_blocking_call, keys_of, lookup


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("get", Kind.SINGLE), ("set", Kind.SINGLE), ("hset", Kind.SINGLE), ("incr", Kind.SINGLE),
        ("mget", Kind.SPLIT), ("mset", Kind.SPLIT), ("del", Kind.SPLIT), ("unlink", Kind.SPLIT),
        ("exists", Kind.SPLIT), ("touch", Kind.SPLIT), ("msetnx", Kind.MULTI), ("rename", Kind.MULTI),
        ("sunionstore", Kind.MULTI), ("eval", Kind.MULTI), ("ping", Kind.PROXY), ("echo", Kind.PROXY),
        ("quit", Kind.PROXY), ("hello", Kind.PROXY), ("auth", Kind.PROXY), ("select", Kind.PROXY),
        ("command", Kind.ANY), ("blpop", Kind.UNSUPPORTED), ("brpoplpush", Kind.UNSUPPORTED),
        ("subscribe", Kind.UNSUPPORTED), ("publish", Kind.UNSUPPORTED), ("multi", Kind.PROXY),
        ("exec", Kind.PROXY), ("discard", Kind.PROXY), ("watch", Kind.UNSUPPORTED), ("flushall", Kind.UNSUPPORTED),
        ("config|set", Kind.UNSUPPORTED), ("keys", Kind.UNSUPPORTED), ("shutdown", Kind.UNSUPPORTED),
    ],
)
def test_classification(name, kind):
    assert TABLE[name.encode()].kind == kind


def test_every_command_is_classified():
    assert len(COMMANDS) > 300
    for name in COMMANDS:
        spec = TABLE[name.encode()]
        assert spec.kind in Kind
        if spec.kind == Kind.UNSUPPORTED:
            assert spec.reason


def test_lookup_is_case_insensitive_and_resolves_subcommands():
    assert lookup([b"GeT", b"k"]).name == "get"
    assert lookup([b"OBJECT", b"encoding", b"k"]).name == "object|encoding"
    assert lookup([b"client", b"SETNAME", b"x"]).kind == Kind.PROXY
    assert lookup([b"nosuchcommand"]) is None


def test_key_positions():
    assert keys_of(TABLE[b"mset"], [b"MSET", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    assert keys_of(TABLE[b"get"], [b"GET", b"k"]) == [b"k"]
    assert keys_of(TABLE[b"rename"], [b"RENAME", b"a", b"b"]) == [b"a", b"b"]
    assert keys_of(TABLE[b"eval"], [b"EVAL", b"return 1", b"2", b"k1", b"k2", b"arg"]) == [b"k1", b"k2"]
    assert keys_of(TABLE[b"zunionstore"], [b"ZUNIONSTORE", b"d", b"2", b"a", b"b"]) == [b"d", b"a", b"b"]
    assert keys_of(TABLE[b"xread"], [b"XREAD", b"COUNT", b"2", b"STREAMS", b"s1", b"s2", b"0", b"0"]) == [
        b"s1", b"s2"]
    assert keys_of(TABLE[b"sort"], [b"SORT", b"l", b"STORE", b"dst"]) == [b"l", b"dst"]
    assert keys_of(TABLE[b"eval"], [b"EVAL", b"x", b"9"]) == []


def test_arity():
    assert TABLE[b"get"].arity_ok(2) and not TABLE[b"get"].arity_ok(3)
    assert TABLE[b"mget"].arity_ok(5) and not TABLE[b"mget"].arity_ok(1)


def test_blocking_xread_refused():
    assert is_blocking_call(TABLE[b"xread"], [b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"$"])
    assert not is_blocking_call(TABLE[b"xread"], [b"XREAD", b"STREAMS", b"s", b"0"])


def test_fast_path_table_matches_the_spec():
    # the session's inlined hot path checks arity and picks the key from SINGLE_KEY alone
    from nexus_fast.redis.commands import SINGLE_KEY

    assert SINGLE_KEY[b"GET"] == (1, 2, 2) and SINGLE_KEY[b"set"] == (1, 3, 1 << 30)
    for name, (first, least, most) in SINGLE_KEY.items():
        spec = TABLE[name]
        assert spec.kind == Kind.SINGLE and not spec.container and spec.first == first
        for argc in range(1, 6):
            assert (least <= argc <= most) == spec.arity_ok(argc)
    assert b"MGET" not in SINGLE_KEY and b"PING" not in SINGLE_KEY and b"CLIENT" not in SINGLE_KEY

"""The admin console's sans-IO parts: exact wire bytes, command parsing, PgBouncer units, permissions."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

import pytest

from nexus_fast.postgres import admin_console as ac
from nexus_fast.postgres.config import PostgresConfig
from nexus_fast.postgres.pool import PoolStats


def _messages(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        kind = data[pos:pos + 1]
        (length,) = struct.unpack("!i", data[pos + 1:pos + 5])
        out.append((kind, data[pos + 5:pos + 1 + length]))
        pos += 1 + length
    return out


def test_encode_result_wire_bytes() -> None:
    data = ac.encode_result([("list", ac.TEXT), ("items", ac.INT4)], [("pools", 2), ("users", None)])
    msgs = _messages(data)
    assert [k for k, _ in msgs] == [b"T", b"D", b"D", b"C"]
    # RowDescription: 2 fields; each: name\0, table oid, attnum, type oid, typlen, typmod, format
    assert msgs[0][1] == (
        b"\x00\x02"
        + b"list\x00" + struct.pack("!ihihih", 0, 0, 25, -1, -1, 0)
        + b"items\x00" + struct.pack("!ihihih", 0, 0, 23, 4, -1, 0)
    )
    assert msgs[1][1] == b"\x00\x02" + b"\x00\x00\x00\x05pools" + b"\x00\x00\x00\x012"
    assert msgs[2][1] == b"\x00\x02" + b"\x00\x00\x00\x05users" + b"\xff\xff\xff\xff"  # NULL is length -1
    assert msgs[3][1] == b"SHOW\x00"


def test_value_text_forms() -> None:
    row = _messages(ac.data_row([True, False, 1.5, 2.0, 7, "x"]))[0][1]
    assert b"\x00\x00\x00\x011" in row and b"\x00\x00\x00\x010" in row
    assert b"\x00\x00\x00\x031.5" in row and b"\x00\x00\x00\x012" in row


@pytest.mark.parametrize(
    ("sql", "parsed"),
    [
        ("SHOW POOLS", ("SHOW", ["POOLS"])),
        ("show pools;", ("SHOW", ["pools"])),
        ("  pause  appdb ; ", ("PAUSE", ["appdb"])),
        ("", ("", [])),
        (";", ("", [])),
    ],
)
def test_parse_command(sql: str, parsed: tuple[str, list[str]]) -> None:
    assert ac.parse_command(sql) == parsed


def test_split_wait_is_seconds_and_microsecond_remainder() -> None:
    assert ac.split_wait(0.0) == (0, 0)
    assert ac.split_wait(2.5) == (2, 500000)
    assert ac.split_wait(0.000123) == (0, 123)


def test_config_rows_use_pgbouncer_units() -> None:
    cfg = PostgresConfig.model_validate({"server_idle_timeout": "10m", "query_timeout": "1500ms",
                                         "admin_users": ["a", "b"], "auth_password": "secret"})
    rows = {row[0]: row for row in ac.config_rows(cfg)}
    assert rows["server_idle_timeout"][1:] == ["600", "600", "yes"]
    assert rows["query_timeout"][1] == "1.5"
    assert rows["tcp_keepalive"][1] == "1"
    assert rows["max_client_conn"][1] == "10000"
    assert rows["admin_users"][1] == "a,b"
    assert rows["auth_password"][1] == "********"  # never a secret on the console
    assert rows["listen"][3] == "no"
    assert "databases" not in rows and "users" not in rows


class _Pool:
    def __init__(self, name: str, user: str, index: int, stats: PoolStats, active: int = 0, idle: int = 0) -> None:
        self.name, self.user, self.server_index = name, user, index
        self.stats = stats
        self.active = {object() for _ in range(active)}
        self.idle = [object() for _ in range(idle)]
        self.paused = False
        self.waiters: list[Any] = []
        self.closed = False

    def refresh_stats(self) -> PoolStats:
        self.stats.sv_active, self.stats.sv_idle = len(self.active), len(self.idle)
        return self.stats

    def size(self) -> int:
        return len(self.active) + len(self.idle)

    def servers(self) -> list[Any]:
        return []


def _plane(pools: list[_Pool]) -> Any:
    cfg = PostgresConfig.model_validate({"stats_period": "10s", "databases": {"app": {}}})
    return SimpleNamespace(config=cfg, pools={(p.name, p.user, p.server_index): p for p in pools}, sessions=set(),
                           paused=False, routers={}, secrets={})


async def test_pools_of_one_database_and_user_are_added_up() -> None:
    pools = [
        _Pool("app", "alice", 0, PoolStats("app", "alice", "transaction", maxwait_us=1_500_000), active=2, idle=1),
        _Pool("app", "alice", 1, PoolStats("app", "alice", "transaction"), active=1, idle=3),
    ]
    console = ac.AdminConsole(_plane(pools))
    data = await console.execute("SHOW POOLS", SimpleNamespace(is_admin=False))
    rows = [m for k, m in _messages(data) if k == b"D"]
    assert len(rows) == 2  # the admin database's row, then app/alice once
    fields = _fields(rows[1])
    assert fields[:2] == [b"app", b"alice"]
    assert fields[6] == b"3" and fields[9] == b"4"  # sv_active, sv_idle summed
    assert fields[13:15] == [b"1", b"500000"]  # maxwait, maxwait_us


async def test_stats_averages_cover_a_whole_stats_period() -> None:
    now = [1000.0]
    stats = PoolStats("app", "alice", "transaction")
    console = ac.AdminConsole(_plane([_Pool("app", "alice", 0, stats)]), clock=lambda: now[0])
    stats.total_xact_count, stats.total_xact_time = 50, 50 * 2000
    first = _row(await console.execute("SHOW STATS", None), b"app")
    assert first[1] == b"50" and first[8] == b"0"  # totals now; no full period yet -> averages 0
    now[0] += 10.0
    stats.total_xact_count, stats.total_xact_time = 150, 150 * 2000
    later = _row(await console.execute("SHOW STATS", None), b"app")
    assert later[1] == b"150"
    assert later[8] == b"15"  # 150 transactions over the 10 s period
    assert later[12] == b"2000"  # avg_xact_time: microseconds per transaction


async def test_commands_need_an_admin_user() -> None:
    console = ac.AdminConsole(_plane([]))
    for command in ("PAUSE", "RESUME", "RELOAD", "KILL app", "SHUTDOWN", "SET default_pool_size = 3"):
        data = await console.execute(command, SimpleNamespace(is_admin=False))
        assert _messages(data)[0][0] == b"E"
        assert b"admin access needed" in data


async def test_unknown_and_malformed_commands_get_pgbouncer_errors() -> None:
    console = ac.AdminConsole(_plane([]))
    admin = SimpleNamespace(is_admin=True)
    assert b"invalid command 'SELECT 1', use SHOW HELP;" in await console.execute("SELECT 1", admin)
    assert b"invalid command 'SHOW NOTHING'" in await console.execute("SHOW NOTHING", admin)
    assert b"invalid command 'SHOW __class__'" in await console.execute("SHOW __class__", admin)
    assert b"no such database: nosuch" in await console.execute("KILL nosuch", admin)
    assert b"pooler is not paused/suspended" in await console.execute("RESUME", admin)


async def test_reload_and_shutdown_use_the_plane_hooks() -> None:
    calls: list[str] = []
    plane = _plane([])

    async def reload() -> None:
        calls.append("reload")

    async def shutdown() -> None:
        calls.append("shutdown")

    plane.admin_reload, plane.admin_shutdown = reload, shutdown
    console = ac.AdminConsole(plane)
    admin = SimpleNamespace(is_admin=True)
    assert _messages(await console.execute("RELOAD", admin)) == [(b"C", b"RELOAD\x00")]
    assert _messages(await console.execute("SHUTDOWN;", admin)) == [(b"C", b"SHUTDOWN\x00")]
    assert calls == ["reload", "shutdown"]


async def test_reload_without_a_handler_is_refused_not_fatal() -> None:
    # Under pytest SIGHUP has its default action (terminate): the console must refuse rather than signal.
    data = await ac.AdminConsole(_plane([])).execute("RELOAD", SimpleNamespace(is_admin=True))
    assert b"RELOAD is not available" in data


def _fields(body: bytes) -> list[bytes | None]:
    (count,) = struct.unpack("!h", body[:2])
    pos, out = 2, []
    for _ in range(count):
        (length,) = struct.unpack("!i", body[pos:pos + 4])
        pos += 4
        if length < 0:
            out.append(None)
        else:
            out.append(body[pos:pos + length])
            pos += length
    return out


def _row(data: bytes, first: bytes) -> list[bytes | None]:
    return next(f for f in (_fields(m) for k, m in _messages(data) if k == b"D") if f[0] == first)

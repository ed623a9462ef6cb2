"""The router's decisions, sans-IO: a config, a fake clock, and the replica state fed as the monitor would."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_fast.config.schema import NexusConfig
from nexus_fast.observe.metrics import Metrics
from nexus_fast.postgres.config import PostgresConfig
from nexus_fast.postgres.replica_monitor import ReplicaSample, estimate_lag, parse_lsn
from nexus_fast.postgres.route import ClientRouteState, make_router
from nexus_fast.postgres.router import RouteContext, Router, RoutingDecision


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(replicas: int = 2, clock: Clock | None = None, metrics: Metrics | None = None, **db: object) -> Router:
    servers = [{"host": "10.0.0.1", "port": 5432, "role": "primary"}]
    servers += [{"host": f"10.0.0.{i + 2}", "port": 5432, "role": "replica"} for i in range(replicas)]
    pg = PostgresConfig.model_validate(
        {"read_only_functions": ["report"], "databases": {"app": {"servers": servers, **db}}}
    )
    return Router("app", pg.databases["app"], pg, metrics, clock=clock or Clock())


def client(**kw: object) -> ClientRouteState:
    return ClientRouteState(database="app", user="alice", **kw)  # type: ignore[arg-type]


def test_reads_go_to_replicas_round_robin_and_writes_to_the_primary() -> None:
    router = make()
    state = client()
    picks = [router.route("SELECT 1", state) for _ in range(4)]
    assert [d.role for d in picks] == ["replica"] * 4
    assert [d.server_index for d in picks] == [1, 2, 1, 2]
    write = router.route("INSERT INTO t VALUES (1)", state)
    assert (write.role, write.server_index) == ("primary", 0)
    assert write.reason == "writes: write: INSERT"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t FOR UPDATE",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "SELECT nextval('s')",
        "SELECT my_func()",
        "BEGIN",
        "SET search_path = a",
        "LOCK TABLE t",
        "COPY t FROM STDIN",
        "CREATE TABLE x (a int)",
    ],
)
def test_primary_only_statements(sql: str) -> None:
    decision = make().route(sql, client())
    assert (decision.role, decision.server_index) == ("primary", 0)
    assert decision.reason.startswith("writes: ")


def test_configured_read_only_function_is_a_read() -> None:
    assert make().route("SELECT report(1)", client()).role == "replica"


def test_the_seam_builds_our_router() -> None:
    config = NexusConfig.model_validate({"postgres": {"databases": {"app": {"servers": [
        {"host": "a", "role": "primary"}, {"host": "b", "role": "replica"}]}}}})
    assert config.postgres is not None
    router = make_router("app", config.postgres.databases["app"], config.postgres, Metrics())
    assert isinstance(router, Router)
    decision = router.route("SELECT 1", client())
    assert isinstance(decision, RoutingDecision)
    assert (decision.role, decision.server_index) == ("replica", 1)


def test_inside_a_transaction_everything_stays_on_the_primary() -> None:
    decision = make().route("SELECT 1", client(in_transaction=True))
    assert (decision.role, decision.reason) == ("primary", "in_transaction")


def test_hints() -> None:
    router = make()
    assert router.route("/* nexus:primary */ SELECT 1", client()).role == "primary"
    assert router.route("/* nexus:primary */ SELECT 1", client()).reason == "forced_role: primary"
    # A replica hint lifts the unknown-function rule ...
    hinted = router.route("/* nexus:replica */ SELECT my_report()", client())
    assert hinted.role == "replica"
    # ... but never sends a certain write to a standby, which would refuse it.
    refused = router.route("/* nexus:replica */ INSERT INTO t VALUES (1)", client())
    assert refused.role == "primary"
    assert refused.reason.startswith("forced_role: replica refused")
    assert router.route("/* nexus:replica */ SELECT * FROM t FOR UPDATE", client()).role == "primary"
    assert router.route("/* nexus:replica */ BEGIN", client()).role == "primary"


def test_set_nexus_role_is_answered_locally_and_sticks() -> None:
    router = make()
    state = client()
    decision = router.route("SET nexus.role = 'primary'", state)
    assert decision.local_reply == ("SET",)
    assert decision.error is None
    assert state.role_override == "primary"
    assert router.route("SELECT 1", state).role == "primary"
    assert router.route("SET nexus.role TO replica", state).local_reply == ("SET",)
    assert router.route("SELECT my_func()", state).role == "replica"
    assert router.route("UPDATE t SET a = 1", state).role == "primary"
    assert router.route("RESET nexus.role", state).local_reply == ("RESET",)
    assert state.role_override == "auto"
    assert router.route("SELECT my_func()", state).role == "primary"


def test_bad_nexus_settings_are_refused() -> None:
    router = make()
    state = client()
    bad = router.route("SET nexus.role = 'sideways'", state)
    assert "invalid value for nexus.role" in (bad.error or "") and bad.error_sqlstate == "22023"
    assert router.route("SET nexus.colour = 1", state).error_sqlstate == "42704"
    assert router.route("SET nexus.role = 'primary'; SELECT 1", state).error_sqlstate == "0A000"
    assert state.role_override == "auto"
    assert "unrecognized configuration parameter" in (router.route("SET nexus.colour = 'red'", state).error or "")
    mixed = router.route("SET nexus.role = 'primary'; SELECT 1", state)
    assert mixed.error is not None and mixed.local_reply is None
    assert state.role_override == "auto"
    assert router.route("SET nexus.shard_key = 42", state).local_reply == ("SET",)
    assert state.extra["nexus.shard_key"] == "42"


def test_read_your_writes_window() -> None:
    clock = Clock()
    router = make(clock=clock, read_your_writes="2s")
    state, other = client(), client()
    router.route("UPDATE t SET a = 1", state)
    assert router.route("SELECT 1", state).reason == "read_your_writes"
    assert router.route("SELECT 1", other).role == "replica"  # only the writer is pinned
    clock.now += 1.9
    assert router.route("SELECT 1", state).role == "primary"
    clock.now += 0.2
    assert router.route("SELECT 1", state).role == "replica"
    # A transaction's BEGIN counts as a write too; note_write restarts the window at its end.
    router.route("BEGIN", state)
    clock.now += 5
    router.note_write(state)
    assert router.route("SELECT 1", state).role == "primary"
    # SET nexus.role = 'replica' is an explicit choice: it overrides the window.
    router.route("SET nexus.role = replica", state)
    assert router.route("SELECT 1", state).role == "replica"


def test_read_your_writes_off_by_default() -> None:
    router = make()
    state = client()
    router.route("UPDATE t SET a = 1", state)
    assert router.route("SELECT 1", state).role == "replica"


def test_lagging_replica_is_taken_out_and_comes_back() -> None:
    router = make(max_replica_lag="5s")
    router.replica_observed(1, 12.0, True)
    assert {router.route("SELECT 1", client()).server_index for _ in range(6)} == {2}
    assert router.health()[0].reason == "replica lag 12.0s > 5s"
    assert not router.health()[0].healthy
    router.replica_observed(1, 0.5, True)
    assert {router.route("SELECT 1", client()).server_index for _ in range(6)} == {1, 2}


def test_banned_replica_stays_out_for_ban_time_after_its_latest_failure() -> None:
    clock = Clock()
    router = make(clock=clock, ban_time="10s")
    router.on_server_error(2, "connect refused")
    assert {router.route("SELECT 1", client()).server_index for _ in range(4)} == {1}
    clock.now += 6
    router.replica_failed(2, "health check failed")  # still failing: the ban runs from now
    clock.now += 6
    assert {router.route("SELECT 1", client()).server_index for _ in range(4)} == {1}
    assert "banned" in router.health()[1].reason
    clock.now += 5
    assert {router.route("SELECT 1", client()).server_index for _ in range(4)} == {1, 2}
    router.on_server_error(0, "primary down")  # the primary is never banned from the router's view
    assert router.route("INSERT INTO t VALUES (1)", client()).server_index == 0


def test_every_replica_out_means_reads_go_to_the_primary() -> None:
    router = make()
    router.on_server_error(1, "down")
    router.replica_observed(2, 99.0, True)
    decision = router.route("SELECT 1", client())
    assert (decision.role, decision.server_index) == ("primary", 0)
    assert decision.reason == "replica: no replica available"


def test_no_replicas_or_split_off() -> None:
    assert make(replicas=0).route("SELECT 1", client()).reason == "no_replicas"
    assert make(read_write_split=False).route("SELECT 1", client()).reason == "no_replicas"


@pytest.mark.parametrize("algorithm", ["round_robin", "random", "least_connections", "weighted_round_robin",
                                       "p2c_ewma", "ip_hash"])
def test_load_balancing_algorithms_spread_reads(algorithm: str) -> None:
    router = make(replicas=3, load_balancing=algorithm)
    counts: Counter[int] = Counter()
    for i in range(300):
        decision = router.route("SELECT 1", client(client_addr=f"10.1.0.{i % 50}"))
        counts[decision.server_index] += 1
        if algorithm in ("least_connections", "p2c_ewma") and i % 2 == 0:
            router.on_query_done(decision, 0.001)
    assert set(counts) == {1, 2, 3}
    assert min(counts.values()) > 30


def test_least_connections_prefers_the_idle_replica() -> None:
    router = make(replicas=2, load_balancing="least_connections")
    busy = router.route("SELECT 1", client())
    for _ in range(5):
        decision = router.route("SELECT 1", client())
        router.on_query_done(decision, 0.001)
        assert decision.server_index != busy.server_index


def test_ip_hash_keeps_a_client_on_one_replica() -> None:
    router = make(replicas=3, load_balancing="ip_hash")
    state = client(client_addr="192.168.7.7")
    assert len({router.route("SELECT 1", state).server_index for _ in range(20)}) == 1


def test_rules_chain_is_extensible_for_shards_and_cache() -> None:
    from nexus_fast.postgres.router import CachePolicy

    class ShardHint:
        name = "shard_hint"

        def __call__(self, router: Router, ctx: RouteContext) -> RoutingDecision | None:
            key = ctx.classification.hints.get("shard_key")
            if key is not None:
                ctx.shard = int(key) % 2
            if "cache" in ctx.classification.hints:
                ctx.cache = CachePolicy(ttl_s=30.0)
            return None  # pass: later rules choose the server

    router = make()
    router.rules.insert(1, ShardHint())
    decision = router.route("/* nexus:shard_key=5 cache */ SELECT 1", client())
    assert (decision.shard, decision.role) == (1, "replica")
    assert decision.cache == CachePolicy(ttl_s=30.0)


def test_metrics_count_decisions_and_export_lag() -> None:
    metrics = Metrics()
    router = make(metrics=metrics)
    router.route("SELECT 1", client())
    router.route("DELETE FROM t", client())
    router.replica_observed(1, 7.5, True)
    text = metrics.exposition().decode()
    assert 'nexus_postgres_route_decisions_total{database="app",role="replica",rule="replica"} 1.0' in text
    assert 'nexus_postgres_route_decisions_total{database="app",role="primary",rule="writes"} 1.0' in text
    assert 'nexus_postgres_replica_lag_seconds{database="app",server="10.0.0.2:5432"} 7.5' in text
    assert 'nexus_postgres_replica_available{database="app",server="10.0.0.2:5432"} 0.0' in text  # 7.5s > 5s
    router.replica_observed(1, 0.25, True)
    text = metrics.exposition().decode()
    assert 'nexus_postgres_replica_available{database="app",server="10.0.0.2:5432"} 1.0' in text


# --- lag arithmetic ------------------------------------------------------------------------------------------
def test_parse_lsn() -> None:
    assert parse_lsn("0/3000060") == 0x3000060
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert parse_lsn(None) is None


@pytest.mark.parametrize(
    ("sample", "primary_lsn", "behind_for", "lag"),
    [
        # caught up with the primary: no lag, however old the last replayed commit (idle primary)
        (ReplicaSample(True, 100, 100, 3600.0), 100, 0.0, 0.0),
        (ReplicaSample(True, 100, 120, 3600.0), 110, 0.0, 0.0),
        # behind the primary: the replay timestamp's age
        (ReplicaSample(True, 150, 100, 12.5), 150, 0.0, 12.5),
        (ReplicaSample(True, 100, 100, 4.0), 150, 0.0, 4.0),  # not even received yet
        # primary unknown: nothing pending locally means no lag; pending WAL means the timestamp's age
        (ReplicaSample(True, 100, 100, 3600.0), None, 0.0, 0.0),
        (ReplicaSample(True, 200, 100, 8.0), None, 0.0, 8.0),
        # nothing replayed since start (timestamp NULL): how long we have seen it behind
        (ReplicaSample(True, 200, 100, None), 300, 6.0, 6.0),
        # promoted: not a standby any more
        (ReplicaSample(False, None, None, None), 300, 50.0, 0.0),
        # clock skew between hosts can make the age negative
        (ReplicaSample(True, 100, 90, -0.2), 100, 0.0, 0.0),
    ],
)
def test_estimate_lag(sample: ReplicaSample, primary_lsn: int | None, behind_for: float, lag: float) -> None:
    assert estimate_lag(sample, primary_lsn, behind_for) == lag


@pytest.mark.parametrize("sql", ["", "  ", ";", "/* nexus:replica */", "-- nothing"])
def test_no_sql_means_the_primary(sql: str) -> None:
    # Session mode routes the whole session with "": it may write later, so only the primary will do.
    decision = make().route(sql, client())
    assert (decision.role, decision.reason) == ("primary", "no_statement")


def test_mixed_nexus_setting_is_not_read_only() -> None:
    from nexus_fast.postgres.sql_classify import classify

    result = classify("SET nexus.role = 'replica'; SELECT 1")
    assert not result.read_only and result.reason == "nexus setting mixed with SQL"


_SQLS = ["SELECT 1", "SELECT * FROM t", "INSERT INTO t VALUES (1)", "BEGIN", "COMMIT", "SELECT nextval('s')",
         "/* nexus:replica */ SELECT f()", "/* nexus:primary */ SELECT 1", "SET nexus.role = 'primary'",
         "SET nexus.role = 'auto'", "SET nexus.role = 'replica'", "SELECT 1 FOR UPDATE", ""]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_SQLS), st.booleans(), st.sampled_from([0.0, 0.4, 3.0]),
                          st.sampled_from(["none", "ban1", "lag2", "ok"])), min_size=1, max_size=25))
def test_fast_path_decides_as_the_rule_chain(steps: list[tuple[str, bool, float, str]]) -> None:
    from nexus_fast.postgres.router import DEFAULT_RULES

    clocks = [Clock(), Clock()]
    fast = make(replicas=2, clock=clocks[0], read_your_writes="1s", ban_time="1s")
    slow = make(replicas=2, clock=clocks[1], read_your_writes="1s", ban_time="1s",)
    slow.rules = [type(rule)() for rule in DEFAULT_RULES]  # equal behaviour, but not the default list: no fast path
    states = [client(), client()]
    for sql, in_tx, advance, event in steps:
        for router, clock, state in zip((fast, slow), clocks, states, strict=True):
            clock.now += advance
            state.in_transaction = in_tx
            if event == "ban1":
                router.on_server_error(1, "down")
            elif event == "lag2":
                router.replica_observed(2, 30.0, True)
            elif event == "ok":
                router.replica_observed(2, 0.0, True)
        a, b = fast.route(sql, states[0]), slow.route(sql, states[1])
        assert (a.role, a.server_index, a.reason, a.local_reply, a.error) == (
            b.role, b.server_index, b.reason, b.local_reply, b.error), sql
        assert states[0].role_override == states[1].role_override


def test_session_mode_sessions_go_to_the_primary_unless_asked() -> None:
    router = make()
    state = client(pool_mode="session")
    assert router.route("SELECT 1", state).reason == "session_mode"
    assert router.route("/* nexus:replica */ SELECT 1", state).role == "replica"
    router.route("SET nexus.role = replica", state)
    assert router.route("SELECT 1", state).role == "replica"
    assert router.route("SELECT 1", client(pool_mode="statement")).role == "replica"


def test_with_a_monitor_a_ban_ends_only_after_a_passing_health_check() -> None:
    clock = Clock()
    router = make(clock=clock, ban_time="1s")
    router.monitor = object()  # type: ignore[assignment]  # as if started: bans then wait for a probe
    router.on_server_error(1, "connect refused")
    clock.now += 5  # ban_time long over, but no probe has passed: still out (no flapping back in while down)
    assert {router.route("SELECT 1", client()).server_index for _ in range(4)} == {2}
    assert "waiting for a passing health check" in router.health()[0].reason
    router.replica_observed(1, 0.0, True)
    assert {router.route("SELECT 1", client()).server_index for _ in range(4)} == {1, 2}
    router.monitor = None


@pytest.mark.parametrize("reset", ["RESET ALL", "DISCARD ALL", "discard all;"])
def test_reset_all_and_discard_all_clear_nexus_settings(reset: str) -> None:
    router = make()
    state = client()
    router.route("SET nexus.role = 'primary'", state)
    router.route("SET nexus.shard_key = 3", state)
    decision = router.route(reset, state)
    assert decision.role == "primary"  # still forwarded: the server's settings reset too
    assert state.role_override == "auto" and "nexus.shard_key" not in state.extra
    assert router.route("SELECT 1", state).role == "replica"
    router.route("SET nexus.role = 'primary'", state)
    router.route("RESET search_path", state)  # a single setting: nexus.role stays
    assert state.role_override == "primary"


def test_weight_zero_replica_takes_no_reads() -> None:
    servers = [{"host": "p", "role": "primary"}, {"host": "r1", "role": "replica", "weight": 0},
               {"host": "r2", "role": "replica"}]
    pg = PostgresConfig.model_validate({"databases": {"app": {"servers": servers}}})
    router = Router("app", pg.databases["app"], pg, clock=Clock())
    assert {router.route("SELECT 1", client()).server_index for _ in range(5)} == {2}


def test_monitor_login_follows_the_plane_probes(tmp_path: Any) -> None:
    def router(**pg: Any) -> Router:
        db = pg.pop("db", {})
        config = PostgresConfig.model_validate({**pg, "databases": {"app": db}})
        return Router("app", config.databases["app"], config, clock=Clock())

    assert router().monitor_login() == ("postgres", None)
    assert router(db={"user": "svc", "password": "pw"}).monitor_login() == ("svc", "pw")
    assert router(auth_user="auth", auth_password="apw").monitor_login() == ("auth", "apw")
    assert router(users={"alice": {"password": "plain"}}).monitor_login() == ("alice", "plain")
    assert router(users={"alice": {"password": "md5" + "0" * 32}}).monitor_login() == ("alice", None)
    userlist = tmp_path / "userlist.txt"
    userlist.write_text('"auth" "from-file"\n')
    assert router(auth_user="auth", auth_file=str(userlist)).monitor_login() == ("auth", "from-file")

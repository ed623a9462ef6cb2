"""The SQL classifier, sans-IO: which query strings may run on a replica, and what they ask of the proxy."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_fast.postgres.sql_classify import (
    QIDENT,
    STRING,
    WORD,
    SqlClassifier,
    classify,
    parse_hint,
    split_statements,
    tokenize,
)

READS = [
    "SELECT 1",
    "select 1",
    "  \n\tSELECT 1  ;  ",
    "SELECT * FROM accounts WHERE id = $1",
    "SELECT count(*), sum(amount), avg(amount) FROM transactions GROUP BY account_id HAVING count(*) > 1",
    "SELECT now(), current_timestamp, current_date, clock_timestamp(), random()",
    "SELECT lower(name), upper(name), length(name), coalesce(a, b), nullif(a, 0), greatest(a, b) FROM t",
    "SELECT extract(epoch FROM now()), date_trunc('day', ts), to_char(ts, 'YYYY') FROM t",
    "SELECT substring(name FROM 1 FOR 3), trim(both ' ' FROM name), position('a' IN name) FROM t",
    "SELECT x::numeric(10,2), CAST(y AS varchar(10)), z::timestamp(3) FROM t",
    "SELECT * FROM generate_series(1, 10) AS g(n)",
    "SELECT * FROM generate_series(1, 10) g(n)",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, name)",
    "WITH recent AS (SELECT * FROM t WHERE ts > now() - interval '1 day') SELECT * FROM recent",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
    "WITH a(x) AS MATERIALIZED (SELECT 1) SELECT * FROM a",
    "SELECT * FROM t WHERE id IN (SELECT id FROM u) AND EXISTS (SELECT 1 FROM v WHERE v.id = t.id)",
    "SELECT a, row_number() OVER (PARTITION BY b ORDER BY c) FROM t",
    "SELECT count(*) FILTER (WHERE x > 0) FROM t",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM t",
    "SELECT jsonb_build_object('a', 1), json_agg(t), array_agg(x ORDER BY x) FROM t",
    "SELECT pg_catalog.lower('X')",
    "SELECT pg_is_in_recovery()",
    "SELECT version()",
    "VALUES (1), (2)",
    "TABLE accounts",
    "SHOW search_path",
    "SHOW ALL",
    "EXPLAIN SELECT * FROM t",
    "EXPLAIN ANALYZE SELECT * FROM t",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t",
    "(SELECT 1) UNION (SELECT 2)",
    "SELECT 1; SELECT 2;",
    "SELECT 'INSERT INTO t VALUES (1)'",
    "SELECT $$ DELETE FROM t $$",
    "SELECT $body$ UPDATE t SET a = 1; $body$",
    "SELECT E'it\\'s an update', 'it''s a delete'",
    'SELECT "update", "insert" FROM "delete"',
    "SELECT 1 -- UPDATE t SET x = 1",
    "SELECT /* DELETE FROM t; */ 1",
    "SELECT /* outer /* nested DELETE */ still comment; INSERT */ 1",
    "SELECT * FROM t WHERE note = 'for update'",
    "SELECT a FROM t ORDER BY a LIMIT 10 OFFSET 5",
    "COPY (SELECT * FROM t) TO STDOUT",
    "COPY accounts TO STDOUT WITH (FORMAT csv)",
    "SELECT x FROM t1 JOIN LATERAL unnest(t1.arr) AS u(x) ON true",
    "SELECT U&'d\\0061t\\+000061', B'1010', X'1F' ",
    "select ARRAY[1,2], ARRAY(SELECT 1), ROW(1, 2)",
    "SELECT t.* FROM ONLY t",
    "SELECT $1::int + $2::int",
    'SELECT "for", "update", "delete" FROM "insert"',
    "SELECT for_update, update_count FROM t",
    "SELECT x FROM t WHERE y = 'FOR UPDATE' AND z = $$FOR SHARE$$",
    "SELECT 1 /* FOR UPDATE */",
    "select\n  a\n from\n  t -- FOR UPDATE\n where b = 1",
    "SELECT $tag$ nested $$ still $$ string; DROP TABLE t; $tag$",
    "SELECT e'\\'; DELETE FROM t; --'",
    "WITH a AS (SELECT 1), b AS (SELECT 2) SELECT * FROM a, b",
    "SELECT * FROM t1 NATURAL JOIN t2 LEFT OUTER JOIN t3 USING (id)",
    "SELECT CASE WHEN a > 0 THEN upper(b) ELSE lower(b) END FROM t",
    "SELECT now() AT TIME ZONE 'UTC', x IS DISTINCT FROM y, a BETWEEN 1 AND 2 FROM t",
    "SELECT ROW(1, 2) = ROW(1, 2), EXISTS (SELECT 1), 1 = ANY(ARRAY[1, 2])",
    "SELECT count(DISTINCT a), string_agg(b, ',' ORDER BY b) FROM t",
    "SELECT * FROM jsonb_to_recordset('[]') AS x(a int, b text)",
    "SELECT * FROM unnest(ARRAY[1, 2]) WITH ORDINALITY AS u(v, n)",
    "SELECT t.id FROM ONLY t TABLESAMPLE SYSTEM (10) REPEATABLE (42)",
    "SELECT 'a' || 'b', 1 + 2 * 3 / 4 % 5, 2 ^ 3, |/ 16, @ -5",
    "SELECT x::text[]::varchar(5)[] FROM t",
    "  /* leading comment */ -- and another\n SELECT 1",
]

PRIMARY = [
    ("INSERT INTO t VALUES (1)", "write: INSERT"),
    ("insert into t(a, b) values (1, 2) returning id", "write: INSERT"),
    ("UPDATE t SET a = 1 WHERE id = 2", "write: UPDATE"),
    ("DELETE FROM t WHERE id = 1", "write: DELETE"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a", "write: MERGE"),
    ("SELECT * FROM t FOR UPDATE", "locking: SELECT ... FOR UPDATE"),
    ("SELECT * FROM t FOR NO KEY UPDATE", "locking: SELECT ... FOR NO KEY UPDATE"),
    ("SELECT * FROM t FOR SHARE", "locking: SELECT ... FOR SHARE"),
    ("SELECT * FROM t FOR KEY SHARE SKIP LOCKED", "locking: SELECT ... FOR KEY SHARE"),
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE OF t NOWAIT", "locking: SELECT ... FOR UPDATE"),
    ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", "locking: SELECT ... FOR UPDATE"),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "write: writing CTE (DELETE)"),
    ("WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM i", "write: writing CTE (INSERT)"),
    ("WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM u", "write: writing CTE (UPDATE)"),
    ("SELECT nextval('seq')", "function: nextval"),
    ("SELECT setval('seq', 10)", "function: setval"),
    ("SELECT currval('seq')", "function: currval"),
    ("SELECT pg_advisory_lock(42)", "function: pg_advisory_lock"),
    ("SELECT pg_try_advisory_xact_lock(42)", "function: pg_try_advisory_xact_lock"),
    ("SELECT txid_current()", "function: txid_current"),
    ("SELECT pg_current_wal_lsn()", "function: pg_current_wal_lsn"),
    ("SELECT my_function(1)", "function: my_function"),
    ("SELECT public.my_function(1)", "function: public.my_function"),
    ("SELECT public.lower('x')", "function: public.lower"),
    ('SELECT "MyFunc"(1)', "function: MyFunc"),
    ('SELECT "nextval"(\'s\')', "function: nextval"),
    ("SELECT a, f(a) AS b FROM t", "function: f"),
    ("SELECT * FROM t WHERE id = any(get_ids())", "function: get_ids"),
    ("SELECT * FROM my_set_returning_function(1)", "function: my_set_returning_function"),
    ("SELECT lower(name) FROM t WHERE audit_log(id)", "function: audit_log"),
    ("SELECT 1 INTO new_table", "write: SELECT INTO"),
    ("SELECT * INTO TEMP t2 FROM t", "write: SELECT INTO"),
    ("CREATE TABLE t (id int)", "ddl: CREATE"),
    ("create index concurrently on t (a)", "ddl: CREATE"),
    ("ALTER TABLE t ADD COLUMN b int", "ddl: ALTER"),
    ("DROP TABLE t", "ddl: DROP"),
    ("TRUNCATE t", "ddl: TRUNCATE"),
    ("GRANT SELECT ON t TO bob", "ddl: GRANT"),
    ("VACUUM t", "ddl: VACUUM"),
    ("ANALYZE t", "ddl: ANALYZE"),
    ("REFRESH MATERIALIZED VIEW mv", "ddl: REFRESH"),
    ("COMMENT ON TABLE t IS 'x'", "ddl: COMMENT"),
    ("BEGIN", "transaction: BEGIN"),
    ("begin isolation level serializable", "transaction: BEGIN"),
    ("BEGIN READ ONLY", "transaction: BEGIN"),
    ("START TRANSACTION", "transaction: BEGIN"),
    ("COMMIT", "transaction: COMMIT"),
    ("ROLLBACK", "transaction: ROLLBACK"),
    ("END", "transaction: END"),
    ("ABORT", "transaction: ABORT"),
    ("SAVEPOINT a", "transaction: SAVEPOINT"),
    ("RELEASE SAVEPOINT a", "transaction: RELEASE"),
    ("PREPARE TRANSACTION 'x'", "transaction: PREPARE"),
    ("SET search_path = app", "session: SET"),
    ("SET LOCAL statement_timeout = '1s'", "session: SET"),
    ("RESET ALL", "session: RESET"),
    ("DISCARD ALL", "session: DISCARD"),
    ("LISTEN events", "session: LISTEN"),
    ("NOTIFY events, 'x'", "session: NOTIFY"),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "lock: LOCK TABLE"),
    ("COPY t FROM STDIN", "write: COPY FROM"),
    ("COPY t (a, b) FROM '/tmp/x.csv' WITH (FORMAT csv)", "write: COPY FROM"),
    ("COPY (SELECT nextval('s')) TO STDOUT", "function: nextval"),
    ("DECLARE c CURSOR FOR SELECT 1", "cursor: DECLARE"),
    ("FETCH 10 FROM c", "cursor: FETCH"),
    ("CALL do_things()", "call: CALL"),
    ("DO $$ BEGIN PERFORM 1; END $$", "call: DO"),
    ("EXECUTE stmt(1)", "call: EXECUTE"),
    ("EXPLAIN ANALYZE DELETE FROM t", "write: DELETE"),
    ("EXPLAIN (ANALYZE) INSERT INTO t VALUES (1)", "write: INSERT"),
    ("SELECT 1; UPDATE t SET a = 1", "write: UPDATE"),
    ("SELECT 1; SELECT nextval('s')", "function: nextval"),
    ("SELECT 1; BEGIN; SELECT 2; COMMIT", "transaction: BEGIN"),
    ("FROBNICATE everything", "unrecognised: frobnicate"),
    ("SELECT 1; /* nothing */ ; DELETE FROM t", "write: DELETE"),
    ("SELECT $a$;$a$; TRUNCATE t", "ddl: TRUNCATE"),
    ('SELECT "my schema"."my func"(1)', "function: my schema.my func"),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)", "locking: SELECT ... FOR SHARE"),
    ("WITH RECURSIVE r AS (SELECT 1) UPDATE t SET a = 1", "write: writing CTE (UPDATE)"),
    ("WITH m AS (MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE) SELECT 1", "write: writing CTE (MERGE)"),
    ("SELECT set_config('search_path', 'x', false)", "function: set_config"),
    ("SELECT pg_notify('c', 'x')", "function: pg_notify"),
    ("SELECT lo_import('/etc/passwd')", "function: lo_import"),
    ("SELECT dblink_exec('dbname=x', 'DELETE FROM t')", "function: dblink_exec"),
    ("SELECT * FROM t, LATERAL audit(t.id) a", "function: audit"),
    ("SELECT (SELECT nextval('s'))", "function: nextval"),
    ("SELECT 1 UNION SELECT nextval('s')", "function: nextval"),
    ("COPY (SELECT * FROM t FOR UPDATE) TO STDOUT", "locking: SELECT ... FOR UPDATE"),
    ("EXPLAIN ANALYZE SELECT nextval('s')", "function: nextval"),
    ("IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y", "ddl: IMPORT"),
    ("SECURITY LABEL ON TABLE t IS 'x'", "ddl: SECURITY"),
    ("CLUSTER t USING i", "ddl: CLUSTER"),
    ("REINDEX TABLE t", "ddl: REINDEX"),
    ("UNLISTEN *", "session: UNLISTEN"),
    ("DEALLOCATE ALL", "session: DEALLOCATE"),
    ("CHECKPOINT", "session: CHECKPOINT"),
    ("MOVE FORWARD 5 IN c", "cursor: MOVE"),
    ("CLOSE c", "cursor: CLOSE"),
    ("PREPARE q AS SELECT 1", "transaction: PREPARE"),
]


@pytest.mark.parametrize("sql", READS)
def test_reads_may_go_to_a_replica(sql: str) -> None:
    result = SqlClassifier().classify(sql)
    assert result.read_only, (sql, result.reason)
    assert result.reason == ""
    assert not result.writes
    assert not result.locking


@pytest.mark.parametrize(("sql", "reason"), PRIMARY)
def test_these_stay_on_the_primary_and_say_why(sql: str, reason: str) -> None:
    result = SqlClassifier().classify(sql)
    assert not result.read_only, sql
    assert result.reason == reason


@pytest.mark.parametrize(
    ("sql", "writes"),
    [
        ("INSERT INTO t VALUES (1)", True),
        ("CREATE TABLE t (a int)", True),
        ("SELECT nextval('s')", True),  # unknown or writing function: treated as a write
        ("SELECT * FROM t FOR UPDATE", False),  # locks, does not write
        ("BEGIN", False),
        ("SET x = 1", False),
        ("SELECT 1", False),
    ],
)
def test_writes_flag(sql: str, writes: bool) -> None:
    assert classify(sql).writes is writes


def test_transaction_flags_and_statement_count() -> None:
    result = classify("BEGIN; UPDATE t SET a = 1; COMMIT;")
    assert result.begins_transaction and result.ends_transaction
    assert result.statement_count == 3
    assert result.kind == "begin"
    assert classify("ROLLBACK").ends_transaction and not classify("ROLLBACK").begins_transaction


def test_empty_and_comment_only_strings_are_harmless() -> None:
    for sql in ("", "   ", ";", ";;", "-- nothing", "/* nothing */"):
        result = classify(sql)
        assert result.read_only and result.kind == "empty" and result.statement_count == 0


def test_configured_read_only_functions_may_go_to_a_replica() -> None:
    classifier = SqlClassifier(["report_totals", "billing.balance_of", "Quoted"])
    assert classifier.classify("SELECT report_totals(1)").read_only
    assert classifier.classify("SELECT REPORT_TOTALS(1)").read_only  # unquoted names fold to lower case
    assert classifier.classify("SELECT billing.balance_of(1)").read_only
    assert not classifier.classify("SELECT other.balance_of(1)").read_only
    assert not classifier.classify("SELECT balance_of(1)").read_only  # listed only schema-qualified
    assert classifier.classify('SELECT "Quoted"(1)').read_only
    assert not classifier.classify("SELECT nextval('s')").read_only


def test_functions_and_tables_are_reported() -> None:
    result = classify("SELECT lower(a.name), count(*) FROM public.accounts a, fx JOIN ledger l ON l.id = a.id")
    assert result.functions == ("lower", "count")
    assert result.tables == ("public.accounts", "fx", "ledger")
    assert classify("UPDATE accounts SET x = 1").tables == ("accounts",)
    assert classify("INSERT INTO audit.events (a) VALUES (1)").tables == ("audit.events",)
    assert classify('SELECT * FROM "Weird Name"').tables == ("Weird Name",)


@pytest.mark.parametrize(
    ("sql", "hints"),
    [
        ("/* nexus:primary */ SELECT 1", {"role": "primary"}),
        ("SELECT 1 /* nexus:replica */", {"role": "replica"}),
        ("/*nexus:role=replica*/ SELECT 1", {"role": "replica"}),
        ("-- nexus:primary\nSELECT 1", {"role": "primary"}),
        ("/* nexus:replica cache ttl=30s */ SELECT 1", {"role": "replica", "cache": "", "ttl": "30s"}),
        ("/* nexus:shard_key=42 */ SELECT * FROM t", {"shard_key": "42"}),
        ("/* nexus:replica */ /* nexus:shard_key='7' */ SELECT 1", {"role": "replica", "shard_key": "7"}),
        ("/* just a comment mentioning nexus:primary */ SELECT 1", {}),
        ("SELECT '/* nexus:primary */'", {}),
        ("SELECT $$ /* nexus:primary */ $$", {}),
    ],
)
def test_hints_come_from_comments_only(sql: str, hints: dict[str, str]) -> None:
    assert dict(classify(sql).hints) == hints


def test_parse_hint_ignores_other_comments() -> None:
    assert parse_hint(" nexus:primary ") == {"role": "primary"}
    assert parse_hint("application comment") == {}
    assert parse_hint("nexus: replica, nexus:cache") == {"role": "replica", "cache": ""}


@pytest.mark.parametrize(
    ("sql", "settings_"),
    [
        ("SET nexus.role = 'primary'", (("role", "primary"),)),
        ("SET nexus.role TO replica", (("role", "replica"),)),
        ("set NEXUS.ROLE = 'auto'", (("role", "auto"),)),
        ("SET SESSION nexus.role = 'replica'", (("role", "replica"),)),
        ("SET nexus.role = DEFAULT", (("role", None),)),
        ("RESET nexus.role", (("role", None),)),
        ("SET nexus.shard_key = 42", (("shard_key", "42"),)),
        ("SET nexus.role = 'primary'; SET nexus.shard_key = '1'", (("role", "primary"), ("shard_key", "1"))),
    ],
)
def test_nexus_settings_are_recognised(sql: str, settings_: tuple[tuple[str, str | None], ...]) -> None:
    result = classify(sql)
    assert result.nexus_settings == settings_
    assert result.only_nexus_settings
    assert result.kind == "nexus"


def test_nexus_setting_mixed_with_sql_is_flagged() -> None:
    result = classify("SET nexus.role = 'replica'; SELECT 1")
    assert result.nexus_settings == (("role", "replica"),)
    assert not result.only_nexus_settings
    assert classify("SET nexusx.role = 'a'").nexus_settings == ()
    assert classify("SET search_path = nexus").nexus_settings == ()


def test_tokenizer_lexical_rules() -> None:
    tokens, comments = tokenize("SELECT \"A\"\"b\", 'x''y', $t$ '; $t$, e'\\'', 1.5e3 /* c /* d */ e */ -- tail")
    kinds = [(t.kind, t.text) for t in tokens]
    assert kinds[0] == (WORD, "select")
    assert (QIDENT, 'A"b') in kinds
    assert [t.text for t in tokens if t.kind == STRING] == ["'x''y'", "$t$ '; $t$", "e'\\''"]
    assert comments == [" c /* d */ e ", " tail"]
    # A semicolon inside a string, a dollar quote or a comment does not split statements.
    tokens, _ = tokenize("SELECT ';'; SELECT $$;$$; /* ; */ SELECT 3")
    assert len(split_statements(tokens)) == 3


def test_unterminated_constructs_do_not_crash() -> None:
    for sql in ("SELECT 'abc", 'SELECT "abc', "SELECT $$ abc", "SELECT /* abc", "SELECT e'\\", "SELECT $1 $"):
        result = classify(sql)
        assert result.kind == "read"


def test_results_are_cached_per_text() -> None:
    classifier = SqlClassifier(cache_size=2)
    first = classifier.classify("SELECT a")
    assert classifier.classify("SELECT a") is first
    classifier.classify("SELECT b")
    classifier.classify("SELECT c")
    assert classifier.classify("SELECT a") is not first  # evicted (LRU of 2)


def test_texts_differing_only_in_numbers_share_a_result() -> None:
    classifier = SqlClassifier()
    first = classifier.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 123;")
    assert classifier.classify("SELECT abalance FROM pgbench_accounts WHERE aid = 98765;") is first
    assert classifier.classify("SELECT abalance FROM pgbench_accounts2 WHERE aid = 1;") is not first
    # hints and SET nexus.* carry numbers that matter: never shared
    a = classifier.classify("/* nexus:shard_key=1 */ SELECT 1")
    b = classifier.classify("/* nexus:shard_key=2 */ SELECT 1")
    assert (dict(a.hints), dict(b.hints)) == ({"shard_key": "1"}, {"shard_key": "2"})
    assert classifier.classify("SET NEXUS.shard_key = 7").nexus_settings == (("shard_key", "7"),)
    assert classifier.classify("SET NEXUS.shard_key = 8").nexus_settings == (("shard_key", "8"),)


_noise = st.sampled_from([" ", "\n", "\t", " /* nexus:nothing */ ", " -- c\n", " /* a /* b */ c */ "])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(READS[:20] + [p for p, _ in PRIMARY[:20]]), _noise), min_size=1, max_size=3))
def test_whitespace_and_comments_never_change_the_routing(parts: list[tuple[str, str]]) -> None:
    plain = "; ".join(sql for sql, _ in parts)
    noisy = "; ".join(noise + sql.replace(" ", noise, 1) + noise for sql, noise in parts)
    a, b = classify(plain), classify(noisy)
    assert (a.read_only, a.reason, a.writes) == (b.read_only, b.reason, b.writes)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_classifies_without_error(text: str) -> None:
    result = SqlClassifier().classify(text)
    assert isinstance(result.read_only, bool)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="'"), max_size=60))
def test_words_inside_string_constants_never_make_a_write(inner: str) -> None:
    assert classify(f"SELECT '{inner}'").read_only
    assert classify(f"SELECT $x${inner.replace('$', '')}$x$").read_only

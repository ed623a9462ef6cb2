"""The classifier splits statements exactly as PostgreSQL does: checked against the machine's server.

For each tricky multi-statement string (semicolons hidden in strings, escape strings, dollar quotes, nested
comments, quoted identifiers), the number of results PostgreSQL returns for one simple Query equals the
classifier's statement count. Only SELECTs: nothing is written.
"""

from __future__ import annotations

import psycopg
import pytest

from nexus_fast._testing.postgres import system_postgres_dsn
from nexus_fast.postgres.sql_classify import classify

CASES = [
    "SELECT 1",
    "SELECT 1; SELECT 2",
    "SELECT ';'; SELECT 2",
    "SELECT 'it''s; here'; SELECT 2; SELECT 3",
    "SELECT E'\\'; SELECT 99; --'",
    "SELECT E'\\\\'; SELECT 2",
    "SELECT $$;$$; SELECT $a$ $$ ; $$ $a$",
    "SELECT $a$;$b$;$a$",
    "SELECT 1 /* ; /* nested ; */ ; */; SELECT 2",
    "SELECT 1 -- ; SELECT 2\n; SELECT 3",
    'SELECT 1 AS ";"; SELECT 2 AS "a""b;"',
    "SELECT U&'\\0041;'; SELECT B'1'",
    "SELECT 1;;; SELECT 2;",
]


def _results(conn: psycopg.Connection, sql: str) -> int | str:
    conn.pgconn.send_query(sql.encode())
    count, error = 0, ""
    while (result := conn.pgconn.get_result()) is not None:
        if result.status == psycopg.pq.ExecStatus.FATAL_ERROR:
            error = (result.error_message or b"").decode()
        else:
            count += 1
    return error or count


@pytest.mark.parametrize("sql", CASES)
def test_statement_count_matches_postgresql(sql: str) -> None:
    with psycopg.connect(system_postgres_dsn("postgres"), autocommit=True) as conn:
        assert _results(conn, sql) == classify(sql).statement_count


def test_every_case_reads_only() -> None:
    assert all(classify(sql).read_only for sql in CASES)

"""Sans-IO SQL classification for routing: can this query string run on a hot standby, and what does it ask of us?

The router needs a few facts per query string, fast and without a server: is every statement read-only (so a replica
may serve it), does it write (read-your-writes, cache invalidation), does it open or close a transaction, does it
lock rows, which functions it calls, which tables it names, which routing hints its comments carry and whether it
is a ``SET nexus.*`` that the proxy answers itself. :func:`classify` answers them with a tokenizer that follows
PostgreSQL's lexical rules (https://www.postgresql.org/docs/15/sql-syntax-lexical.html) and looks at the token
stream, not a full grammar: routing must be conservative (anything it cannot prove read-only goes to the primary)
rather than complete.

Lexical rules honoured, because each one can otherwise hide or fake a keyword:
- ``-- line`` and ``/* block */`` comments, block comments nesting (section 4.1.6);
- string constants ``'...'`` with ``''`` doubling, escape strings ``E'...'`` with backslash escapes, ``B''``/``X''``/
  ``N''``/``U&''`` prefixes (4.1.2.1-4.1.2.5); dollar quoting ``$tag$ ... $tag$`` (4.1.2.4);
- quoted identifiers ``"..."`` with ``""`` doubling, case preserved; unquoted words folded to lower case (4.1.1);
- positional parameters ``$1`` (4.1.4); statements separated by ``;`` (multi-statement simple queries).

What keeps a query on the primary (``read_only = False``, with ``reason`` saying why):
- data-modifying statements (INSERT, UPDATE, DELETE, MERGE, COPY ... FROM), DDL, LOCK, SET/RESET/DISCARD, LISTEN,
  NOTIFY, transaction control, cursors, PREPARE/EXECUTE, CALL, DO, and anything not recognised;
- a SELECT with a locking clause (``FOR UPDATE``, ``FOR NO KEY UPDATE``, ``FOR SHARE``, ``FOR KEY SHARE``), with
  ``INTO`` (SELECT INTO creates a table), or whose CTEs modify data (``WITH x AS (DELETE ... RETURNING ...)``);
- a call of any function not known to be read-only: the built-in IMMUTABLE/STABLE functions of PostgreSQL 15
  (``_builtin_functions``), volatile built-ins known not to write (``random``, ``clock_timestamp`` ...) and the
  names the config lists in ``read_only_functions`` (bare ``f`` or schema-qualified ``s.f``) are read-only;
  ``nextval``, ``setval``, ``pg_advisory_lock``, ``txid_current`` and every other function are not.

Hints are comments whose text starts with ``nexus:``: ``/* nexus:primary */``, ``/* nexus:replica */``,
``/* nexus:role=primary */`` and, for the sharding and query-cache work, ``key=value`` items such as
``/* nexus:shard_key=42 */`` or bare flags such as ``/* nexus:cache */``; several items may share one comment
(``/* nexus:replica cache ttl=30s */``). ``SET nexus.<name> = value`` / ``SET nexus.<name> TO value`` /
``RESET nexus.<name>`` are returned in ``nexus_settings`` and are never sent to a server.

Results are cached per query text (:class:`SqlClassifier` keeps an LRU), since applications repeat their SQL.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from nexus_fast.postgres._builtin_functions import READ_ONLY_BUILTINS

# --------------------------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------------------------
WORD: Final = 0  # unquoted identifier or keyword, folded to lower case
QIDENT: Final = 1  # "quoted identifier", case kept, quotes removed
STRING: Final = 2  # any string constant (value not needed)
NUMBER: Final = 3
PARAM: Final = 4  # $1
OP: Final = 5  # operators and punctuation: ( ) , ; . [ ] :: and operator character runs

_TOKEN = re.compile(
    r"""
    \s*  # leading whitespace is consumed with the token (one regex call per token, not two)
    (?:
    (?P<line>--[^\n]*)
  | (?P<block>/\*)
  | (?P<estr>[eE]'(?:[^'\\]|\\.|'')*'?)
  | (?P<str>(?:[bBxXnN]|[uU]&)?'(?:[^']|'')*'?)
  | (?P<dollar>\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$)
  | (?P<param>\$\d+)
  | (?P<qident>(?:[uU]&)?"(?:[^"]|"")*"?)
  | (?P<word>[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)
  | (?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<op>::|[(),;\[\]]|\.|[+\-*/<>=~!@\#%^&|`?:]+)
    )
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: int
    text: str  # WORD: lower-cased; QIDENT: unquoted, case kept; OP: the operator; others: raw text


def _block_comment_end(sql: str, start: int) -> int:
    """Index just past the ``*/`` closing the comment opened at ``start`` (comments nest, section 4.1.6)."""
    depth = 0
    i = start
    n = len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n  # unterminated: the rest of the text is comment


def tokenize(sql: str) -> tuple[list[Token], list[str]]:
    """Tokens (comments and whitespace dropped) and the text of every comment, in order."""
    tokens: list[Token] = []
    comments: list[str] = []
    pos = 0
    n = len(sql.rstrip())
    match = _TOKEN.match
    while pos < n:
        m = match(sql, pos, n)
        if m is None:  # a character no rule covers (e.g. a stray backslash): treat it as an operator
            while sql[pos].isspace():
                pos += 1
            tokens.append(Token(OP, sql[pos]))
            pos += 1
            continue
        kind = m.lastgroup or "op"
        end = m.end()
        if kind == "word":
            tokens.append(Token(WORD, m.group(kind).lower()))
        elif kind == "op":
            tokens.append(Token(OP, m.group(kind)))
        elif kind in ("str", "estr"):
            tokens.append(Token(STRING, m.group(kind)))
        elif kind == "num":
            tokens.append(Token(NUMBER, m.group(kind)))
        elif kind == "qident":
            text = m.group(kind)
            body = text[text.index('"') + 1:]
            if body.endswith('"'):
                body = body[:-1]
            tokens.append(Token(QIDENT, body.replace('""', '"')))
        elif kind == "param":
            tokens.append(Token(PARAM, m.group(kind)))
        elif kind == "dollar":
            tag = m.group(kind)
            start = m.start(kind)
            close = sql.find(tag, end)
            end = len(sql) if close < 0 else close + len(tag)
            tokens.append(Token(STRING, sql[start:end]))
        elif kind == "line":
            comments.append(m.group(kind)[2:])
        else:  # block comment
            start = m.start(kind)
            end = _block_comment_end(sql, start)
            body = sql[start + 2:end]
            comments.append(body[:-2] if body.endswith("*/") else body)
        pos = end
    return tokens, comments


def split_statements(tokens: list[Token]) -> list[list[Token]]:
    """Statements of a multi-statement string (``;`` separated), empty ones dropped."""
    statements: list[list[Token]] = []
    current: list[Token] = []
    for token in tokens:
        if token.kind == OP and token.text == ";":
            if current:
                statements.append(current)
            current = []
        else:
            current.append(token)
    if current:
        statements.append(current)
    return statements


# --------------------------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------------------------
# Words that may be followed by "(" without being a function call: grammar keywords that take a parenthesised list
# or subquery, and SQL-syntax "functions" (section 9 lists them as special syntax) that never write.
_NOT_FUNCTIONS: Final = frozenset(
    """
    all and any array as asc at between both by case cast coalesce collate cross cube current_time
    current_timestamp default desc distinct do else end escape except exists extract fetch filter first for from
    full greatest group grouping groups having if ilike in inner intersect into is join lateral leading least left
    like limit localtime localtimestamp natural next not null nullif nulls of offset on only or order ordinality
    outer over overlay overlaps partition placing position range recursive repeatable returning right rollup row
    rows select sets similar some substring table tablesample then to trailing trim union using values variadic
    when where window with within xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlparse xmlpi xmlroot
    xmlserialize xmltable json_table json_object json_array json_arrayagg json_objectagg json_scalar
    json_serialize normalize bit char character dec decimal float interval nchar national numeric precision
    time timestamp varchar varying zone
    """.split()
)

# Words after which a following "name(" is a function call rather than an alias with a column list
# (``FROM t AS x(a)``, ``FROM generate_series(1, 3) g(n)``): keywords that start an expression or a FROM item.
_EXPRESSION_KEYWORDS: Final = frozenset(
    """
    all and any array between by case distinct else exists from having in is join lateral like ilike limit not
    offset on or over return returning select set similar some then using values when where with within
    """.split()
)

_LOCK_STRENGTH: Final = frozenset({"update", "share", "no", "key"})
_DML_WORDS: Final = frozenset({"insert", "update", "delete", "merge"})
_DDL_WORDS: Final = frozenset(
    """
    create alter drop truncate comment grant revoke reindex cluster vacuum analyze refresh security import
    reassign
    """.split()
)
_TXN_BEGIN: Final = frozenset({"begin", "start"})
_TXN_END: Final = frozenset({"commit", "end", "rollback", "abort"})
_TXN_OTHER: Final = frozenset({"savepoint", "release", "prepare"})  # prepare: PREPARE TRANSACTION or PREPARE name
_SESSION_WORDS: Final = frozenset({"discard", "listen", "unlisten", "notify", "load", "checkpoint", "deallocate"})
_CURSOR_WORDS: Final = frozenset({"declare", "fetch", "move", "close"})
_NEXUS_ROLES: Final = frozenset({"primary", "replica", "auto"})


@dataclass(frozen=True)
class Classification:
    """What the router needs to know about one query string (possibly several statements)."""

    read_only: bool  # every statement may run on a hot standby
    reason: str  # why not read-only ("" when read_only): "write: INSERT", "function: nextval", ...
    kind: str  # of the first statement: read | write | ddl | begin | end | transaction | set | nexus | lock |
    #            copy | session | cursor | call | empty | other
    writes: bool = False  # some statement modifies data or schema (read-your-writes, cache invalidation)
    begins_transaction: bool = False  # BEGIN / START TRANSACTION appears
    ends_transaction: bool = False  # COMMIT / ROLLBACK / END / ABORT appears
    locking: bool = False  # a row-locking clause (FOR UPDATE/SHARE) appears
    statement_count: int = 0
    functions: tuple[str, ...] = ()  # function names called (lower-cased unless quoted; schema-qualified as written)
    tables: tuple[str, ...] = ()  # relation names after FROM/JOIN/UPDATE/INTO/TABLE/TRUNCATE (best effort)
    hints: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # from /* nexus:... */
    nexus_settings: tuple[tuple[str, str | None], ...] = ()  # SET nexus.x = v (None = RESET)
    only_nexus_settings: bool = False  # the whole string is SET/RESET nexus.* (answered by the proxy)
    resets_session: bool = False  # RESET ALL / DISCARD ALL: session settings, nexus.* included, go back to defaults

    @property
    def role_hint(self) -> str | None:
        """``primary`` / ``replica`` / ``auto`` from a hint comment, or None."""
        return self.hints.get("role")


def parse_hint(comment: str) -> dict[str, str]:
    """``nexus:replica cache ttl=30s`` -> {"role": "replica", "cache": "", "ttl": "30s"}; non-hint text -> {}."""
    text = comment.strip()
    if not text.lower().startswith("nexus:"):
        return {}
    hints: dict[str, str] = {}
    for raw in re.split(r"[\s,]+", text[len("nexus:"):]):
        item = raw.strip()
        if item.lower().startswith("nexus:"):
            item = item[len("nexus:"):]
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        value = value.strip().strip("'\"")
        if not sep and key in _NEXUS_ROLES:
            hints["role"] = key
        elif key == "role" and value.lower() in _NEXUS_ROLES:
            hints["role"] = value.lower()
        elif key:
            hints[key] = value
    return hints


_DIGITS = re.compile(r"\b\d+\b")
_NEXUS = re.compile(r"nexus", re.IGNORECASE)


class SqlClassifier:
    """Classifies query strings; knows the deployment's extra read-only functions; caches by text (LRU)."""

    def __init__(self, read_only_functions: Iterable[str] = (), cache_size: int = 4096) -> None:
        self._extra = frozenset(name.strip() for name in read_only_functions if name.strip())
        self._extra_lower = frozenset(name.lower() for name in self._extra)
        self._cache: OrderedDict[str, Classification] = OrderedDict()
        self._cache_size = cache_size

    def function_is_read_only(self, name: str, schema: str | None = None, quoted: bool = False) -> bool:
        """Whether calling ``[schema.]name`` cannot write: a read-only built-in, or listed in the config."""
        qualified = f"{schema}.{name}" if schema else name
        if qualified in self._extra or (not quoted and qualified.lower() in self._extra_lower):
            return True
        if schema is None or schema == "pg_catalog":
            return name in READ_ONLY_BUILTINS
        return False

    def classify(self, sql: str) -> Classification:
        cached = self._cache.get(sql)
        if cached is not None:
            self._cache.move_to_end(sql)
            return cached
        # Statements with literals inlined (pgbench -S, ORMs without bind parameters) differ only in numbers:
        # a standalone digit run never changes the classification (it is a number, a parameter number or part of
        # an opaque string or comment), except in hints and SET nexus.* values, hence the "nexus" test.
        key = sql if _NEXUS.search(sql) else _DIGITS.sub("0", sql)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        result = self._classify(sql)
        self._cache[key] = result
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result

    # ----------------------------------------------------------------------------------------------------------
    def _classify(self, sql: str) -> Classification:
        tokens, comments = tokenize(sql)
        hints: dict[str, str] = {}
        for comment in comments:
            hints.update(parse_hint(comment))
        statements = split_statements(tokens)
        if not statements:
            return Classification(True, "", "empty", hints=MappingProxyType(hints))

        read_only = True
        reason = ""
        first_kind = ""
        writes = begins = ends = locking = resets = False
        functions: list[str] = []
        tables: list[str] = []
        nexus: list[tuple[str, str | None]] = []
        non_nexus = 0
        for stmt in statements:
            facts = _StatementFacts()
            self._statement(stmt, facts)
            first_kind = first_kind or facts.kind
            if facts.kind == "nexus":
                nexus.extend(facts.nexus)
                continue
            non_nexus += 1
            if not facts.read_only and read_only:
                read_only, reason = False, facts.reason
            writes |= facts.writes
            begins |= facts.kind == "begin"
            ends |= facts.kind == "end"
            locking |= facts.locking
            resets |= facts.resets
            functions.extend(facts.functions)
            tables.extend(facts.tables)
        only_nexus = bool(nexus) and non_nexus == 0
        if nexus:
            # Answered by the proxy, never by a server: not something a replica (or anyone) can run as is.
            read_only, reason = False, "nexus setting" if only_nexus else "nexus setting mixed with SQL"
        return Classification(
            read_only=read_only,
            reason=reason,
            kind=first_kind,
            writes=writes,
            begins_transaction=begins,
            ends_transaction=ends,
            locking=locking,
            statement_count=len(statements),
            functions=tuple(dict.fromkeys(functions)),
            tables=tuple(dict.fromkeys(tables)),
            hints=MappingProxyType(hints),
            nexus_settings=tuple(nexus),
            only_nexus_settings=only_nexus,
            resets_session=resets,
        )

    def _statement(self, stmt: list[Token], facts: _StatementFacts) -> None:
        head = stmt[0]
        word = head.text if head.kind == WORD else ""
        if head.kind == OP and head.text == "(":
            word = "select"  # (SELECT ...) UNION (SELECT ...)
        if word in ("select", "with", "values", "table"):
            facts.kind = "read"
            self._query(stmt, facts)
        elif word == "show":
            facts.kind = "read"
        elif word == "explain":
            self._explain(stmt, facts)
        elif word in _DML_WORDS:
            facts.primary("write", f"write: {word.upper()}", writes=True)
            self._query(stmt, facts, collect_only=True)
        elif word in _DDL_WORDS:
            facts.primary("ddl", f"ddl: {word.upper()}", writes=True)
            _collect_tables(stmt, facts.tables)
        elif word in _TXN_BEGIN:
            facts.primary("begin", "transaction: BEGIN")
        elif word in _TXN_END:
            facts.primary("end", f"transaction: {word.upper()}")
        elif word in _TXN_OTHER:
            facts.primary("transaction", f"transaction: {word.upper()}")
        elif word in ("set", "reset"):
            self._set(stmt, word, facts)
            facts.resets |= word == "reset" and len(stmt) == 2 and _is_word(stmt[1], "all")
        elif word == "lock":
            facts.primary("lock", "lock: LOCK TABLE", writes=False)
            facts.locking = True
        elif word == "copy":
            self._copy(stmt, facts)
        elif word in _SESSION_WORDS:
            facts.primary("session", f"session: {word.upper()}", writes=word == "notify")
            facts.resets |= word == "discard" and len(stmt) == 2 and _is_word(stmt[1], "all")
        elif word in _CURSOR_WORDS:
            facts.primary("cursor", f"cursor: {word.upper()}")
        elif word in ("call", "do", "execute"):
            facts.primary("call", f"call: {word.upper()}", writes=True)
        else:
            facts.primary("other", f"unrecognised: {(word or head.text)[:32]}", writes=True)

    def _query(self, stmt: list[Token], facts: _StatementFacts, collect_only: bool = False) -> None:
        """A SELECT / WITH / VALUES / TABLE (or the body of a DML statement when ``collect_only``)."""
        n = len(stmt)
        for i, token in enumerate(stmt):
            if token.kind == WORD:
                text = token.text
                if text == "for" and i + 1 < n and stmt[i + 1].kind == WORD and stmt[i + 1].text in _LOCK_STRENGTH:
                    facts.locking = True
                    if not collect_only:
                        strength = []
                        for follower in stmt[i + 1:i + 4]:
                            if follower.kind != WORD or follower.text not in _LOCK_STRENGTH:
                                break
                            strength.append(follower.text.upper())
                        facts.primary("lock", "locking: SELECT ... FOR " + " ".join(strength), writes=False)
                    continue
                if not collect_only:
                    if text in _DML_WORDS and not (i > 0 and _is_word(stmt[i - 1], "for")) and not _after_lock(stmt, i):
                        what = "writing CTE" if stmt[0].kind == WORD and stmt[0].text == "with" else "data-modifying"
                        facts.primary("write", f"write: {what} ({text.upper()})", writes=True)
                    elif text == "into":
                        facts.primary("write", "write: SELECT INTO", writes=True)
            if i + 1 < n and stmt[i + 1].kind == OP and stmt[i + 1].text == "(" and token.kind in (WORD, QIDENT):
                call = self._function_call(stmt, i)
                if call is not None:
                    name, schema, quoted = call
                    shown = f"{schema}.{name}" if schema else name
                    facts.functions.append(shown)
                    if not collect_only and not self.function_is_read_only(name, schema, quoted):
                        facts.primary("write", f"function: {shown}", writes=True)
        _collect_tables(stmt, facts.tables)

    @staticmethod
    def _function_call(stmt: list[Token], i: int) -> tuple[str, str | None, bool] | None:
        """(name, schema, quoted) if ``stmt[i]`` followed by ``(`` is a function call, else None."""
        token = stmt[i]
        if token.kind == WORD and token.text in _NOT_FUNCTIONS:
            return None
        schema: str | None = None
        prev = stmt[i - 1] if i > 0 else None
        if prev is not None and prev.kind == OP and prev.text == "." and i >= 2 and stmt[i - 2].kind in (WORD, QIDENT):
            schema = stmt[i - 2].text
            prev = stmt[i - 3] if i >= 3 else None
        if prev is not None:
            if prev.kind == OP and prev.text in ("::", ")"):
                return None  # a type modifier (x::numeric(10,2)) or an alias after a FROM item: g(n)
            if prev.kind == WORD and prev.text == "as":
                return None  # AS alias(col, ...) or CAST(x AS type(n))
            if prev.kind in (WORD, QIDENT) and not (prev.kind == WORD and prev.text in _EXPRESSION_KEYWORDS):
                return None  # FROM tbl alias(col): a name after a name is an alias
        close = _matching_paren(stmt, i + 1)
        if close + 1 < len(stmt) and _is_word(stmt[close + 1], "as"):
            after = stmt[close + 2] if close + 2 < len(stmt) else None
            if after is None or (after.kind == OP and after.text == "(") or _is_word(after, "materialized") or _is_word(after, "not"):
                return None  # WITH cte(col, ...) AS (...)
        return token.text, schema, token.kind == QIDENT

    def _explain(self, stmt: list[Token], facts: _StatementFacts) -> None:
        # EXPLAIN [ ( option [, ...] ) ] statement | EXPLAIN [ ANALYZE ] [ VERBOSE ] statement
        j = 1
        if j < len(stmt) and stmt[j].kind == OP and stmt[j].text == "(":
            j = _matching_paren(stmt, j) + 1
        while j < len(stmt) and stmt[j].kind == WORD and stmt[j].text in ("analyze", "analyse", "verbose"):
            j += 1
        inner = stmt[j:]
        if not inner:
            facts.primary("other", "unrecognised: EXPLAIN", writes=False)
            return
        self._statement(inner, facts)
        if facts.read_only:
            facts.kind = "read"

    def _set(self, stmt: list[Token], word: str, facts: _StatementFacts) -> None:
        j = 1
        if word == "set" and j < len(stmt) and stmt[j].kind == WORD and stmt[j].text in ("session", "local"):
            j += 1
        if (
            j + 2 < len(stmt)
            and _is_word(stmt[j], "nexus")
            and stmt[j + 1].kind == OP and stmt[j + 1].text == "."
            and stmt[j + 2].kind in (WORD, QIDENT)
        ):
            name = stmt[j + 2].text.lower()
            value: str | None = None
            if word == "set":
                rest = stmt[j + 3:]
                if rest and ((rest[0].kind == OP and rest[0].text == "=") or _is_word(rest[0], "to")):
                    rest = rest[1:]
                value = "".join(_literal(t) for t in rest) if rest else ""
                if value.lower() == "default":
                    value = None
            facts.kind = "nexus"
            facts.nexus.append((name, value))
            return
        facts.primary("set", f"session: {word.upper()}", writes=False)

    def _copy(self, stmt: list[Token], facts: _StatementFacts) -> None:
        # COPY table [(cols)] FROM ... writes; COPY table|(query) TO ... reads.
        j = 1
        if j < len(stmt) and stmt[j].kind == OP and stmt[j].text == "(":
            close = _matching_paren(stmt, j)
            inner = _StatementFacts()
            self._statement(stmt[j + 1:close], inner)
            j = close + 1
            if not inner.read_only:
                facts.primary("copy", inner.reason, writes=inner.writes)
                return
        else:
            _collect_tables(stmt, facts.tables, start_words=("copy",))
        direction = next((t.text for t in stmt[j:] if t.kind == WORD and t.text in ("from", "to")), "")
        if direction == "to":
            facts.kind = "copy"
        else:
            facts.primary("copy", "write: COPY FROM", writes=True)


@dataclass
class _StatementFacts:
    kind: str = ""
    read_only: bool = True
    reason: str = ""
    writes: bool = False
    locking: bool = False
    functions: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    nexus: list[tuple[str, str | None]] = field(default_factory=list)
    resets: bool = False

    def primary(self, kind: str, reason: str, writes: bool = False) -> None:
        if self.read_only:
            self.reason = reason
        if not self.kind or self.kind == "read":
            self.kind = kind
        self.read_only = False
        self.writes |= writes


def _is_word(token: Token, text: str) -> bool:
    return token.kind == WORD and token.text == text


def _after_lock(stmt: list[Token], i: int) -> bool:
    # "FOR NO KEY UPDATE" / "FOR KEY SHARE": UPDATE here is part of the locking clause, not a statement.
    return i >= 2 and _is_word(stmt[i - 1], "key") and (_is_word(stmt[i - 2], "no") or _is_word(stmt[i - 2], "for"))


def _matching_paren(stmt: list[Token], open_index: int) -> int:
    depth = 0
    for k in range(open_index, len(stmt)):
        token = stmt[k]
        if token.kind == OP:
            if token.text == "(":
                depth += 1
            elif token.text == ")":
                depth -= 1
                if depth == 0:
                    return k
    return len(stmt) - 1


def _literal(token: Token) -> str:
    if token.kind == STRING:
        text = token.text
        if text.startswith("'") and text.endswith("'") and len(text) >= 2:
            return text[1:-1].replace("''", "'")
        return text
    return token.text


_TABLE_INTRO: Final = ("from", "join", "update", "into", "table", "truncate", "only")


def _collect_tables(stmt: list[Token], out: list[str], start_words: tuple[str, ...] = _TABLE_INTRO) -> None:
    """Relation names after FROM/JOIN/UPDATE/INTO/TABLE/TRUNCATE, comma lists after FROM (best effort)."""
    n = len(stmt)
    i = 0
    while i < n:
        token = stmt[i]
        if token.kind == WORD and token.text in start_words:
            j = i + 1
            while j < n:
                if _is_word(stmt[j], "only") or _is_word(stmt[j], "table") or _is_word(stmt[j], "lateral"):
                    j += 1
                    continue
                if stmt[j].kind not in (WORD, QIDENT) or (stmt[j].kind == WORD and stmt[j].text in _NOT_FUNCTIONS):
                    break
                name = stmt[j].text
                j += 1
                while j + 1 < n and stmt[j].kind == OP and stmt[j].text == "." and stmt[j + 1].kind in (WORD, QIDENT):
                    name = f"{name}.{stmt[j + 1].text}"
                    j += 2
                if j < n and stmt[j].kind == OP and stmt[j].text == "(" and token.text in ("from", "join"):
                    break  # a function in FROM, not a table (after INTO it is a column list)
                out.append(name)
                # skip an alias, then continue a comma list (FROM a x, b y)
                while j < n and (stmt[j].kind == QIDENT or (stmt[j].kind == WORD and stmt[j].text not in _NOT_FUNCTIONS and stmt[j].text not in ("set", "where", "on"))):
                    j += 1
                if j < n and _is_word(stmt[j], "as"):
                    j += 2
                if j < n and stmt[j].kind == OP and stmt[j].text == "," and token.text == "from":
                    j += 1
                    continue
                break
            i = j
        else:
            i += 1


_default = SqlClassifier()


def classify(sql: str) -> Classification:
    """Classify with built-in knowledge only (no deployment-specific read-only functions)."""
    return _default.classify(sql)

"""Every Redis 7 command classified for a proxy: where its keys are and how it may be routed.

Classes (``Kind``):

* ``SINGLE``: one key decides the node (GET, SET, HSET, INCR, ...), key at ``first``.
* ``SPLIT``: multi-key commands the proxy splits by node and merges in the client's order: MGET (array), MSET
  (all OK), DEL / UNLINK / EXISTS / TOUCH (sum of integers). Errors are reported per key.
* ``MULTI``: several keys that must live on one node (MSETNX, RENAME, SUNIONSTORE, EVAL with keys, ...): routed when
  they agree, else ``-CROSSSLOT`` (never a wrong answer from the wrong node).
* ``PROXY``: answered by the proxy itself (PING, ECHO, QUIT, HELLO, SELECT 0, AUTH, CLIENT SETNAME/SETINFO, READONLY),
  and MULTI/EXEC/DISCARD (the session queues the transaction and sends it to its one node at EXEC).
* ``ANY``: keyless and harmless on any node (COMMAND and its subcommands, TIME).
* ``UNSUPPORTED``: blocking commands, pub/sub, WATCH, admin and other keyless commands: answered at once
  with a clear ``-ERR`` naming the reason, never forwarded, never left hanging.

Key positions come from the ``COMMAND`` table (``command_table.py``); commands with ``movablekeys`` are handled by
name below (numkeys arguments, STORE options, STREAMS).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from nexus_fast.redis.command_table import COMMANDS


class Kind(IntEnum):
    SINGLE = 0
    SPLIT = 1
    MULTI = 2
    PROXY = 3
    ANY = 4
    UNSUPPORTED = 5


# How a split command's per-node replies are merged, and its per-key single-key form.
SPLIT_COMMANDS = {
    "mget": ("array", 1),
    "mset": ("ok", 2),
    "del": ("sum", 1),
    "unlink": ("sum", 1),
    "exists": ("sum", 1),
    "touch": ("sum", 1),
}
PROXY_COMMANDS = {"ping", "echo", "quit", "hello", "select", "auth", "client|setname", "client|setinfo",
                  "client|getname", "client|id", "readonly", "readwrite", "reset", "multi", "exec", "discard"}
ANY_NODE_COMMANDS = {"command", "command|count", "command|docs", "command|info", "command|list",
                     "command|getkeys", "command|getkeysandflags", "time", "lolwut"}
# MULTI/EXEC/DISCARD are the proxy's (queued in the session, sent to one node as one contiguous write at EXEC);
# WATCH would need the client's own server connection between commands, which a shared pipeline cannot give.
TRANSACTION_COMMANDS = {"watch", "unwatch"}
# numkeys-style movable keys: name -> (index of numkeys, leading fixed key positions)
NUMKEYS_AT = {
    "eval": (2, ()), "evalsha": (2, ()), "eval_ro": (2, ()), "evalsha_ro": (2, ()), "fcall": (2, ()),
    "fcall_ro": (2, ()), "zunion": (1, ()), "zinter": (1, ()), "zdiff": (1, ()), "sintercard": (1, ()),
    "zintercard": (1, ()), "lmpop": (1, ()), "zmpop": (1, ()), "zunionstore": (2, (1,)),
    "zinterstore": (2, (1,)), "zdiffstore": (2, (1,)),
}
# Values the compression layer may rewrite: command -> (first value index, step); replies of READS_VALUE decoded.
VALUE_POSITIONS = {"set": (2, 0), "setnx": (2, 0), "setex": (3, 0), "psetex": (3, 0), "getset": (2, 0),
                   "mset": (2, 2)}
READS_VALUE = {"get", "getdel", "getex", "getset", "mget"}


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str  # lower case, "container|sub" for subcommands
    kind: Kind
    arity: int  # Redis arity: n exact, -n at least n arguments (the name counts)
    first: int
    last: int
    step: int
    write: bool
    reason: str = ""  # why it is unsupported
    merge: str = ""  # "array" | "ok" | "sum" for SPLIT
    group: int = 1  # arguments per key for SPLIT (MSET: 2)
    container: bool = False  # has subcommands: look up "name|args[1]"

    def arity_ok(self, argc: int) -> bool:
        return argc == self.arity if self.arity > 0 else argc >= -self.arity

    @property
    def max_args(self) -> int:
        return self.arity if self.arity > 0 else 1 << 30

    @property
    def min_args(self) -> int:
        return abs(self.arity)


def _classify(name: str, arity: int, flags: tuple[str, ...], first: int, last: int, step: int) -> CommandSpec:
    write = "write" in flags
    base = name.split("|")[0]
    common: dict[str, Any] = dict(name=name, arity=arity, first=first, last=last, step=step, write=write)
    if name in PROXY_COMMANDS:
        return CommandSpec(kind=Kind.PROXY, **common)
    if name in ANY_NODE_COMMANDS:
        return CommandSpec(kind=Kind.ANY, **common)
    if name in SPLIT_COMMANDS:
        merge, group = SPLIT_COMMANDS[name]
        return CommandSpec(kind=Kind.SPLIT, merge=merge, group=group, **common)
    if name in TRANSACTION_COMMANDS:
        return CommandSpec(kind=Kind.UNSUPPORTED, reason="WATCH needs a server connection of its own",
                           **common)
    if "pubsub" in flags or base in ("subscribe", "psubscribe", "ssubscribe", "publish", "spublish"):
        return CommandSpec(kind=Kind.UNSUPPORTED, reason="pub/sub is not proxied", **common)
    if "blocking" in flags and name not in ("xread", "xreadgroup"):
        return CommandSpec(kind=Kind.UNSUPPORTED, reason="blocking commands would hold a shared server connection",
                           **common)
    if name in NUMKEYS_AT or name in ("sort", "sort_ro", "xread", "xreadgroup", "georadius",
                                      "georadiusbymember"):
        return CommandSpec(kind=Kind.MULTI, **common)
    if "admin" in flags or base in ("migrate", "monitor", "sync", "psync", "replconf"):
        return CommandSpec(kind=Kind.UNSUPPORTED, reason="administrative commands go to a node directly", **common)
    if first <= 0:
        return CommandSpec(kind=Kind.UNSUPPORTED, reason="keyless commands have no node to go to", **common)
    if last == first:
        return CommandSpec(kind=Kind.SINGLE, **common)
    return CommandSpec(kind=Kind.MULTI, **common)


def _build() -> tuple[dict[bytes, CommandSpec], set[str]]:
    containers = {name.split("|")[0] for name in COMMANDS if "|" in name}
    table: dict[bytes, CommandSpec] = {}
    for name, (arity, flags, first, last, step) in COMMANDS.items():
        spec = _classify(name, arity, flags, first, last, step)
        if name in containers:
            spec = CommandSpec(name=spec.name, kind=spec.kind, arity=spec.arity, first=spec.first, last=spec.last,
                               step=spec.step, write=spec.write, reason=spec.reason, container=True)
        table[name.encode()] = spec
        table[name.upper().encode()] = spec
    return table, containers


TABLE, CONTAINERS = _build()
# The forwarding fast path: exact command-name bytes of single-key commands -> (key index, min args, max args),
# so the session checks arity and finds the key with one dict lookup and two comparisons.
SINGLE_KEY: dict[bytes, tuple[int, int, int]] = {
    name: (spec.first, spec.min_args, spec.max_args) for name, spec in TABLE.items()
    if spec.kind == Kind.SINGLE and not spec.container and spec.first > 0}


def lookup(args: list[bytes]) -> CommandSpec | None:
    """The spec of a command (subcommands resolved), or None for an unknown command."""
    spec = TABLE.get(args[0])
    if spec is None:
        spec = TABLE.get(args[0].lower())
        if spec is None:
            return None
    if spec.container and len(args) > 1:
        sub = TABLE.get(spec.name.encode() + b"|" + args[1].lower())
        if sub is not None:
            return sub
    return spec


def keys_of(spec: CommandSpec, args: list[bytes]) -> list[bytes]:
    """Every key argument of a command (movable keys resolved); [] when the arguments are malformed."""
    name = spec.name
    argc = len(args)
    if name in NUMKEYS_AT:
        at, fixed = NUMKEYS_AT[name]
        if argc <= at:
            return []
        try:
            numkeys = int(args[at])
        except ValueError:
            return []
        if numkeys < 0 or at + 1 + numkeys > argc:
            return []
        return [args[i] for i in fixed] + args[at + 1:at + 1 + numkeys]
    if name in ("xread", "xreadgroup"):
        upper = [a.upper() for a in args]
        if b"STREAMS" not in upper:
            return []
        i = upper.index(b"STREAMS") + 1
        rest = args[i:]
        return rest[: len(rest) // 2]
    if name in ("sort", "sort_ro", "georadius", "georadiusbymember"):
        keys = [args[1]] if argc > 1 else []
        upper = [a.upper() for a in args]
        for opt in (b"STORE", b"STOREDIST"):
            if opt in upper:
                j = upper.index(opt) + 1
                if j < argc:
                    keys.append(args[j])
        return keys
    if spec.first <= 0:
        return []
    last = spec.last if spec.last >= 0 else argc + spec.last
    return args[spec.first:last + 1:spec.step]


def is_blocking_call(spec: CommandSpec, args: list[bytes]) -> bool:
    """XREAD/XREADGROUP with BLOCK would hold a shared connection: refused like the other blocking commands."""
    return spec.name in ("xread", "xreadgroup") and any(a.upper() == b"BLOCK" for a in args[1:])


def table_from_command_reply(reply: list) -> dict[str, tuple[int, tuple[str, ...], int, int, int]]:
    """A live ``COMMAND`` reply (as hiredis parses it) in ``command_table.COMMANDS`` shape."""
    rows: dict[str, tuple[int, tuple[str, ...], int, int, int]] = {}

    def add(entry: list) -> None:
        name = entry[0].decode().lower()
        flags = tuple(sorted(f.decode() for f in entry[2]))
        rows[name] = (int(entry[1]), flags, int(entry[3]), int(entry[4]), int(entry[5]))
        if len(entry) > 9 and entry[9]:
            for sub in entry[9]:
                add(sub)

    for item in reply:
        add(item)
    return rows

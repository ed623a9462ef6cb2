"""Where each command goes: the ketama ring (twemproxy mode) or the Redis Cluster slot map.

The session hands a parsed command to the router, which sends it to the owning node's pipelined connection
(single-key), splits it by node and merges the replies in the client's order (MGET/MSET/DEL/UNLINK/EXISTS/TOUCH),
checks that multi-key commands agree on one node (else ``-CROSSSLOT``), fans writes out to ``replication_factor``
ring successors and falls reads back through them, compresses values, and in cluster mode follows MOVED/ASK.

Reply order is the client's: every command gets a ``Pending`` in the session's FIFO at once; helpers below fill
it when their sub-requests are answered, and the session writes replies out as the head of its FIFO completes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from nexus_fast.balance.ring import KetamaRing, key_slot
from nexus_fast.cache.codec import Codec, CodecError
from nexus_fast.redis import protocol
from nexus_fast.redis.commands import READS_VALUE, VALUE_POSITIONS, CommandSpec, Kind, keys_of
from nexus_fast.redis.connection import Discard, Pending, flush_sessions
from nexus_fast.redis.nearcache import NearCache
from nexus_fast.redis.pool import Node, affinity
from nexus_fast.redis.protocol import encode_command, encode_error
from nexus_fast.tasks import cancel_and_wait

if TYPE_CHECKING:
    from nexus_fast.redis.config import RedisPoolConfig
    from nexus_fast.redis.session import ClientSession

log = logging.getLogger("nexus_fast.redis")

CROSSSLOT_RING = encode_error("CROSSSLOT Keys in request don't hash to the same node")
CROSSSLOT_CLUSTER = encode_error("CROSSSLOT Keys in request don't hash to the same slot")
NO_NODE = encode_error("ERR nexus-fast: no live node for this key (all ejected)")
ASKING = encode_command([b"ASKING"])
MULTI = encode_command([b"MULTI"])
EXEC = encode_command([b"EXEC"])
MAX_REDIRECTS = 5


# -- reply helpers -----------------------------------------------------------------------------------------------


class Merge:
    """Collects the sub-replies of a split command and builds the client's reply in its key order."""

    __slots__ = ("kind", "parent", "parts", "positions", "remaining", "session")

    def __init__(self, session: ClientSession, parent: Pending, kind: str, nkeys: int) -> None:
        self.session = session
        self.parent = parent
        self.kind = kind
        self.positions: dict[int, list[int]] = {}  # id(sub pending) -> key positions it carries
        self.parts: list[bytes | None] = [None] * nkeys
        self.remaining = 0

    def add(self, sub: Pending, positions: list[int]) -> None:
        self.positions[id(sub)] = positions
        self.remaining += 1

    def reply_ready(self, sub: Pending) -> None:
        reply = sub.reply or b""
        positions = self.positions.pop(id(sub))
        if self.kind == "array":
            items = [reply] if len(positions) == 1 and reply[:1] in (b"$", b"_") else protocol.split_array(reply)
            if items is None or len(items) != len(positions):
                items = [reply if protocol.is_error(reply) else encode_error("ERR nexus-fast: bad sub-reply")] \
                    * len(positions)
        else:
            items = [reply] * len(positions) if len(positions) == 1 or protocol.is_error(reply) \
                else [reply] + [b""] * (len(positions) - 1)
        for pos, item in zip(positions, items, strict=True):
            self.parts[pos] = item
        self.remaining -= 1
        if self.remaining == 0:
            self.parent.reply = self._build()
            self.session.reply_ready(self.parent)

    def _build(self) -> bytes:
        parts = [p or b"" for p in self.parts]
        if self.kind == "array":
            return protocol.encode_array(parts)
        errors = [p for p in parts if protocol.is_error(p)]
        if errors:
            return errors[0]
        if self.kind == "ok":
            return protocol.OK
        total = 0
        for p in parts:
            value = protocol.integer_of(p) if p else 0
            total += value or 0
        return protocol.encode_integer(total)


class FanOut:
    """A write sent to several replicas: answered when all have replied, with the first success."""

    __slots__ = ("parent", "remaining", "replies", "session")

    def __init__(self, session: Any, parent: Pending, count: int) -> None:
        self.session = session
        self.parent = parent
        self.remaining = count
        self.replies: list[bytes] = []

    def reply_ready(self, sub: Pending) -> None:
        self.replies.append(sub.reply or b"")
        self.remaining -= 1
        if self.remaining == 0:
            good = [r for r in self.replies if not protocol.is_error(r)]
            self.parent.reply = good[0] if good else self.replies[0]
            self.parent.failed = not good
            self.session.reply_ready(self.parent)


class Fallback:
    """A read over replicas: a node failure or a miss (nil) moves on to the next replica."""

    __slots__ = ("nodes", "parent", "proto", "request", "session")

    def __init__(self, session: Any, parent: Pending, request: bytes, nodes: list[Node], proto: int) -> None:
        self.session = session
        self.parent = parent
        self.request = request
        self.nodes = nodes
        self.proto = proto

    def reply_ready(self, sub: Pending) -> None:
        reply = sub.reply or b""
        if self.nodes and (sub.failed or reply == protocol.NIL or reply == b"_\r\n"):
            node = self.nodes.pop(0)
            node.send(Pending(self.request, self), self.proto)
            return
        self.parent.reply = reply
        self.parent.failed = sub.failed
        self.session.reply_ready(self.parent)


class Decode:
    """Decompresses values in a reply (bulk strings and arrays of them) before the client sees it."""

    __slots__ = ("codec", "parent", "session")

    def __init__(self, session: Any, parent: Pending, codec: Codec) -> None:
        self.session = session
        self.parent = parent
        self.codec = codec

    def reply_ready(self, sub: Pending) -> None:
        self.parent.reply = decode_reply(sub.reply or b"", self.codec)
        self.parent.failed = sub.failed
        self.session.reply_ready(self.parent)


class NearFill:
    """A near-cache miss: the GET's reply (from the tracked RESP3 connection) fills the cache and goes to the
    client, a RESP3 null turned into RESP2's nil for a RESP2 client."""

    __slots__ = ("key", "near", "parent", "session")

    def __init__(self, session: Any, parent: Pending, key: bytes, near: NearCache) -> None:
        self.session = session
        self.parent = parent
        self.key = key
        self.near = near

    def reply_ready(self, sub: Pending) -> None:
        reply = sub.reply or b""
        if not sub.failed:
            self.near.fill(self.key, reply)
        if reply == b"_\r\n" and self.session.proto == 2:
            reply = protocol.NIL
        self.parent.reply = reply
        self.parent.failed = sub.failed
        self.session.reply_ready(self.parent)


def decode_reply(reply: bytes, codec: Codec) -> bytes:
    if reply[:1] == b"$":
        payload = protocol.bulk_payload(reply)
        if payload is not None and codec.is_encoded(payload):
            try:
                return protocol.encode_bulk(codec.decode(payload))
            except CodecError as exc:
                return encode_error(f"ERR nexus-fast: {exc}")
        return reply
    if reply[:1] == b"*":
        items = protocol.split_array(reply)
        if items is not None and any(i[:1] == b"$" for i in items):
            return protocol.encode_array([decode_reply(i, codec) for i in items])
    return reply


# -- cluster topology replies (sans-IO: hiredis-parsed values in, slot ranges out) ----------------------------------

Address = tuple[str, int]
SlotRange = tuple[int, int, Address, list[Address]]  # first slot, last slot, master, replicas


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ranges_from_slots(reply: list) -> list[SlotRange]:
    """CLUSTER SLOTS: ``[[start, end, [ip, port, id...], [replica ip, port, id...]...], ...]``."""
    out: list[SlotRange] = []
    for entry in reply:
        master = (_text(entry[2][0]), int(entry[2][1]))
        out.append((int(entry[0]), int(entry[1]), master, [(_text(r[0]), int(r[1])) for r in entry[3:]]))
    return out


def ranges_from_shards(reply: list) -> list[SlotRange]:
    """CLUSTER SHARDS (Redis 7.0+): one map per shard, ``slots`` as flat start/end pairs and ``nodes`` as maps with
    ``endpoint``/``ip``, ``port``, ``role`` and ``health``. Replicas that are not ``online`` (failed, still loading)
    are left out; a shard without slots or without a master is skipped."""
    out: list[SlotRange] = []
    for shard in reply:
        fields = _as_map(shard)
        bounds = [int(v) for v in fields.get("slots", [])]
        master: Address | None = None
        replicas: list[Address] = []
        for raw_node in fields.get("nodes", []):
            node = _as_map(raw_node)
            endpoint = _text(node.get("endpoint", b""))
            host = endpoint if endpoint and endpoint != "?" else _text(node.get("ip", b""))
            port = int(node.get("port", node.get("tls-port", 0)))
            if _text(node.get("role", b"")) == "master":
                master = (host, port)
            elif _text(node.get("health", b"online")) == "online":
                replicas.append((host, port))
        if master is None:
            continue
        for i in range(0, len(bounds) - 1, 2):
            out.append((bounds[i], bounds[i + 1], master, list(replicas)))
    return out


def _as_map(value: Any) -> dict[str, Any]:
    """A RESP3 map (dict) or its RESP2 form, a flat key/value array."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    return {_text(value[i]): value[i + 1] for i in range(0, len(value) - 1, 2)}


# -- routers -----------------------------------------------------------------------------------------------------


class Router:
    """What ring and cluster routing share: dispatch by command kind, split/merge, compression, dirty sessions."""

    cluster_mode = False

    def __init__(self, pool_name: str, config: RedisPoolConfig) -> None:
        self.pool_name = pool_name
        self.config = config
        self.dirty: list[Any] = []  # sessions with replies ready to write (flushed once per read)
        self.codec = Codec(config.compression_threshold) if config.compression else None
        self.near = NearCache(config.near_cache_size, config.near_cache_max_item) if config.near_cache else None
        self.nodes: list[Node] = []
        self.crossslot = CROSSSLOT_RING
        # The session's fast path for plain single-key commands (no compression, no replicas, no replica reads):
        # ``fast_nodes[fast_lookup(key)]`` is the key's node (a negative index or a None entry: take the slow path).
        # None when every command must go through ``single``.
        self.fast_lookup: Any = None
        self.fast_nodes: list[Node | None] = []

    # hooks
    def locate(self, key: bytes) -> tuple[Any, Node | None]:
        raise NotImplementedError

    def topology_changed(self) -> None:
        pass

    def redirect(self, pending: Pending, reply: bytes, proto: int = 2) -> bool:
        return False

    def flush_dirty(self) -> None:
        dirty = self.dirty
        if dirty:
            self.dirty = []
            flush_sessions(dirty)

    # -- dispatch
    def route(self, session: ClientSession, spec: CommandSpec, args: list[bytes], raw: bytes) -> None:
        kind = spec.kind
        if kind == Kind.SINGLE:
            self.single(session, spec, args, raw, args[spec.first])
        elif kind == Kind.SPLIT:
            self.split(session, spec, args)
        elif kind == Kind.MULTI:
            keys = keys_of(spec, args)
            if self.near is not None:
                for key in keys:
                    self.near.invalidate(key)
            if not keys:
                if spec.name in ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"):
                    self.any_node(session, raw, spec)
                    return
                session.reply_now(encode_error(f"ERR wrong number of arguments for '{spec.name}' command"))
                return
            group = self.locate(keys[0])[0]
            for key in keys[1:]:
                if self.locate(key)[0] != group:
                    session.reply_now(self.crossslot)
                    return
            self.single(session, spec, args, raw, keys[0])
        else:
            self.any_node(session, raw, spec)

    def near_cache_unavailable(self, reason: str) -> None:
        """A node will not push invalidations (ACL without CLIENT, no RESP3): the near-cache is switched off for
        good. Nothing from that node was cached yet: its GET replies come after its CLIENT TRACKING answer."""
        if self.near is not None:
            log.error("redis pool %s: near-cache off: %s", self.pool_name, reason)
            self.near.clear()
            self.near = None

    def push(self, raw: bytes) -> None:
        """A RESP3 push from a node: tracking invalidations feed the near-cache; nothing else is expected."""
        if self.near is None or not self.near.push(raw):
            log.debug("redis pool %s: ignored push %r", self.pool_name, raw[:80])

    def single(self, session: ClientSession, spec: CommandSpec, args: list[bytes], raw: bytes, key: bytes) -> None:
        near = self.near
        if near is not None:
            if spec.write:
                near.invalidate(key)
            elif spec.name == "get":
                cached = near.get(key)
                if cached is not None:
                    session.reply_now(cached)
                    return
                parent = Pending(raw, session)
                session.queue.append(parent)
                # over the node's tracked RESP3 connection, so Redis will push this key's invalidation there
                fill = NearFill(session, parent, key, near)
                self.send_key(fill, Pending(raw, fill), key, False, 3)
                return
        codec = self.codec
        if codec is not None:
            raw = self._compress(spec, args, raw, codec)
        parent = Pending(raw, session)
        session.queue.append(parent)
        handler: Any = session
        if codec is not None and spec.name in READS_VALUE:
            handler = Decode(session, parent, codec)
            parent = Pending(raw, handler)
        self.send_key(handler, parent, key, spec.write, session.proto)

    def send_key(self, handler: Any, pending: Pending, key: bytes, write: bool, proto: int) -> None:
        node = self.locate(key)[1]
        if node is None:
            pending.reply = NO_NODE
            pending.failed = True
            handler.reply_ready(pending)
            return
        node.send(pending, proto)

    def any_node(self, session: ClientSession, raw: bytes, spec: CommandSpec) -> None:
        live = [n for n in self.nodes if not n.ejected]
        pending = Pending(raw, session)
        session.queue.append(pending)
        if not live:
            pending.reply = NO_NODE
            session.reply_ready(pending)
            return
        random.choice(live).send(pending, session.proto)

    def split(self, session: ClientSession, spec: CommandSpec, args: list[bytes]) -> None:
        group = spec.group
        nkeys = (len(args) - 1) // group
        if (len(args) - 1) % group:
            session.reply_now(encode_error(f"ERR wrong number of arguments for '{spec.name}' command"))
            return
        if self.codec is not None and spec.name == "mset":
            args = [args[0]] + [self.codec.encode(a) if i % 2 else a for i, a in enumerate(args[1:])]
        if self.near is not None and spec.write:
            for i in range(nkeys):
                self.near.invalidate(args[1 + i * group])
        parent = Pending(None, session)
        session.queue.append(parent)
        merge_handler: Any = session
        if self.codec is not None and spec.name == "mget":
            merge_handler = Decode(session, parent, self.codec)
            parent = Pending(None, merge_handler)
        merge = Merge(merge_handler, parent, spec.merge, nkeys)
        by_group: dict[Any, tuple[Node | None, list[int]]] = {}
        for i in range(nkeys):
            g, node = self.locate(args[1 + i * group])
            entry = by_group.get(g)
            if entry is None:
                by_group[g] = (node, [i])
            else:
                entry[1].append(i)
        subs: list[tuple[Node | None, Pending, list[int]]] = []
        for node, positions in by_group.values():
            sub_args = [args[0]]
            for i in positions:
                sub_args.extend(args[1 + i * group:1 + (i + 1) * group])
            sub = Pending(encode_command(sub_args), merge)
            merge.add(sub, positions)
            subs.append((node, sub, positions))
        for node, sub, _ in subs:
            if node is None:
                sub.reply = NO_NODE
                sub.failed = True
                merge.reply_ready(sub)
            else:
                node.send(sub, session.proto)

    def transaction(self, session: ClientSession, txn: list[tuple[list[bytes], bytes]]) -> None:
        """EXEC: the queued commands go to their one node as MULTI, the commands, EXEC in one contiguous write on a
        shared connection (Redis executes a connection's commands in order, so no other client's command can fall
        inside). The node's +OK/+QUEUED replies are dropped (the proxy already sent them); EXEC's reply is the
        client's. Keys on several nodes (slots, in cluster mode) get -CROSSSLOT and nothing is sent."""
        if self.codec is not None or getattr(self, "replication", 1) > 1:
            session.reply_now(encode_error("ERR nexus-fast: MULTI/EXEC is not available with compression or "
                                           "replication_factor > 1 (values and replicas are written per key)"))
            return
        if self.near is not None:
            for keys, _ in txn:
                for key in keys:
                    self.near.invalidate(key)
        groups = {self.locate(key)[0] for keys, _ in txn for key in keys}
        if len(groups) != 1:
            session.reply_now(encode_error(self.crossslot.decode()[1:-2].replace("request", "transaction")))
            return
        node = self.locate(txn[0][0][0])[1]
        if node is None:
            session.reply_now(NO_NODE)
            return
        conn = node.connection(session.proto, session.id)
        drop = Discard()
        parts = [Pending(MULTI, drop)] + [Pending(raw, drop) for _, raw in txn]
        parent = Pending(EXEC, session)
        session.queue.append(parent)
        for pending in (*parts, parent):
            conn.send(pending)
            pending.request = None  # never re-sent alone: a redirected part would run outside the transaction
        node.requests += len(parts) + 1

    def _compress(self, spec: CommandSpec, args: list[bytes], raw: bytes, codec: Codec) -> bytes:
        where = VALUE_POSITIONS.get(spec.name)
        if where is None:
            return raw
        first, step = where
        if len(args) <= first:
            return raw
        changed = False
        new_args = list(args)
        for i in range(first, len(args), step or len(args)):
            value = args[i]
            encoded = codec.encode(value)
            if encoded is not value and encoded != value:
                new_args[i] = encoded
                changed = True
        return encode_command(new_args) if changed else raw

    # -- lifecycle
    def close(self) -> None:
        for node in self.nodes:
            node.close()

    async def wait_closed(self) -> None:
        for node in self.nodes:
            await node.wait_closed()

    def tick(self, now: float) -> None:
        timeout = self.config.timeout
        if timeout > 0:
            for node in self.nodes:
                node.check_timeouts(now, timeout)


class RingRouter(Router):
    """twemproxy mode: ketama (or modula/random) over the configured servers, with ejection and replication."""

    def __init__(self, pool_name: str, config: RedisPoolConfig) -> None:
        super().__init__(pool_name, config)
        self.nodes = [Node(self, config, s.host, s.port, s.name, s.weight) for s in config.server_specs()]
        self._ring_nodes = [(n.name, n.weight) for n in self.nodes]
        self.replication = config.replication_factor
        self.full_ring = KetamaRing(self._ring_nodes, hash=config.hash, hash_tag=config.hash_tag or None,
                                    distribution=config.distribution)
        self.ring = self.full_ring
        self.topology_changed()

    def topology_changed(self) -> None:
        if self.config.auto_eject_hosts:
            live = [not n.ejected for n in self.nodes]
            self.ring = KetamaRing(self._ring_nodes, hash=self.config.hash, hash_tag=self.config.hash_tag or None,
                                   live=live, distribution=self.config.distribution)
        else:
            self.ring = self.full_ring
        if self.replication == 1 and self.codec is None and self.near is None:
            self.fast_lookup = self.ring.lookup
            # lookup() is -1 when no node is live: the trailing None sends the command the slow way (NO_NODE)
            self.fast_nodes = [*self.nodes, None]

    def locate(self, key: bytes) -> tuple[Any, Node | None]:
        index = self.ring.lookup(key)
        if index < 0:
            return -1, None
        return index, self.nodes[index]

    def send_key(self, handler: Any, pending: Pending, key: bytes, write: bool, proto: int) -> None:
        if self.replication == 1:
            index = self.ring.lookup(key)
            if index < 0:
                pending.reply = NO_NODE
                pending.failed = True
                handler.reply_ready(pending)
                return
            self.nodes[index].send(pending, proto)
            return
        # Replicas are the key's successors on the full ring, so they do not move while a node is out.
        owners = [self.nodes[i] for i in self.full_ring.lookup_n(key, self.replication)]
        live = [n for n in owners if not n.ejected]
        if not live:
            pending.reply = NO_NODE
            pending.failed = True
            handler.reply_ready(pending)
            return
        request = pending.request or b""
        if write:
            fan = FanOut(handler, pending, len(live))
            for node in live:
                node.send(Pending(request, fan), proto)
        else:
            fallback = Fallback(handler, pending, request, live[1:], proto)
            live[0].send(Pending(request, fallback), proto)

    def split(self, session: ClientSession, spec: CommandSpec, args: list[bytes]) -> None:
        if self.replication == 1:
            super().split(session, spec, args)
            return
        # With replicas each key is its own single-key command (fan-out for writes, fallback for reads).
        group = spec.group
        if (len(args) - 1) % group:
            session.reply_now(encode_error(f"ERR wrong number of arguments for '{spec.name}' command"))
            return
        nkeys = (len(args) - 1) // group
        if self.codec is not None and spec.name == "mset":
            args = [args[0]] + [self.codec.encode(a) if i % 2 else a for i, a in enumerate(args[1:])]
        single = {"mget": b"GET", "mset": b"SET"}.get(spec.name, args[0])
        parent = Pending(None, session)
        session.queue.append(parent)
        handler: Any = session
        if self.codec is not None and spec.name == "mget":
            handler = Decode(session, parent, self.codec)
            parent = Pending(None, handler)
        merge = Merge(handler, parent, "array" if spec.merge == "array" else spec.merge, nkeys)
        subs = []
        for i in range(nkeys):
            key_args = args[1 + i * group:1 + (i + 1) * group]
            if spec.merge == "array":
                sub = Pending(encode_command([b"GET", key_args[0]]), merge)
            else:
                sub = Pending(encode_command([single, *key_args]), merge)
            merge.add(sub, [i])
            subs.append((sub, key_args[0]))
        for sub, key in subs:
            self.send_key(merge, sub, key, spec.write, session.proto)


class ClusterRouter(Router):
    """Redis Cluster mode: the slot map from CLUSTER SHARDS (or SLOTS), MOVED/ASK followed, refreshed on redirects."""

    cluster_mode = True

    def __init__(self, pool_name: str, config: RedisPoolConfig) -> None:
        super().__init__(pool_name, config)
        self.crossslot = CROSSSLOT_CLUSTER
        self.seeds = [(s.host, s.port) for s in config.server_specs()]
        self.by_address: dict[str, Node] = {}
        self._slots: list[Node | None] = [None] * 16384
        self.replica_slots: list[list[Node]] = [[] for _ in range(16384)]
        self._refreshing: asyncio.Task | None = None
        self.last_refresh = 0.0
        self.refreshes = 0
        self.topology_command = "shards"  # becomes "slots" when a node refuses CLUSTER SHARDS
        if self.codec is None and not config.read_from_replicas:
            self.fast_lookup = key_slot
            self.fast_nodes = self._slots

    @property
    def slots(self) -> list[Node | None]:
        """Owner of each of the 16384 slots (None: not covered); also the session's fast-path table."""
        return self._slots

    @slots.setter
    def slots(self, value: list[Node | None]) -> None:
        self._slots = value
        if self.fast_lookup is not None:
            self.fast_nodes = value

    def node_at(self, host: str, port: int, replica: bool = False) -> Node:
        address = f"{host}:{port}"
        node = self.by_address.get(address if not replica else address + "/r")
        if node is None:
            node = Node(self, self.config, host, port, address, 1, replica=replica)
            self.by_address[address if not replica else address + "/r"] = node
            self.nodes.append(node)
        return node

    def locate(self, key: bytes) -> tuple[Any, Node | None]:
        slot = key_slot(key)
        return slot, self.slots[slot]

    def send_key(self, handler: Any, pending: Pending, key: bytes, write: bool, proto: int) -> None:
        slot = key_slot(key)
        node = self.slots[slot]
        if not write and self.config.read_from_replicas:
            replicas = [r for r in self.replica_slots[slot] if not r.ejected]
            if replicas:
                node = random.choice(replicas)
        if node is None:
            pending.reply = encode_error("CLUSTERDOWN nexus-fast: slot map not loaded or slot not covered")
            pending.failed = True
            handler.reply_ready(pending)
            self.schedule_refresh()
            return
        node.send(pending, proto)

    def redirect(self, pending: Pending, reply: bytes, proto: int = 2) -> bool:
        """Follow a redirect over a connection of the same RESP version (``proto``) as the one that got it."""
        # "-MOVED <slot> <host>:<port>" / "-ASK <slot> <host>:<port>" (cluster spec, "Redirection and resharding")
        parts = reply[1:-2].split(b" ")
        if len(parts) != 3 or pending.attempts >= MAX_REDIRECTS or pending.request is None:
            return False
        pending.attempts += 1
        host, _, port = parts[2].decode().rpartition(":")
        node = self.node_at(host or "127.0.0.1", int(port))
        if parts[0] == b"MOVED":
            self.slots[int(parts[1])] = node
            self.schedule_refresh()
            node.send(pending, proto)
        else:
            conn = node.connection(proto, affinity(pending))
            node.requests += 1
            conn.send(Pending(ASKING, Discard()))
            conn.send(pending)
        return True

    def schedule_refresh(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self.refresh())

    async def refresh(self) -> bool:
        """Read the slot map from the first node that answers: CLUSTER SHARDS (Redis 7+), else CLUSTER SLOTS.

        A node that refuses SHARDS (an error reply: Redis 6 and older) makes the router use SLOTS from then on."""
        candidates = [(n.host, n.port) for n in self.nodes if not n.replica and not n.ejected] + self.seeds
        for host, port in candidates:
            ranges = None
            try:
                if self.topology_command == "shards":
                    reply = await asyncio.wait_for(self._query(host, port, [b"CLUSTER", b"SHARDS"]),
                                                   self.config.connect_timeout)
                    if isinstance(reply, list):
                        ranges = ranges_from_shards(reply)
                    elif isinstance(reply, Exception):
                        log.info("redis pool %s: %s:%d refused CLUSTER SHARDS (%s); using CLUSTER SLOTS",
                                 self.pool_name, host, port, reply)
                        self.topology_command = "slots"
                if ranges is None and self.topology_command == "slots":
                    reply = await asyncio.wait_for(self._query(host, port, [b"CLUSTER", b"SLOTS"]),
                                                   self.config.connect_timeout)
                    if isinstance(reply, list):
                        ranges = ranges_from_slots(reply)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError, TypeError):
                continue
            if ranges is None:
                continue
            self._apply_ranges(ranges)
            self.last_refresh = time.monotonic()
            self.refreshes += 1
            return True
        return False

    def _apply_ranges(self, ranges: list[SlotRange]) -> None:
        slots: list[Node | None] = [None] * 16384
        replicas: list[list[Node]] = [[] for _ in range(16384)]
        for start, end, (host, port), replica_addresses in ranges:
            node = self.node_at(host or "127.0.0.1", port)
            reps = [self.node_at(h or "127.0.0.1", p, replica=True) for h, p in replica_addresses]
            for slot in range(start, end + 1):
                slots[slot] = node
                replicas[slot] = reps
        self.slots = slots
        self.replica_slots = replicas

    async def _query(self, host: str, port: int, args: list[bytes]) -> Any:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            payload = b""
            config = self.config
            if config.backend_password is not None:
                auth = [b"AUTH"] + ([config.backend_username.encode()] if config.backend_username else [])
                payload += encode_command(auth + [config.backend_password.get_secret_value().encode()])
            writer.write(payload + encode_command(args))
            import hiredis

            parser = hiredis.Reader()
            results: list[Any] = []
            wanted = 2 if config.backend_password is not None else 1
            while len(results) < wanted:
                data = await reader.read(65536)
                if not data:
                    raise asyncio.IncompleteReadError(b"", None)
                parser.feed(data)
                while True:
                    item = parser.gets()
                    if item is False:
                        break
                    results.append(item)
            return results[-1]
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    def tick(self, now: float) -> None:
        super().tick(now)
        if time.monotonic() - self.last_refresh > self.config.cluster_refresh_interval:
            self.last_refresh = time.monotonic()
            self.schedule_refresh()

    def close(self) -> None:
        super().close()
        if self._refreshing is not None:
            self._refreshing.cancel()

    async def wait_closed(self) -> None:
        await cancel_and_wait(self._refreshing)
        await super().wait_closed()

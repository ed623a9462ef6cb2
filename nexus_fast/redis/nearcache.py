"""The near-cache: hot GET replies served from the proxy's memory, kept correct by Redis server-assisted
client-side caching (``CLIENT TRACKING``, https://redis.io/docs/manual/client-side-caching/).

How it stays correct:

* near-cached GETs go to a node over its RESP3 connection, which sent ``CLIENT TRACKING ON``; Redis then
  remembers that this connection read the key and pushes ``>2 invalidate [key]`` on the same connection when
  anyone changes it. Pushes and replies share the connection and Redis writes both in execution order, so a GET
  reply that is older than a change always arrives before the change's invalidation: filling the cache from a
  reply and then applying the push can never leave a stale value behind;
* a write through this proxy drops its keys here at once (a client reads its own writes without waiting for the
  push);
* a push with a null key list (``FLUSHALL``, or tracking's own key table overflowing) and a lost tracking
  connection clear the cache: invalidations may have been missed.

Only whole-value bulk replies (the wire bytes, the same in RESP2 and RESP3) are kept; the byte budget is spent
least-recently-used first. This module is sans-IO: the router feeds it replies and pushes.
"""

from __future__ import annotations

from collections import OrderedDict

from nexus_fast.redis import protocol

ENTRY_OVERHEAD = 96  # bytes charged per entry beyond key and reply: dict slot, OrderedDict link, bytes headers


class NearCache:
    """An LRU of GET replies within ``max_bytes``; ``max_item`` bounds one entry."""

    def __init__(self, max_bytes: int, max_item: int) -> None:
        self.max_bytes = max_bytes
        self.max_item = max_item
        self.entries: OrderedDict[bytes, bytes] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.fills = 0
        self.evictions = 0
        self.invalidations = 0
        self.flushes = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: bytes) -> bytes | None:
        reply = self.entries.get(key)
        if reply is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return reply

    def fill(self, key: bytes, reply: bytes) -> None:
        """Keep a GET reply if it is a non-null bulk string within ``max_item``."""
        if reply[:1] != b"$" or reply == protocol.NIL:
            return
        size = len(key) + len(reply) + ENTRY_OVERHEAD
        if size > self.max_item or size > self.max_bytes:
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old) + ENTRY_OVERHEAD
        self.entries[key] = reply
        self.bytes += size
        self.fills += 1
        while self.bytes > self.max_bytes:
            victim, value = self.entries.popitem(last=False)
            self.bytes -= len(victim) + len(value) + ENTRY_OVERHEAD
            self.evictions += 1

    def invalidate(self, key: bytes) -> None:
        value = self.entries.pop(key, None)
        if value is not None:
            self.bytes -= len(key) + len(value) + ENTRY_OVERHEAD
            self.invalidations += 1

    def clear(self) -> None:
        if self.entries:
            self.flushes += 1
        self.entries.clear()
        self.bytes = 0

    def push(self, raw: bytes) -> bool:
        """Apply a RESP3 push; True when it was an invalidation (``>2 $10 invalidate <array of keys | null>``)."""
        items = protocol.split_array(raw)
        if not items or len(items) != 2 or protocol.bulk_payload(items[0]) != b"invalidate":
            return False
        keys = protocol.split_array(items[1])
        if keys is None:  # null: everything this connection tracked may have changed
            self.clear()
            return True
        for item in keys:
            key = protocol.bulk_payload(item)
            if key is not None:
                self.invalidate(key)
        return True

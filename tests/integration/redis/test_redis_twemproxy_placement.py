"""Bit-for-bit placement: 10,000 keys written through a real twemproxy (Debian's nutcracker) are each found on the
node nexus-fast's ring picks for the same nutcracker.yml."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile

import pytest
import redis

from nexus_fast._testing.ports import free_port, wait_for_port
from nexus_fast._testing.redis import NUTCRACKER
from nexus_fast.balance.ring import KetamaRing
from nexus_fast.config.load import load_config
from nexus_fast.redis.protocol import ReplyScanner, encode_command


@pytest.mark.parametrize(
    ("hash_name", "named", "weights"),
    [("fnv1a_64", False, (1, 1, 1)), ("murmur", True, (1, 2, 3)), ("md5", False, (2, 1, 1)),
     ("crc32a", True, (1, 1, 1)), ("fnv1a_32", False, (1, 1, 2))],
)
def test_placement_matches_nutcracker(nodes, hash_name, named, weights):
    port = free_port()
    servers = [f"{n.address}:{w}" + (f" node{i}" if named else "") for i, (n, w) in enumerate(zip(nodes.nodes,
                                                                                                weights,
                                                                                                strict=True))]
    body = "\n".join(f"    - {s}" for s in servers)
    yml = (f"cache:\n  listen: 127.0.0.1:{port}\n  hash: {hash_name}\n  hash_tag: \"{{}}\"\n"
           f"  distribution: ketama\n  redis: true\n  timeout: 2000\n  servers:\n{body}\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "nutcracker.yml")
        with open(path, "w") as handle:
            handle.write(yml)
        proc = subprocess.Popen([NUTCRACKER, "-c", path, "-s", str(free_port()), "-o", os.path.join(tmp, "log")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port("127.0.0.1", port)
            count = 10000 if hash_name == "fnv1a_64" else 2000
            keys = [f"user:{i}:{i * 7919 % 1000}" if i % 10 else f"{{tag{i % 97}}}:{i}" for i in range(count)]
            # raw RESP: redis-py's connect handshake (CLIENT SETINFO) is not something twemproxy accepts
            with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
                scanner = ReplyScanner()
                for start in range(0, count, 1000):
                    chunk = keys[start:start + 1000]
                    sock.sendall(b"".join(encode_command([b"SET", k.encode(), k.encode()]) for k in chunk))
                    replies: list[bytes] = []
                    while len(replies) < len(chunk):
                        data = sock.recv(65536)
                        assert data, "twemproxy closed the connection"
                        replies += scanner.feed(data)
                    assert set(replies) == {b"+OK\r\n"}
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        pool = load_config(path).config.redis.pools["cache"]
    specs = pool.server_specs()
    ring = KetamaRing([(s.name, s.weight) for s in specs], hash=pool.hash, hash_tag=pool.hash_tag or None)
    by_node: dict[int, list[str]] = {}
    for key in keys:
        by_node.setdefault(ring.lookup(key.encode()), []).append(key)
    assert len(by_node) == 3
    found = 0
    for index, wanted in by_node.items():
        direct = redis.Redis(host=specs[index].host, port=specs[index].port)
        try:
            for start in range(0, len(wanted), 1000):
                chunk = wanted[start:start + 1000]
                values = direct.mget(chunk)
                found += sum(1 for k, v in zip(chunk, values, strict=True) if v == k.encode())
        finally:
            direct.close()
    assert found == len(keys)

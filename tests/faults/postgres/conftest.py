"""A throwaway PostgreSQL (``nexus_fast._testing.postgres``) we may stop, kill and restart, with TLS on and roles
that must log in with md5 or SCRAM (pg_hba), for server-authentication and fault tests."""

from __future__ import annotations

import datetime
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from nexus_fast._testing.ports import free_port
from nexus_fast._testing.postgres import PostgresNode, create_cluster, pg_binaries_available
from nexus_fast.config.schema import NexusConfig
from nexus_fast.observe.metrics import Metrics
from nexus_fast.postgres.plane import PostgresPlane, create_plane

MD5_USER, MD5_PASSWORD = "nx_srv_md5", "srv-md5-pw"
SCRAM_USER, SCRAM_PASSWORD = "nx_srv_scram", "srv-scram-pw"


def _self_signed(directory: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(directory, "server.crt"), os.path.join(directory, "server.key")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    shutil.chown(cert_path, "postgres", "postgres")
    shutil.chown(key_path, "postgres", "postgres")
    return cert_path, key_path


@pytest.fixture(scope="module")
def pg_node() -> Iterator[PostgresNode]:
    if not pg_binaries_available():
        pytest.fail("PostgreSQL 15 binaries are missing (/usr/lib/postgresql/15/bin)")
    cluster = create_cluster(standbys=0)
    node = cluster.primary
    try:
        cert, key = _self_signed(node.data_dir)
        node.write_settings({"ssl": "on", "ssl_cert_file": f"'{cert}'", "ssl_key_file": f"'{key}'"})
        for user, password, method in ((MD5_USER, MD5_PASSWORD, "md5"), (SCRAM_USER, SCRAM_PASSWORD, "scram-sha-256")):
            node.execute(f"SET password_encryption = '{method}'; CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        hba = os.path.join(node.data_dir, "pg_hba.conf")
        with open(hba, encoding="utf-8") as handle:
            rest = handle.read()
        with open(hba, "w", encoding="utf-8") as handle:
            handle.write(f"host all {MD5_USER} 127.0.0.1/32 md5\nhost all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n" + rest)
        node.restart()
        node.execute("CREATE TABLE IF NOT EXISTS f (id int PRIMARY KEY, v text)")
        node.execute(f"GRANT ALL ON f TO {MD5_USER}, {SCRAM_USER}")
        yield node
    finally:
        cluster.close()


@pytest.fixture
async def node_plane(pg_node: PostgresNode) -> AsyncIterator[Callable[..., Awaitable[PostgresPlane]]]:
    planes: list[PostgresPlane] = []

    async def make(**postgres: Any) -> PostgresPlane:
        if not pg_node.is_running():
            pg_node.start()
        section: dict[str, Any] = {
            "listen": f"127.0.0.1:{free_port()}",
            "auth_type": "trust",
            "default_pool_size": 4,
            "connect_timeout": "2s",
            "databases": {"postgres": {"servers": [{"host": "127.0.0.1", "port": pg_node.port, "role": "primary"}]}},
        }
        section.update(postgres)
        plane = create_plane(NexusConfig.model_validate({"postgres": section}), Metrics())
        await plane.start()
        planes.append(plane)
        return plane

    yield make
    for plane in planes:
        await plane.close()
    if not pg_node.is_running():
        pg_node.start()

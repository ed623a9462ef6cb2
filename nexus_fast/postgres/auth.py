"""Password secrets, md5 and SCRAM-SHA-256 (both directions), and PgBouncer's ``userlist.txt``.

- md5 (protocol-flow.html, AuthenticationMD5Password): the client sends ``"md5" + md5(md5(password + user) + salt)``.
- SCRAM-SHA-256 (RFC 5802 with SHA-256 per RFC 7677; PostgreSQL's profile in sasl-authentication.html): the
  ``n=`` user name in client-first-message is ignored (the startup packet names the user); channel binding is not
  offered, so a gs2 header of ``n,,`` or ``y,,`` is accepted and ``p=`` refused.
- Stored secrets as PostgreSQL stores them (``pg_authid.rolpassword``): plain text, ``md5<32 hex>`` or
  ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``.

When a client logs in with SCRAM against a SCRAM secret, the proof reveals its ClientKey (proof XOR signature);
as PgBouncer does, the proxy keeps it to log in to the backend with SCRAM without knowing the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

SCRAM_ITERATIONS = 4096


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def md5_secret(user: str, password: str) -> str:
    """PostgreSQL's stored md5 secret: ``"md5" + md5(password + user)``."""
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def md5_response(secret_hex: str, salt: bytes) -> bytes:
    """The md5 PasswordMessage payload for a stored md5 secret (without the ``md5`` prefix) and salt."""
    return b"md5" + hashlib.md5(secret_hex.encode() + salt).hexdigest().encode()


@dataclass(frozen=True)
class ScramKeys:
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes
    client_key: bytes | None = None  # known from a plain password or recovered from a client's proof

    def secret(self) -> str:
        return (
            f"SCRAM-SHA-256${self.iterations}:{_b64(self.salt)}"
            f"${_b64(self.stored_key)}:{_b64(self.server_key)}"
        )


def scram_keys_from_password(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> ScramKeys:
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramKeys(iterations, salt, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key"), client_key)


def parse_scram_secret(secret: str) -> ScramKeys | None:
    try:
        method, rest = secret.split("$", 1)
        iter_salt, keys = rest.split("$", 1)
        iterations_text, salt_text = iter_salt.split(":", 1)
        stored_text, server_text = keys.split(":", 1)
        if method != "SCRAM-SHA-256":
            return None
        return ScramKeys(int(iterations_text), _unb64(salt_text), _unb64(stored_text), _unb64(server_text))
    except (ValueError, TypeError):
        return None


class AuthFailed(Exception):
    """Password authentication failed (the message is what the client sees, never a secret)."""


@dataclass
class Secret:
    """A user's secret in whichever form it was configured, with derived keys cached."""

    user: str
    text: str  # plain, md5..., or SCRAM-SHA-256$...

    def __post_init__(self) -> None:
        self._scram: ScramKeys | None = parse_scram_secret(self.text) if self.is_scram else None

    @property
    def is_scram(self) -> bool:
        return self.text.startswith("SCRAM-SHA-256$")

    @property
    def is_md5(self) -> bool:
        return len(self.text) == 35 and self.text.startswith("md5") and all(c in "0123456789abcdef" for c in self.text[3:])

    @property
    def is_plain(self) -> bool:
        return not (self.is_scram or self.is_md5)

    def scram_keys(self) -> ScramKeys | None:
        if self._scram is None and self.is_plain:
            self._scram = scram_keys_from_password(self.text)
        return self._scram

    def md5_hex(self) -> str | None:
        if self.is_md5:
            return self.text[3:]
        if self.is_plain:
            return md5_secret(self.user, self.text)[3:]
        return None

    def verify_md5(self, salt: bytes, response: bytes) -> bool:
        hex_part = self.md5_hex()
        return hex_part is not None and hmac.compare_digest(md5_response(hex_part, salt), response.rstrip(b"\x00"))


class ScramServer:
    """Server side of SCRAM-SHA-256 for one login: verifies a client against stored keys."""

    def __init__(self, keys: ScramKeys):
        self.keys = keys
        self._nonce = ""
        self._client_first_bare = ""
        self._server_first = ""
        self.client_key: bytes | None = None

    def first(self, client_first: bytes) -> bytes:
        text = client_first.decode("utf-8", "replace")
        parts = text.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y") or parts[1] != "":
            raise AuthFailed("malformed SCRAM message (channel binding is not supported)")
        bare = parts[2]
        attrs = dict(item.split("=", 1) for item in bare.split(",") if "=" in item)
        client_nonce = attrs.get("r", "")
        if not client_nonce or any(c == "," or not 0x21 <= ord(c) <= 0x7E for c in client_nonce):
            raise AuthFailed("malformed SCRAM message (nonce)")
        self._gs2 = f"{parts[0]},,"
        self._client_first_bare = bare
        self._nonce = client_nonce + base64.b64encode(secrets.token_bytes(18)).decode()
        self._server_first = f"r={self._nonce},s={_b64(self.keys.salt)},i={self.keys.iterations}"
        return self._server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        text = client_final.decode("utf-8", "replace")
        without_proof, sep, proof_text = text.rpartition(",p=")
        if not sep:
            raise AuthFailed("malformed SCRAM message (proof)")
        attrs = dict(item.split("=", 1) for item in without_proof.split(",") if "=" in item)
        if attrs.get("r") != self._nonce:
            raise AuthFailed("SCRAM nonce mismatch")
        if attrs.get("c") != _b64(self._gs2.encode()):
            raise AuthFailed("SCRAM channel binding mismatch")
        try:
            proof = _unb64(proof_text)
        except ValueError:
            raise AuthFailed("malformed SCRAM message (proof)") from None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(self.keys.stored_key, auth_message)
        if len(proof) != len(signature):
            raise AuthFailed("password authentication failed")
        client_key = _xor(proof, signature)
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self.keys.stored_key):
            raise AuthFailed("password authentication failed")
        self.client_key = client_key
        return f"v={_b64(_hmac(self.keys.server_key, auth_message))}".encode()


class ScramClient:
    """Client side of SCRAM-SHA-256 (the proxy logging in to a backend) from a password or known ClientKey."""

    def __init__(self, password: str | None = None, keys: ScramKeys | None = None):
        if password is None and (keys is None or keys.client_key is None):
            raise AuthFailed("SCRAM needs the password or the client key")
        self._password = password
        self._keys = keys
        self._nonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self._first_bare = f"n=,r={self._nonce}"
        self._server_key = b""
        self._auth_message = b""

    def first(self) -> bytes:
        return f"n,,{self._first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode("ascii", "replace")
        attrs = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
        nonce, salt, iterations = attrs.get("r", ""), _unb64(attrs.get("s", "")), int(attrs.get("i", "0"))
        if not nonce.startswith(self._nonce) or iterations <= 0:
            raise AuthFailed("server sent an invalid SCRAM challenge")
        if self._password is not None:
            keys = scram_keys_from_password(self._password, salt, iterations)
        else:
            assert self._keys is not None
            if self._keys.salt != salt or self._keys.iterations != iterations:
                raise AuthFailed("backend SCRAM secret differs from the proxy's copy; configure the password")
            keys = self._keys
        assert keys.client_key is not None
        without_proof = f"c=biws,r={nonce}"
        self._auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        proof = _xor(keys.client_key, _hmac(keys.stored_key, self._auth_message))
        self._server_key = keys.server_key
        return f"{without_proof},p={_b64(proof)}".encode()

    def verify(self, server_final: bytes) -> None:
        text = server_final.decode("ascii", "replace")
        expected = f"v={_b64(_hmac(self._server_key, self._auth_message))}"
        if not hmac.compare_digest(text.encode(), expected.encode()):
            raise AuthFailed("backend SCRAM server signature is wrong")


def parse_auth_file(text: str) -> dict[str, str]:
    """PgBouncer's auth_file: ``"user" "secret"`` per line; ``""`` inside quotes is a literal quote; ; or # comments."""
    users: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        fields: list[str] = []
        pos = 0
        while pos < len(line) and len(fields) < 2:
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos >= len(line) or line[pos] != '"':
                break
            pos += 1
            value = []
            while pos < len(line):
                if line[pos] == '"':
                    if pos + 1 < len(line) and line[pos + 1] == '"':
                        value.append('"')
                        pos += 2
                        continue
                    pos += 1
                    break
                value.append(line[pos])
                pos += 1
            fields.append("".join(value))
        if len(fields) == 2:
            users[fields[0]] = fields[1]
    return users


def load_auth_file(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as handle:
        return parse_auth_file(handle.read())

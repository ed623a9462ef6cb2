"""The ``[postgres]`` section of nexus.toml (owned by the PostgreSQL data plane).

Names and meanings follow PgBouncer's ``pgbouncer.ini`` where a PgBouncer key exists (``pool_mode``,
``default_pool_size``, ``server_reset_query`` ...), so the ini importer maps keys one to one; durations carry units.

Shape::

    [postgres]
    listen = "127.0.0.1:6432"
    pool_mode = "transaction"
    [postgres.databases.appdb]
    dbname = "appdb"
    [[postgres.databases.appdb.servers]]
    host = "127.0.0.1"
    port = 5432
    role = "primary"
    [postgres.users.alice]
    password = "..."

Effective per-(database, user) settings are resolved by :meth:`PostgresConfig.pool_settings`: user override,
then database override, then the section default (PgBouncer's precedence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from nexus_fast.config.section import Section, parse_listen
from nexus_fast.config.units import Duration

PoolMode = Literal["session", "transaction", "statement"]
AuthType = Literal["trust", "md5", "scram-sha-256"]
# libpq sslmode words (https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION)
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
# The selectors of nexus_fast.balance.selectors (the first three are the ones PgCat/PgDog users know).
LoadBalancing = Literal["round_robin", "least_connections", "random", "weighted_round_robin", "ip_hash", "p2c_ewma"]
ServerRole = Literal["primary", "replica"]


class ServerEntry(Section):
    """One backend PostgreSQL server of a database."""

    host: str = Field("127.0.0.1", description="Backend host name or address (a path starting with / is a Unix socket directory).")
    port: int = Field(5432, ge=1, le=65535, description="Backend port.")
    role: ServerRole = Field("primary", description="primary takes writes and transactions; replica serves reads when read_write_split is on.")
    weight: int = Field(1, ge=0, description="Relative share of reads among replicas (for weighted selectors).")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class DatabaseEntry(Section):
    """A database clients connect to (the name in their startup packet) and the servers behind it."""

    dbname: str | None = Field(None, description="Backend database name; defaults to the table key.")
    user: str | None = Field(None, description="Forced backend user: every client of this database uses this server login.")
    password: SecretStr | None = Field(None, description="Password of the forced backend user (plain or md5/SCRAM secret is not usable here: plain).")
    pool_mode: PoolMode | None = Field(None, description="Override of postgres.pool_mode for this database.")
    pool_size: int | None = Field(None, ge=0, description="Override of default_pool_size for this database.")
    min_pool_size: int | None = Field(None, ge=0, description="Override of min_pool_size for this database.")
    reserve_pool_size: int | None = Field(None, ge=0, description="Override of reserve_pool_size for this database.")
    max_db_connections: int | None = Field(None, ge=0, description="Override of max_db_connections for this database.")
    connect_query: str | None = Field(None, description="Query run once on every new server connection.")
    servers: list[ServerEntry] = Field(default_factory=list, description="Backend servers; empty means one primary at 127.0.0.1:5432.")
    load_balancing: LoadBalancing = Field("round_robin", description="How reads are spread among healthy replicas.")
    max_replica_lag: Duration = Field(5.0, description="A replica whose replay lag exceeds this is taken out of reads until it catches up.")
    read_your_writes: Duration = Field(0.0, description="After a client writes, its reads stay on the primary this long (0 = off).")
    ban_time: Duration = Field(30.0, description="How long a replica failing health checks is kept out of reads.")
    read_write_split: bool = Field(True, description="Send reads outside transactions to replicas (when there are any).")
    read_only_functions: list[str] = Field(default_factory=list, description="Functions of this database known not to write (\"f\" or \"schema.f\"): a SELECT calling them may go to a replica. Added to postgres.read_only_functions.")

    def backend_dbname(self, key: str) -> str:
        return self.dbname or key

    def server_list(self) -> list[ServerEntry]:
        return list(self.servers) or [ServerEntry()]

    def primary(self) -> ServerEntry:
        for server in self.server_list():
            if server.role == "primary":
                return server
        return self.server_list()[0]


class UserEntry(Section):
    """A client login with its secret and optional per-user pool settings."""

    password: SecretStr | None = Field(None, description="Plain password, md5 hash (md5...) or SCRAM secret (SCRAM-SHA-256$...).")
    pool_mode: PoolMode | None = Field(None, description="Override of pool_mode for this user.")
    pool_size: int | None = Field(None, ge=0, description="Override of pool size for this user.")
    max_user_connections: int = Field(0, ge=0, description="Most server connections for this user across databases (0 = no limit).")


@dataclass(frozen=True)
class PoolSettings:
    """Effective settings of one (database, user) pool after overrides."""

    pool_mode: PoolMode
    pool_size: int
    min_pool_size: int
    reserve_pool_size: int
    max_db_connections: int


class PostgresConfig(Section):
    listen: str = Field("127.0.0.1:6432", description="Where PostgreSQL clients connect (host:port).")
    unix_socket_dir: str | None = Field(None, description="Also listen on .s.PGSQL.<port> in this directory (None = no Unix socket).")
    pool_mode: PoolMode = Field("transaction", description="When a server connection returns to the pool: after the session, the transaction or each statement.")

    # --- client authentication
    auth_type: AuthType = Field("scram-sha-256", description="How clients authenticate: trust, md5 or scram-sha-256 (plain text passwords are refused).")
    auth_file: str | None = Field(None, description='PgBouncer-format user list: lines of "user" "password-or-md5-or-SCRAM-secret".')
    auth_user: str | None = Field(None, description="Backend login used to run auth_query for users not in auth_file or [postgres.users].")
    auth_password: SecretStr | None = Field(None, description="Password of auth_user (when the backend requires one).")
    auth_query: str = Field("SELECT usename, passwd FROM pg_shadow WHERE usename=$1", description="Query returning (user, secret) for a login, run as auth_user.")
    admin_users: list[str] = Field(default_factory=lambda: ["admin"], description="Users allowed every command on the admin console (database pgbouncer or nexus).")
    stats_users: list[str] = Field(default_factory=list, description="Users allowed read-only SHOW commands on the admin console.")

    # --- pool sizes
    default_pool_size: int = Field(20, ge=0, description="Server connections per (database, user) pool.")
    min_pool_size: int = Field(0, ge=0, description="Server connections kept open per pool even when idle.")
    reserve_pool_size: int = Field(0, ge=0, description="Extra connections a pool may open when a client waited reserve_pool_timeout.")
    reserve_pool_timeout: Duration = Field(5.0, description="How long a client waits before the reserve pool is used.")
    max_client_conn: int = Field(10000, ge=1, description="Most client connections accepted per worker; more are refused with an error.")
    max_db_connections: int = Field(0, ge=0, description="Most server connections per database across users (0 = no limit).")
    max_prepared_statements: int = Field(200, ge=0, description="Prepared statements tracked per server connection in transaction mode (LRU); 0 disables tracking.")

    # --- connection health
    server_reset_query: str = Field("DISCARD ALL", description="Run on a server connection when a session-mode client releases it (empty = none).")
    server_reset_query_always: bool = Field(False, description="Also run server_reset_query in transaction mode (PgBouncer's key).")
    server_check_query: str = Field("SELECT 1", description="Run on a server connection idle longer than server_check_delay before reuse (empty = none).")
    server_check_delay: Duration = Field(30.0, description="Idle time after which server_check_query is run before reuse.")
    server_lifetime: Duration = Field(3600.0, description="Server connections older than this are closed when released (0 = no limit).")
    server_idle_timeout: Duration = Field(600.0, description="Server connections idle longer than this are closed (0 = never).")
    server_connect_query: str | None = Field(None, description="Query run once on every new server connection.")
    tcp_keepalive: bool = Field(True, description="Turn on TCP keepalive on client and server sockets.")
    tcp_keepidle: Duration = Field(0.0, description="TCP_KEEPIDLE (0 = OS default).")
    tcp_keepintvl: Duration = Field(0.0, description="TCP_KEEPINTVL (0 = OS default).")
    tcp_keepcnt: int = Field(0, ge=0, description="TCP_KEEPCNT (0 = OS default).")

    # --- timeouts
    connect_timeout: Duration = Field(5.0, description="Longest wait for a server connection to be established and authenticated.")
    query_timeout: Duration = Field(0.0, description="A query running longer is cancelled on the server (CancelRequest) and the client told (0 = off).")
    query_wait_timeout: Duration = Field(120.0, description="Longest time a client waits for a server connection before an error (0 = forever).")
    idle_transaction_timeout: Duration = Field(0.0, description="A client idle inside a transaction longer than this is disconnected (0 = off).")
    client_idle_timeout: Duration = Field(0.0, description="A client idle (not in a transaction) longer than this is disconnected (0 = off).")
    client_login_timeout: Duration = Field(60.0, description="A client that has not finished logging in within this is disconnected.")

    # --- TLS (sslmode semantics: https://www.postgresql.org/docs/current/libpq-ssl.html)
    client_tls_sslmode: SslMode = Field("disable", description="TLS towards clients: disable refuses SSLRequest; allow/prefer accept it; require and verify-* refuse clients without TLS; verify-* also demand a client certificate.")
    client_tls_cert_file: str | None = Field(None, description="Certificate presented to clients (PEM).")
    client_tls_key_file: str | None = Field(None, description="Private key of client_tls_cert_file (PEM).")
    client_tls_ca_file: str | None = Field(None, description="CA that client certificates must chain to (verify-ca/verify-full).")
    server_tls_sslmode: SslMode = Field("disable", description="TLS towards servers, as libpq's sslmode: prefer tries TLS then plain; require insists; verify-ca/verify-full also check the certificate (and host name).")
    server_tls_ca_file: str | None = Field(None, description="CA that server certificates must chain to (verify-ca/verify-full).")
    server_tls_cert_file: str | None = Field(None, description="Client certificate presented to servers (PEM).")
    server_tls_key_file: str | None = Field(None, description="Private key of server_tls_cert_file (PEM).")

    # --- retries of server connects
    connect_retries: int = Field(3, ge=0, description="Retries of a failed server connect (exponential backoff with full jitter).")
    retry_backoff_base: Duration = Field(0.05, description="First retry backoff; doubles each attempt, a random share of it is slept (full jitter).")
    retry_backoff_max: Duration = Field(2.0, description="Largest backoff between connect retries.")
    retry_budget_ratio: float = Field(0.2, ge=0.0, le=1.0, description="Retries allowed as a share of recent connect attempts; beyond it connects fail fast.")

    # --- misc
    application_name_add_host: bool = Field(False, description="Append the client address to application_name.")
    ignore_startup_parameters: list[str] = Field(default_factory=lambda: ["extra_float_digits", "search_path"], description="Startup parameters accepted from clients and not forwarded (PgBouncer's key).")
    stats_period: Duration = Field(60.0, description="Period over which SHOW STATS averages are computed.")

    # --- read/write routing (nexus_fast.postgres.router)
    read_only_functions: list[str] = Field(default_factory=list, description="Functions known not to write, for every database (\"f\" or \"schema.f\"); other non-built-in functions keep a SELECT on the primary.")
    replica_check_interval: Duration = Field(1.0, description="How often each replica's health and replay lag are polled (logging in as the health probes do: the database's forced user, else auth_user, else the first configured user, else postgres).")
    replica_check_timeout: Duration = Field(2.0, description="A replica (or primary) probe slower than this counts as a failed health check.")

    databases: dict[str, DatabaseEntry] = Field(default_factory=dict, description="Databases clients may connect to, keyed by the name they use; '*' is a wildcard fallback.")
    users: dict[str, UserEntry] = Field(default_factory=dict, description="Client logins and per-user settings.")

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> PostgresConfig:
        if self.client_tls_sslmode in ("allow", "prefer", "require", "verify-ca", "verify-full") and not (
            self.client_tls_cert_file and self.client_tls_key_file
        ):
            raise ValueError("client_tls_sslmode other than disable needs client_tls_cert_file and client_tls_key_file")
        if self.client_tls_sslmode in ("verify-ca", "verify-full") and not self.client_tls_ca_file:
            raise ValueError("client_tls_sslmode verify-ca/verify-full needs client_tls_ca_file")
        if self.server_tls_sslmode in ("verify-ca", "verify-full") and not self.server_tls_ca_file:
            raise ValueError("server_tls_sslmode verify-ca/verify-full needs server_tls_ca_file")
        if self.retry_backoff_max < self.retry_backoff_base:
            raise ValueError("retry_backoff_max must be at least retry_backoff_base")
        for name, db in self.databases.items():
            primaries = [s for s in db.servers if s.role == "primary"]
            if db.servers and len(primaries) != 1:
                raise ValueError(f"database {name!r} needs exactly one server with role = \"primary\" (has {len(primaries)})")
        return self

    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    def database(self, name: str) -> DatabaseEntry | None:
        """The entry for a client's database name, or the '*' wildcard entry, or None."""
        entry = self.databases.get(name)
        if entry is None:
            entry = self.databases.get("*")
        return entry

    def pool_settings(self, database: str, user: str) -> PoolSettings:
        db = self.database(database) or DatabaseEntry()
        usr = self.users.get(user)
        mode = (usr.pool_mode if usr and usr.pool_mode else None) or db.pool_mode or self.pool_mode
        size = usr.pool_size if usr and usr.pool_size is not None else None
        if size is None:
            size = db.pool_size if db.pool_size is not None else self.default_pool_size
        return PoolSettings(
            pool_mode=mode,
            pool_size=size,
            min_pool_size=db.min_pool_size if db.min_pool_size is not None else self.min_pool_size,
            reserve_pool_size=db.reserve_pool_size if db.reserve_pool_size is not None else self.reserve_pool_size,
            max_db_connections=db.max_db_connections if db.max_db_connections is not None else self.max_db_connections,
        )

"""Redis clients from `[redis]`: every process makes its clients here.

`url` is either a plain address (`redis://`, `rediss://`, `unix://`: redis-py's `from_url`)
or a Sentinel address, `redis+sentinel://[[user]:password@]host1:26379,host2/service[/db]`:
the sentinels to ask (26379 when no port is given), the name they monitor the primary by,
and the database. The password is the data nodes'; sentinels that need one of their own get
`[redis] sentinel_password`. `rediss+sentinel://` is the same over TLS, to the sentinels and
to the data nodes alike, with the TLS settings of redis-py's `rediss://` URLs in its query
(`?ssl_ca_certs=/etc/callhook/redis-ca.pem`; `TLS_SETTINGS`).

A Sentinel client is redis-py's own (`Sentinel(...).master_for(service)`): each new
connection asks the sentinels for the current primary, and a connection that finds its
server demoted to a replica is dropped, so after a failover every pool reconnects to the new
primary by itself (tests/test_redis_topologies.py kills a primary to prove it). Closing the
client closes its connections to the sentinels too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

if TYPE_CHECKING:
    from callhook.config import RedisConfig

SENTINEL_SCHEME = "redis+sentinel"
TLS_SENTINEL_SCHEME = "rediss+sentinel"
DEFAULT_SENTINEL_PORT = 26379
#: what a `rediss+sentinel://` query may set (redis-py's names, as in a `rediss://` URL)
TLS_SETTINGS = (
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)
_CERT_REQS = ("none", "optional", "required")
#: socket bounds on the sentinels when the caller gives none (a hung sentinel must not
#: hang discovery: the next one is asked)
_SENTINEL_SOCKET_S = 5.0


@dataclass(frozen=True, slots=True)
class SentinelAddress:
    """A parsed `redis+sentinel://` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    #: None: plain TCP; else redis-py's TLS options (`ssl=True` and the URL's settings)
    tls: Mapping[str, Any] | None = None


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith((f"{SENTINEL_SCHEME}://", f"{TLS_SENTINEL_SCHEME}://"))


def parse_sentinel_url(url: str) -> SentinelAddress:
    """Parse a `redis+sentinel://` or `rediss+sentinel://` URL; a `ValueError` says what is
    wrong without quoting the user info (the password may be anywhere before the last `@`)
    or a query value."""
    scheme, _, after = url.partition("://")
    userinfo, at, rest = after.rpartition("@")
    if "#" in rest:
        raise ValueError(f"a {scheme}:// URL takes no fragment")
    rest, question, query = rest.partition("?")
    tls = None
    if scheme.lower() == TLS_SENTINEL_SCHEME:
        tls = _tls_settings(query)
    elif question:
        raise ValueError(
            "a redis+sentinel:// URL takes no query (TLS settings go in a rediss+sentinel:// one)"
        )
    hosts, _, path = rest.partition("/")
    sentinels = tuple(_sentinel(host) for host in hosts.split(",") if host.strip())
    if not sentinels:
        raise ValueError(
            "no sentinel in the redis+sentinel:// URL (redis+sentinel://host:26379/service)"
        )
    service, _, db = path.partition("/")
    service = unquote(service)
    if not service:
        raise ValueError(
            "no service name in the redis+sentinel:// URL (redis+sentinel://host:26379/service)"
        )
    db = db.removesuffix("/")
    if db and not db.isdigit():
        raise ValueError(f"the database after the service name must be a number, not {db!r}")
    username, password = None, None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return SentinelAddress(sentinels, service, int(db or 0), username, password, tls)


def _tls_settings(query: str) -> dict[str, Any]:
    """redis-py's TLS options from a `rediss+sentinel://` query."""
    settings: dict[str, Any] = {"ssl": True}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name not in TLS_SETTINGS:
            raise ValueError(
                f"unknown setting {name!r} in the URL's query (known: {', '.join(TLS_SETTINGS)})"
            )
        if name in settings:
            raise ValueError(f"{name} is given twice in the URL's query")
        if name == "ssl_cert_reqs" and value not in _CERT_REQS:
            raise ValueError(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
        if name == "ssl_check_hostname":
            if value not in ("true", "false"):
                raise ValueError("ssl_check_hostname must be true or false")
            settings[name] = value == "true"
        elif not value:
            raise ValueError(f"{name} has no value in the URL's query")
        else:
            settings[name] = value
    return settings


def _sentinel(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [IPv6]:port
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(f"bad sentinel address {text!r}")
        port = port[1:]
    else:
        host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"bad sentinel address {text!r}: no host")
    if not port:
        return host, DEFAULT_SENTINEL_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad sentinel address {text!r}: the port must be 1-65535")
    return host, int(port)


def async_client(config: RedisConfig, **options: Any) -> redis.asyncio.Redis:
    """An asyncio client of the primary `config.url` names; `options` are redis-py's
    connection options (socket timeouts, pool size, health checks)."""
    if not is_sentinel_url(config.url):
        return redis.asyncio.Redis.from_url(config.url, **options)
    address = parse_sentinel_url(config.url)
    sentinel = redis.asyncio.sentinel.Sentinel(
        address.sentinels, sentinel_kwargs=_sentinel_options(config, address, options)
    )
    client: redis.asyncio.Redis = sentinel.master_for(
        address.service_name, redis_class=_AsyncSentinelClient, **_node_options(address, options)
    )
    return client


def sync_client(config: RedisConfig, **options: Any) -> redis.Redis:
    """A blocking client of the primary `config.url` names (the Dramatiq broker's)."""
    if not is_sentinel_url(config.url):
        return redis.Redis.from_url(config.url, **options)
    address = parse_sentinel_url(config.url)
    sentinel = redis.sentinel.Sentinel(
        address.sentinels, sentinel_kwargs=_sentinel_options(config, address, options)
    )
    client: redis.Redis = sentinel.master_for(
        address.service_name, redis_class=_SyncSentinelClient, **_node_options(address, options)
    )
    return client


def _node_options(address: SentinelAddress, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "db": address.db,
        "username": address.username,
        "password": address.password,
        **(address.tls or {}),
        **options,
    }


def _sentinel_options(
    config: RedisConfig, address: SentinelAddress, options: dict[str, Any]
) -> dict[str, Any]:
    password = config.sentinel_password
    return {
        "socket_connect_timeout": options.get("socket_connect_timeout") or _SENTINEL_SOCKET_S,
        "socket_timeout": options.get("socket_timeout") or _SENTINEL_SOCKET_S,
        "password": None if password is None else password.get_secret_value(),
        **(address.tls or {}),
    }


async def ping_primary(client: redis.asyncio.Redis) -> str:
    """PING the primary over one connection and return the address that answered
    (`host:port`, or `unix:/path`): the primary this process writes to now."""
    async with client.client() as single:
        await single.ping()
        connection = single.connection
        assert connection is not None
        return _address(connection)


def _address(connection: Any) -> str:
    path = getattr(connection, "path", None)
    if path:
        return f"unix:{path}"
    host, port = str(connection.host), connection.port
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _AsyncSentinelClient(redis.asyncio.Redis):
    """A client of a Sentinel-managed pool that also closes the sentinels' connections
    when it closes its pool (redis-py leaves those to the caller)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        owns_pool = close_connection_pool or (
            close_connection_pool is None and self.auto_close_connection_pool
        )
        await super().aclose(close_connection_pool)
        if owns_pool:
            pool = self.connection_pool
            assert isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool)
            await pool.sentinel_manager.aclose()


class _SyncSentinelClient(redis.Redis):
    """The blocking twin of `_AsyncSentinelClient`."""

    def close(self) -> None:
        owns_pool = self.auto_close_connection_pool
        super().close()
        if owns_pool:
            pool = self.connection_pool
            assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
            pool.sentinel_manager.close()

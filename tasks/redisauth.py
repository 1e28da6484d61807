"""How every client reaches Redis, and how its address is shown to people.

Redis is one server named by ``MAILSCAN_REDIS_URL``, or runs under Sentinel
(``MAILSCAN_REDIS_SENTINELS``): then every client asks the sentinels for the current primary
and asks again whenever its connection fails, so it finds the new primary after a failover.
``connect``, ``connect_async`` and ``celery_url`` with ``celery_transport_options`` are the
only ways in: every client of mailscan is made by one of them.

``MAILSCAN_REDIS_URL`` may carry the password (``redis://:PASSWORD@host:6379/0``). When it
carries none, the password is read from ``MAILSCAN_REDIS_PASSWORD_FILE`` (default
``<var>/redis/password``), where ``mailscan up`` keeps the one it made for its own Redis; no
file, no password. The file is read when a client is made, not with the settings: a local
stack writes it after its settings were loaded.

Raises ConfigError when the file exists but cannot be read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from tasks.errors import ConfigError
from tasks.wire.keys import ENV_PREFIX

if TYPE_CHECKING:  # settings show URLs through masked() below
    from tasks.settings import Settings

MASK = "***"
# A sentinel that does not answer is skipped for the next one: never wait on it long.
SENTINEL_TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 2.0}


def password(settings: Settings) -> str:
    """The password in the URL, else the one in the password file, else ""."""
    in_url = url_password(settings.redis_url)
    if in_url:
        return in_url
    path = settings.redis_password_file
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
    except OSError as err:
        raise ConfigError(f"cannot read {ENV_PREFIX}REDIS_PASSWORD_FILE={path}: {err}") from err


def client_url(settings: Settings) -> str:
    """The URL clients connect with: the configured one, with the password."""
    url = settings.redis_url
    secret = password(settings)
    if not secret or url_password(url):
        return url
    return with_password(url, secret)


def connect(settings: Settings, **options: Any) -> redis.Redis:
    """A client of this deployment's Redis (of its current primary under Sentinel);
    ``options`` as for ``redis.Redis``."""
    if not settings.redis_sentinels:
        return redis.Redis.from_url(client_url(settings), **options)
    sentinels = sentinel(settings, **options)
    return sentinels.master_for(settings.redis_master, redis_class=redis.Redis)


def connect_async(settings: Settings, **options: Any) -> aioredis.Redis:
    """``connect`` for asyncio."""
    if not settings.redis_sentinels:
        return aioredis.Redis.from_url(client_url(settings), **options)
    sentinels = AsyncSentinel(
        _addresses(settings), sentinel_kwargs=sentinel_options(settings),
        **_primary_options(settings), **options,
    )  # fmt: skip
    return sentinels.master_for(settings.redis_master, redis_class=aioredis.Redis)


def sentinel(settings: Settings, **options: Any) -> Sentinel:
    """The sentinels of this deployment; ``options`` for the connections to the primary."""
    return Sentinel(
        _addresses(settings), sentinel_kwargs=sentinel_options(settings),
        **_primary_options(settings), **options,
    )  # fmt: skip


def sentinel_options(settings: Settings) -> dict[str, Any]:
    """How a client talks to a sentinel: with the Redis password, and short timeouts."""
    secret = password(settings)
    return {**SENTINEL_TIMEOUTS, **({"password": secret} if secret else {})}


def celery_url(settings: Settings) -> str:
    """The broker and result backend URL: the Redis URL, or every sentinel as kombu's and
    Celery's sentinel transports take them (``sentinel://...;sentinel://...``)."""
    if not settings.redis_sentinels:
        return client_url(settings)
    secret = password(settings)
    auth = f":{quote(secret, safe='')}@" if secret else ""
    db = database(settings.redis_url)
    hosts = [_netloc(s.host, s.port) for s in settings.redis_sentinels]
    return ";".join(f"sentinel://{auth}{host}/{db}" for host in hosts)


def celery_transport_options(settings: Settings) -> dict[str, Any]:
    """What the sentinel transports need besides the URL; nothing for a plain Redis."""
    if not settings.redis_sentinels:
        return {}
    return {"master_name": settings.redis_master, "sentinel_kwargs": sentinel_options(settings)}


def database(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def _addresses(settings: Settings) -> list[tuple[str, int]]:
    return [(s.host, s.port) for s in settings.redis_sentinels]


def _primary_options(settings: Settings) -> dict[str, Any]:
    secret = password(settings)
    return {"db": database(settings.redis_url), **({"password": secret} if secret else {})}


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def with_password(url: str, secret: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "password"]
        return _with_query(url, urlencode([*query, ("password", secret)]))
    user = quote(unquote(parts.username), safe="") if parts.username else ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(secret, safe='')}@{host}"))


def masked(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: for logs, status and prints."""
    if not url_password(url):
        return url
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, MASK if k == "password" else v) for k, v in parse_qsl(parts.query)]
        return _with_query(url, urlencode(query, safe="*"))
    user, _, _ = parts.netloc.rpartition("@")[0].partition(":")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def _with_query(url: str, query: str) -> str:
    # Not urlunsplit: it writes unix:///path back as unix:/path.
    return f"{url.partition('?')[0]}?{query}"


def url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return dict(parse_qsl(parts.query)).get("password", "")
    return unquote(parts.password) if parts.password else ""

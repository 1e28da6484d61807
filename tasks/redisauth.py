"""How every client reaches Redis, and how its address is shown to people.

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

from tasks.errors import ConfigError
from tasks.wire.keys import ENV_PREFIX

if TYPE_CHECKING:  # settings show URLs through masked() below
    from tasks.settings import Settings

MASK = "***"


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
    """A client of this deployment's Redis; ``options`` as for ``redis.Redis``."""
    return redis.Redis.from_url(client_url(settings), **options)


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

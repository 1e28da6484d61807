"""STARTTLS at the SMTP front: the administrator's certificate and key, loaded once at start
(a bad pair stops start-up with one line), TLS 1.2 or newer only, and, when TLS is required,
``530 5.7.0`` for every command that would move mail before the client has started TLS.

What a client sent in plaintext after STARTTLS, before its handshake, is dropped by aiosmtpd
when the handshake completes (RFC 3207, 4.2: commands injected by a man in the middle);
tests/test_edge_tls.py holds it to that.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.smtp import SMTP

from tasks.errors import ConfigError
from tasks.settings import Settings, env_name

# RFC 3207 lets NOOP, EHLO, STARTTLS and QUIT through; RSET carries no mail either.
ALLOWED_BEFORE_TLS = frozenset({"EHLO", "STARTTLS", "NOOP", "RSET", "QUIT"})
MUST_START_TLS = "530 5.7.0 Must issue a STARTTLS command first"
CERT, KEY = env_name("tls_cert"), env_name("tls_key")

Command = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class StartTLS:
    """What the front offers: a server context (None: no STARTTLS) and whether mail must
    wait for TLS. ``from_settings`` raises ConfigError for a pair that cannot serve."""

    context: ssl.SSLContext | None = None
    required: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> StartTLS:
        cert, key = settings.tls_cert, settings.tls_key
        if cert is None and key is None:
            if settings.tls_required:
                raise ConfigError(
                    f"{env_name('tls_required')}=yes needs {CERT} and {KEY} (no certificate)"
                )
            return cls()
        if cert is None or key is None:
            given, missing = (CERT, KEY) if key is None else (KEY, CERT)
            raise ConfigError(f"{given} is set without {missing}: give both or neither")
        return cls(server_context(cert, key), settings.tls_required)

    def guard(self, server: SMTP) -> SMTP:
        """``server``, answering 530 before TLS to the commands that need it, if required."""
        if self.required:
            # aiosmtpd's own require_starttls answers without the enhanced status code and
            # refuses RSET: our gate sits in its command table instead, one per connection.
            methods = server._smtp_methods
            for name, method in methods.items():
                if name not in ALLOWED_BEFORE_TLS:
                    methods[name] = _after_tls(server, method)
        return server


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context holding ``cert`` and ``key``; ConfigError naming the variable
    when a file cannot be read or the two are not a certificate and its key."""
    _check_pem(CERT, cert, b"-----BEGIN CERTIFICATE-----", "certificate")
    _check_pem(KEY, key, b"PRIVATE KEY-----", "private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # Renegotiation asked by a client costs the server a handshake each time, for nothing.
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        # A passphrase would make OpenSSL ask for it on the terminal: refused instead.
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except ssl.SSLError as err:
        reason = (err.reason or "not readable as PEM").lower().replace("_", " ")
        raise ConfigError(
            f"{CERT}={str(cert)!r} and {KEY}={str(key)!r} are not a certificate and its "
            f"private key ({reason})"
        ) from err
    return context


def _check_pem(name: str, path: Path, marker: bytes, what: str) -> None:
    """Each file on its own first: OpenSSL's error for the pair does not say which is bad."""
    try:
        text = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{name}={str(path)!r}: cannot read it ({err.strerror})") from err
    if marker not in text:
        raise ConfigError(f"{name}={str(path)!r}: no PEM {what} in it")


def _no_passphrase() -> bytes:
    raise ConfigError(f"{KEY}: the private key is encrypted; give it without a passphrase")


def _after_tls(server: SMTP, command: Command) -> Command:
    async def gated(arg: str) -> None:
        # aiosmtpd gives the session its ``ssl`` facts once the handshake is done.
        if server.session is None or server.session.ssl is None:
            await server.push(MUST_START_TLS)
            return
        await command(arg)

    return gated

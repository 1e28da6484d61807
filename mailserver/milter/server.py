"""Where the milter front listens (``MAILSCAN_MILTER``: a TCP address or a Unix socket),
beside the SMTP front on the same event loop, pipeline and spool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from mailserver.front.pipeline import Pipeline
from mailserver.front.redrive import Redriver
from mailserver.milter.scanning import MessageScanner
from mailserver.milter.session import MilterSession
from tasks.errors import ConfigError
from tasks.setting_parsers import Endpoint

log = logging.getLogger(__name__)
Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen_milter(
    endpoint: Endpoint, pipeline: Pipeline, redriver: Redriver
) -> asyncio.Server:
    """Start serving; ConfigError with one clear line when the address cannot be had."""
    scanner = MessageScanner(pipeline, redriver)
    max_bytes = pipeline.settings.max_message_bytes

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await MilterSession(reader, writer, scanner.answer, max_bytes).run()

    try:
        server = await _open(endpoint, serve)
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        raise ConfigError(f"cannot listen for the milter on {endpoint}: {reason}") from err
    log.info("milter front listening on %s (Postfix: smtpd_milters = %s)", endpoint,
             postfix_name(endpoint))  # fmt: skip
    return server


def postfix_name(endpoint: Endpoint) -> str:
    """The endpoint as Postfix's ``smtpd_milters`` names it."""
    if endpoint.socket_path:
        return f"unix:{endpoint.socket_path}"
    return f"inet:{endpoint.host}:{endpoint.port}"


async def _open(endpoint: Endpoint, serve: Serve) -> asyncio.Server:
    if endpoint.socket_path is None:
        return await asyncio.start_server(serve, endpoint.host, endpoint.port)
    path = endpoint.socket_path
    _remove_stale(path)
    server = await asyncio.start_unix_server(serve, path)
    # The MTA runs as a user of its own (Postfix: postfix): whoever can reach the folder
    # may connect. The socket's folder is what keeps others out.
    os.chmod(path, 0o666)  # noqa: S103 - see above
    return server


def _remove_stale(path: Path) -> None:
    """A socket a stopped milter left behind is removed; one that answers is in use."""
    if not path.is_socket():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    finally:
        probe.close()
    raise ConfigError(f"cannot listen for the milter on unix:{path}: another process answers there")

"""Connections to the next hop kept open between messages.

A relaying front hands one message after another to the same host: a new connection and
EHLO for each one would cost the next hop as much as the message. The pool keeps a few
connections open (``keep``), takes them on worker threads, and checks each with RSET before
it carries a message. More deliveries at once than ``keep`` open connections of their own,
closed after their message: no delivery ever waits for another one's connection.

Whether a failed message may be sent again on a fresh connection is the caller's choice
(``NextHopClient.data_sent`` tells it): only while nothing can have been accepted.
"""

from __future__ import annotations

import logging
import smtplib
import threading
import time

log = logging.getLogger(__name__)

# Below the idle timeouts next hops keep (Postfix's smtpd waits 300 s, many others 60 s), so
# a kept connection is closed by us, cleanly with QUIT, not found dead by the next message.
IDLE_S = 30.0
# A kept connection that does not answer QUIT at once is closed without waiting.
QUIT_TIMEOUT_S = 2.0


class NextHopClient(smtplib.SMTP):
    """smtplib's client, keeping the reply to DATA (``sendmail`` drops it) and whether DATA
    began (from then on the next hop may have the message, whatever happens)."""

    data_reply = ""
    data_sent = False
    reused = False  # it carried a message before this one
    idle_since = 0.0

    def data(self, msg: bytes | str) -> tuple[int, bytes]:
        self.data_sent = True
        code, text = super().data(msg)
        self.data_reply = f"{code} {text.decode('utf-8', 'replace')}"
        return code, text


class RelayPool:
    """Up to ``keep`` idle connections to one next hop, safe to use from several threads.
    ``take`` raises what smtplib's connect raises (OSError, SMTPException)."""

    def __init__(
        self, host: str, port: int, timeout_s: float, keep: int, idle_s: float = IDLE_S
    ) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.keep, self.idle_s = keep, idle_s
        self._idle: list[NextHopClient] = []
        self._lock = threading.Lock()

    def take(self, fresh: bool = False) -> NextHopClient:
        """A connection ready for a message: a kept one that answers RSET, else a new one."""
        client = None if fresh else self._kept()
        if client is None:
            client = NextHopClient(self.host, self.port, timeout=self.timeout_s)
        client.data_reply, client.data_sent = "", False
        return client

    def give_back(self, client: NextHopClient) -> None:
        """After a transaction that ended with a reply: the connection is in step."""
        if client.sock is None:  # smtplib closed it (a 421)
            return
        client.reused, client.idle_since = True, time.monotonic()
        with self._lock:
            kept = len(self._idle) < self.keep
            if kept:
                self._idle.append(client)
        if not kept:
            _quit(client)

    def drop(self, client: NextHopClient) -> None:
        """After a failure that may have left the connection out of step."""
        client.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            _quit(client)

    def _kept(self) -> NextHopClient | None:
        for client in self._sweep():
            if _answers_rset(client):
                return client
            log.info("next hop %s:%d closed a kept connection", self.host, self.port)
            client.close()
        return None

    def _sweep(self):
        """Kept connections, the most recently used first (the likeliest to be alive); the
        ones idle too long are closed on the way."""
        while True:
            with self._lock:
                if not self._idle:
                    return
                client = self._idle.pop()
                expired = [c for c in self._idle if self._expired(c)]
                self._idle = [c for c in self._idle if c not in expired]
            for old in expired:
                _quit(old)
            if self._expired(client):
                _quit(client)
                continue
            yield client

    def _expired(self, client: NextHopClient) -> bool:
        return time.monotonic() - client.idle_since > self.idle_s


def _answers_rset(client: NextHopClient) -> bool:
    try:
        return client.rset()[0] == 250
    except OSError:  # smtplib's errors are OSErrors too
        return False


def _quit(client: NextHopClient) -> None:
    try:
        if client.sock is not None:
            client.sock.settimeout(QUIT_TIMEOUT_S)
        client.quit()
    except OSError:
        client.close()

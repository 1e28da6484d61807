"""The spamassassin plugin's own handling of what spamd answers: each case is a loopback
peer that answers one request with fixed bytes (as spamd would in that situation), so the
plugin's reading of it is tested without depending on when a real spamd fails. The real
spamd is in tests/test_engines.py and the fault tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tasks.errors import BackendProtocol, BackendUnavailable
from tasks.plugins.spamassassin import SpamassassinPlugin
from tasks.setting_parsers import Endpoint
from tasks.settings import load_settings

HAM = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: False ; 1.5 / 5.0\r\n\r\nRULE_A,RB"


class Peer:
    """Answers each connection with ``answer`` once it has read the request to its end."""

    def __init__(self, answer: bytes, read_request: bool = True) -> None:
        self.answer, self.read_request = answer, read_request
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self.requests.append(self._read(conn) if self.read_request else b"")
                conn.sendall(self.answer)

    @staticmethod
    def _read(conn: socket.socket) -> bytes:
        parts = []
        while part := conn.recv(65536):
            parts.append(part)
        return b"".join(parts)


@pytest.fixture
def peer_plugin(request) -> Iterator[tuple[Peer, SpamassassinPlugin]]:
    peer = Peer(*request.param)
    settings = replace(load_settings(), spamd=Endpoint("127.0.0.1", peer.port), spamd_timeout_s=2.0)
    yield peer, SpamassassinPlugin(settings)
    peer.listener.close()


@pytest.mark.parametrize("peer_plugin", [(HAM,)], indirect=True)
def test_the_request_is_spamds_symbols_with_the_whole_message(peer_plugin):
    peer, plugin = peer_plugin
    message = b"Subject: hello\r\n\r\nbody\r\n"
    verdict = plugin.scan(message)
    assert (verdict.status, verdict.score, verdict.rules) == ("ham", 1.5, ("RULE_A", "RB"))
    head, _, body = peer.requests[0].partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"SYMBOLS SPAMC/1.5"
    assert f"Content-length: {len(message)}".encode() in head.split(b"\r\n")
    assert body == message
    assert plugin.backend_version() == "spamd, protocol SPAMD/1.1"


@pytest.mark.parametrize(
    "peer_plugin", [(b"SPAMD/1.5 76 Bad header line: (Content-length)\r\n\r\n",)], indirect=True
)
def test_an_error_status_from_spamd_is_a_protocol_failure_naming_it(peer_plugin):
    _, plugin = peer_plugin
    with pytest.raises(BackendProtocol, match="Bad header line"):
        plugin.scan(b"Subject: x\r\n\r\nx\r\n")


@pytest.mark.parametrize("peer_plugin", [(b"HTTP/1.1 400 Bad Request\r\n\r\n",)], indirect=True)
def test_an_answer_that_is_not_spamds_protocol_is_a_protocol_failure(peer_plugin):
    _, plugin = peer_plugin
    with pytest.raises(BackendProtocol, match="unreadable"):
        plugin.scan(b"Subject: x\r\n\r\nx\r\n")


@pytest.mark.parametrize("peer_plugin", [(b"",)], indirect=True)
def test_a_hang_up_without_an_answer_is_a_backend_failure_after_retries(peer_plugin):
    peer, plugin = peer_plugin
    with pytest.raises(BackendUnavailable, match="closed the connection unanswered"):
        plugin.scan(b"Subject: x\r\n\r\nx\r\n")
    assert len(peer.requests) > 1  # a dropped connection is tried again


def test_a_spamd_that_never_answers_times_out_within_its_limit():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never reads or writes
    settings = replace(
        load_settings(), spamd=Endpoint("127.0.0.1", silent.getsockname()[1]), spamd_timeout_s=0.5
    )
    try:
        with pytest.raises(BackendUnavailable, match="timed out") as raised:
            SpamassassinPlugin(settings).scan(b"Subject: x\r\n\r\nx\r\n")
        assert raised.value.timed_out  # not retried: a slow spamd is not made slower
    finally:
        silent.close()

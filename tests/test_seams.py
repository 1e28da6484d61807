"""The framework internals mailscan relies on, held in place.

Five seams reach past a library's public interface: the SMTP front's aiosmtpd subclass
(mailserver/front/smtpsession.py) and its handler's hooks (mailserver/front/smtp.py), the clamd
client's connection and reply parsing (tasks/plugins/clamav.py), the kombu envelope written
by hand (tasks/wire/submit.py), the Celery result format written by hand
(tasks/wire/results.py) and the workers' Redis channel, which replaces two of kombu's
private methods (tasks/transport.py). pyproject.toml pins each library to a minor version;
these tests fail when an upgrade moves what the seam uses, before mail does. The envelope
and the result format are also checked end to end against the real library in
tests/test_submit.py and tests/test_results.py.
"""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest
from aiosmtpd.smtp import SMTP
from clamav_client.clamd import ClamdNetworkSocket, ClamdUnixSocket
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

PINNED_MINORS = {"aiosmtpd": "1.4", "clamav-client": "0.7", "kombu": "5.7", "celery": "5.7"}


@pytest.mark.parametrize(("package", "minor"), sorted(PINNED_MINORS.items()))
def test_each_seam_runs_on_the_minor_version_it_was_written_for(package: str, minor: str):
    installed = importlib.metadata.version(package)
    assert installed.startswith(minor + "."), (
        f"{package} {installed}: the seam was written for {minor}.x; check it, then move the pin"
    )


def test_the_smtp_subclass_finds_the_private_hooks_it_calls():
    # LenientSMTP.smtp_DATA replaces aiosmtpd's and calls these as aiosmtpd's own does.
    assert list(inspect.signature(SMTP._call_handler_hook).parameters) == [
        "self", "command", "args",
    ]  # fmt: skip
    assert list(inspect.signature(SMTP._set_post_data_state).parameters) == ["self"]
    assert list(inspect.signature(SMTP._getaddr).parameters) == ["self", "arg"]


def test_aiosmtpd_still_reads_the_stream_and_lists_commands_as_the_subclass_expects():
    # smtp_DATA reads the body from self._reader; __dir__ is cut down because __init__
    # builds the command table from dir(self).
    assert "self._reader" in inspect.getsource(SMTP.connection_made)
    assert "dir(self)" in inspect.getsource(SMTP.__init__)


def test_aiosmtpd_greets_first_thing_in_the_session_task_the_subclass_refuses_in():
    # LenientSMTP._handle_client answers a client outside the allowed networks 554 instead
    # of calling aiosmtpd's, which writes the 220 before it reads any command.
    assert "self._handle_client()" in inspect.getsource(SMTP.connection_made)
    session = inspect.getsource(SMTP._handle_client)
    assert session.index("await self.push('220 ") < session.index("self._reader.readuntil()")


def test_aiosmtpd_reads_smtputf8_into_the_envelope_before_the_mail_hook():
    # ScanHandler.handle_MAIL takes a non-ASCII sender only under SMTPUTF8: it reads the
    # parameter from the envelope, where aiosmtpd puts it before it calls the hook.
    mail = inspect.getsource(SMTP.smtp_MAIL)
    assert mail.index("self.envelope.smtp_utf8 = smtputf8") < mail.index("_call_handler_hook")


@pytest.mark.parametrize("client", [ClamdNetworkSocket, ClamdUnixSocket])
def test_the_clamd_client_keeps_the_connection_steps_the_plugin_streams_over(client: type):
    for name in ("_init_socket", "_send_command", "_recv_response", "_close_socket"):
        assert callable(getattr(client, name, None)), f"{client.__name__}.{name} is gone"


def test_the_clamd_client_parses_a_reply_into_name_reason_status():
    parser = ClamdNetworkSocket.__new__(ClamdNetworkSocket)  # parsing needs no connection
    found = parser._parse_response("stream: Eicar-Test-Signature FOUND")
    assert found == ("stream", "Eicar-Test-Signature", "FOUND")
    assert parser._parse_response("stream: OK") == ("stream", None, "OK")


def test_kombu_still_makes_a_closed_channels_pool_as_the_transport_guard_expects():
    # tasks/transport.py replaces Channel._get_pool to fail as a lost connection once the
    # transport has let go of its connection: kombu makes a pool anew, from the transport's
    # connection, for every Redis call of a channel whose pools were dropped.
    channel = kombu_redis.Channel
    assert list(inspect.signature(channel._get_pool).parameters) == ["self", "asynchronous"]
    assert "self._get_pool()" in inspect.getsource(channel.pool.fget)
    assert "self._connparams(" in inspect.getsource(channel._get_pool)
    assert "conninfo = self.connection.client" in inspect.getsource(channel._connparams)
    assert "self.pool" in inspect.getsource(channel._create_client)


def test_kombu_still_closes_a_redis_channel_in_the_order_that_ended_workers():
    # The pending BRPOP is read first (Redis gone: it raises, the channel stays open), the
    # pools are dropped, then the base class restores the unacknowledged jobs.
    close = inspect.getsource(kombu_redis.Channel.close)
    assert close.index("self._brpop_read()") < close.index("self._disconnect_pools()")
    assert close.index("self._disconnect_pools()") < close.index("super().close()")
    assert "restore_unacked_once()" in inspect.getsource(virtual.Channel.close)

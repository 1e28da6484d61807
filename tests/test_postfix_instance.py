"""The private Postfix the tests put mailscan behind: it takes mail on its loopback port,
relays it to the next hop, logs to its own file, and leaves no process when stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_message, port, wait_for
from tests.postfix_instance import CLIENT_ADDRESS, PostfixInstance, running, send_via
from tests.smtp_ends import NextHop

pytestmark = pytest.mark.integration


def test_a_private_postfix_relays_to_its_next_hop_and_stops_without_a_trace():
    with NextHop(port(13061)) as hop:
        with running(PostfixInstance(port(13060), f"[127.0.0.1]:{hop.port}")) as postfix:
            reply = send_via(postfix.port, make_message(body="through a private Postfix"))
            assert reply.code == 250
            assert "queued as" in reply.text
            wait_for(lambda: hop.copies("bob@example.test", b"private Postfix") == 1, 30,
                     "the next hop's copy")  # fmt: skip
            wait_for(lambda: not postfix.queue(), 30, "an empty queue")
            assert f"client=unknown[{CLIENT_ADDRESS}]" in postfix.maillog()
            assert "status=sent" in postfix.maillog()
            pid_file = postfix.root / "queue" / "pid" / "master.pid"
            master = Path(f"/proc/{pid_file.read_text().split()[0]}")
        assert not master.exists()
        assert not postfix.root.exists()

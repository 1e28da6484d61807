"""The antivirus verdict cache: identical content is scanned once, and only as long as the
signatures are the same."""

import pytest

from tasks import redisauth
from tasks.wire.blobs import content_key
from tests.conftest import EICAR, make_message, send

pytestmark = pytest.mark.integration


def bulk_copy(rcpt: str, attachment: bytes) -> bytes:
    """One copy of a mailing as a list server fans it out: same body, own headers."""
    message = make_message(body="Quarterly report attached.", attachment=attachment)
    message.set_boundary("mailing-2026-11")
    del message["To"]
    message["To"] = rcpt
    return message.as_bytes().replace(b"\n", b"\r\n")


def test_copies_of_a_bulk_mailing_share_a_key_other_content_does_not():
    first, second = (
        bulk_copy("a@example.test", b"PDF-1.4 x"),
        bulk_copy("b@example.test", b"PDF-1.4 x"),
    )
    other = bulk_copy("a@example.test", b"PDF-1.4 y")
    assert content_key(first) == content_key(second)
    assert content_key(first) != content_key(other)
    # The body read another way is another content.
    reread = first.replace(b"Content-Type: multipart/mixed", b"Content-Type: text/plain", 1)
    assert content_key(reread) != content_key(first)


def test_a_bulk_mailing_is_scanned_once_and_a_cached_virus_is_still_refused(stack, settings):
    client = redisauth.connect(settings)
    for key in client.scan_iter("mailscan:avcache:*"):
        client.delete(key)
    attachment = f"report {id(client)}".encode()
    for n in range(3):
        reply = send(bulk_copy(f"r{n}@example.test", attachment), settings.smtp_port)
        assert reply.code == 250
    # One entry per caching engine (clamav, builtin); the command engine is never cached.
    assert len(list(client.scan_iter("mailscan:avcache:*"))) == 2
    for n in range(2):
        reply = send(bulk_copy(f"v{n}@example.test", EICAR), settings.smtp_port)
        assert reply.code == 550
        assert "EICAR" in reply.text
    assert len(list(client.scan_iter("mailscan:avcache:*"))) == 4


def test_a_cached_verdict_leaves_no_attempt_counted_against_the_message(stack, settings):
    from tasks.wire.keys import ATTEMPTS_KEY

    client = redisauth.connect(settings)
    attachment = f"attempts {id(client)}".encode()
    ids = []
    for n in range(2):  # the second copy is answered from the cache
        reply = send(bulk_copy(f"c{n}@example.test", attachment), settings.smtp_port)
        assert reply.code == 250
        ids.append(reply.text.rsplit(" as ", 1)[1])
    for spool_id in ids:
        counts = client.hgetall(ATTEMPTS_KEY.format(message=spool_id))
        assert all(int(value) <= 0 for value in counts.values()), counts

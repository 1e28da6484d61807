"""XFORWARD's attributes as an MTA in front sends them (Postfix's XFORWARD_README): read
into the transaction, xtext decoded, "not known" forgotten, anything malformed refused."""

from __future__ import annotations

from mailserver.front import xforward
from mailserver.front.xforward import ForwardingEnvelope, client_of, take


def test_the_attributes_postfix_sends_name_the_client():
    envelope = ForwardingEnvelope()
    assert take(envelope, "NAME=mx.example.net ADDR=192.0.2.7 PROTO=ESMTP") == xforward.OK
    assert take(envelope, "HELO=mx.example.net SOURCE=REMOTE") == xforward.OK  # added to
    client = client_of("127.0.0.1", "postfix.example.test", envelope.forwarded)
    assert client == xforward.Client("192.0.2.7", "mx.example.net", "mx.example.net")


def test_values_are_xtext_and_unknown_ones_are_forgotten():
    envelope = ForwardingEnvelope()
    take(envelope, "HELO=a+2Bb.example NAME=x.example.net")
    take(envelope, "NAME=[UNAVAILABLE] ADDR=IPv6:2001:db8::1")
    assert envelope.forwarded.values == {"HELO": "a+b.example", "ADDR": "2001:db8::1"}


def test_without_xforward_the_peer_is_the_client():
    client = client_of("127.0.0.1", "postfix.example.test", ForwardingEnvelope().forwarded)
    assert client == xforward.Client("127.0.0.1", "postfix.example.test")


def test_the_mta_s_own_helo_is_never_taken_for_its_client_s():
    envelope = ForwardingEnvelope()
    take(envelope, "ADDR=192.0.2.7 HELO=[UNAVAILABLE]")
    assert client_of("127.0.0.1", "postfix.example.test", envelope.forwarded).helo == ""


def test_malformed_commands_are_refused_and_change_nothing():
    envelope = ForwardingEnvelope()
    assert take(envelope, "") == xforward.SYNTAX
    assert take(envelope, "ADDR") == xforward.SYNTAX
    assert take(envelope, "COLOR=blue") == xforward.BAD_NAME
    assert take(envelope, "ADDR=not-an-address") == xforward.BAD_ADDRESS
    assert take(envelope, "HELO=ok.example ADDR=999.1.1.1") == xforward.BAD_ADDRESS
    assert envelope.forwarded.values == {}


def test_not_within_a_mail_transaction():
    envelope = ForwardingEnvelope()
    envelope.mail_from = "alice@example.test"
    assert take(envelope, "ADDR=192.0.2.7") == xforward.IN_TRANSACTION

"""The edge's own rules, unit by unit: what a HELO, an envelope address and a header value
may be, which clients and recipients the allow-list and relay domains take, and the
settings a relaying front refuses to start with. The SMTP front applying them is tested
end to end in tests/test_edge_access.py."""

from __future__ import annotations

import pytest

from mailserver.front import envelopecheck
from mailserver.front.access import LOOPBACK, AccessPolicy, check_exposure
from mailserver.front.fieldtext import field_text, has_controls
from tasks.errors import ConfigError
from tasks.settings import load_settings

GOOD_HELOS = [
    "mail.example.com", "localhost", "MX-1.Example.COM", "mx.example.com.", "DESKTOP_7Q.lan",
    "1host.example", "[192.0.2.1]", "[IPv6:2001:db8::1]", "[ipv6:::1]", "a" * 63 + ".example",
]  # fmt: skip
BAD_HELOS = [
    "x ([10.9.8.7])", "10.9.8.7", "mx.123", "a b", "-a.example", "a-.example", "a..example",
    ".example", "[300.1.1.1]", "[2001:db8::1]", "[IPv6:192.0.2.1]", "[10.9.8.7] x",
    "ex@mple.com", "bücher.example", "a" * 64 + ".example", "mx.example\r\nX: y", "(x)",
    "[]", "[tag:content]", "x" * 256,
]  # fmt: skip


@pytest.mark.parametrize("name", GOOD_HELOS)
def test_a_host_name_or_an_address_literal_is_a_good_helo(name):
    assert envelopecheck.helo_refusal("HELO", name) is None


@pytest.mark.parametrize("name", BAD_HELOS)
def test_anything_else_in_helo_is_refused_with_501(name):
    assert envelopecheck.helo_refusal("EHLO", name) == "501 5.5.2 Syntax: EHLO hostname"


def test_received_writes_a_literal_helo_without_brackets_and_a_bad_one_as_unknown():
    assert envelopecheck.received_helo("[192.0.2.1]") == "192.0.2.1"
    assert envelopecheck.received_helo("[IPv6:2001:DB8::1]") == "IPv6:2001:db8::1"
    assert envelopecheck.received_helo("mx.example.com") == "mx.example.com"
    assert envelopecheck.received_helo("x ([10.9.8.7])") == "unknown"
    assert envelopecheck.received_helo("") == "unknown"


def test_the_peer_is_written_as_postfix_writes_it():
    assert envelopecheck.peer_literal("192.0.2.7") == "192.0.2.7"
    assert envelopecheck.peer_literal("::ffff:192.0.2.7") == "192.0.2.7"
    assert envelopecheck.peer_literal("2001:db8::7") == "IPv6:2001:db8::7"
    assert envelopecheck.peer_literal("") is None
    assert envelopecheck.peer_literal("x [10.9.8.7]") is None


@pytest.mark.parametrize(
    ("address", "smtputf8", "refusal"),
    [
        ("alice@example.test", False, None),
        ("<>", False, None),
        ("jörg@example.test", True, None),
        ("alice@bücher.example", True, None),
        ("jörg@example.test", False, envelopecheck.NOT_UTF8_ENVELOPE),
        ("al\udcffce@example.test", False, envelopecheck.NOT_UTF8_ENVELOPE),
        ("al\udcffce@example.test", True, envelopecheck.NOT_UTF8_BYTES),
        ("a\x00b@example.test", True, envelopecheck.CONTROL_IN_ADDRESS),
        ("a\rb@example.test", False, envelopecheck.CONTROL_IN_ADDRESS),
        ("a@b\nBcc: c@d", False, envelopecheck.CONTROL_IN_ADDRESS),
    ],
)
def test_an_envelope_address_is_taken_only_when_it_can_be_passed_on(address, smtputf8, refusal):
    assert envelopecheck.address_refusal(address, smtputf8) == refusal


def test_the_field_checker_drops_what_would_end_a_field():
    assert field_text("a\r\nX-Spam-Flag: NO") == "aX-Spam-Flag: NO"
    assert field_text("a\x00b\x7fc\x1bd") == "abcd"
    assert field_text("tab\tkept") == "tab\tkept"
    assert field_text("x" * 300) == "x" * 200
    assert field_text("jörg") == "jörg"
    assert has_controls("a\nb")
    assert has_controls("\x00")
    assert not has_controls("a\tb ö")


def test_the_allow_list_takes_its_networks_only():
    policy = AccessPolicy(load_settings({"MAILSCAN_SMTP_ALLOW_NETWORKS": "10.0.0.0/8, 2001:db8::/32"
                                         }).smtp_allow_networks)  # fmt: skip
    assert policy.allows_client(("10.1.2.3", 40000))
    assert policy.allows_client(("::ffff:10.1.2.3", 40000, 0, 0))  # a dual-stack socket
    assert policy.allows_client(("2001:db8::5", 40000, 0, 0))
    assert not policy.allows_client(("127.0.0.1", 40000))
    assert not policy.allows_client(("11.0.0.1", 40000))
    assert not policy.allows_client("")  # a Unix socket
    assert not policy.allows_client(None)


def test_by_default_only_this_host_may_connect():
    policy = AccessPolicy.from_settings(load_settings({}))
    assert policy.networks == LOOPBACK
    assert policy.allows_client(("127.0.0.1", 1))
    assert policy.allows_client(("::1", 1, 0, 0))
    assert not policy.allows_client(("192.0.2.7", 1))


@pytest.mark.parametrize(
    ("recipient", "taken"),
    [
        ("bob@example.test", True),
        ("bob@EXAMPLE.test.", True),
        ("bob@mail.example.test", False),  # example.test is listed without the dot
        ("bob@a.sub.example.test", True),
        ("bob@b.a.sub.example.test", True),
        ("bob@sub.example.test", False),  # .sub.example.test: its subdomains only
        ("bob@xsub.example.test", False),
        ("bob@bücher.example", True),
        ("bob@example.test.evil.example", False),
        ("bob@[192.0.2.1]", False),
        ("postmaster", True),
        ("bob", False),
    ],
)
def test_relay_domains_take_a_domain_or_its_subdomains_as_listed(recipient, taken):
    domains = "example.test,.sub.example.test,BÜCHER.example"
    settings = load_settings({"MAILSCAN_RELAY_DOMAINS": domains})
    assert AccessPolicy.from_settings(settings).relays_to(recipient) is taken


def test_without_relay_domains_every_recipient_is_taken():
    assert AccessPolicy().relays_to("anyone@anywhere.example")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("MAILSCAN_SMTP_ALLOW_NETWORKS", "10.1.2.3/8", "'10.1.2.3/8' is not a network"),
        ("MAILSCAN_SMTP_ALLOW_NETWORKS", "localhost", "'localhost' is not a network"),
        ("MAILSCAN_SMTP_ALLOW_NETWORKS", " , ", "must list at least one network"),
        ("MAILSCAN_RELAY_DOMAINS", "example.test,bad domain", "'bad domain' is not a domain"),
        ("MAILSCAN_RELAY_DOMAINS", "-x.example", "'-x.example' is not a domain"),
    ],
)
def test_a_bad_allow_list_or_domain_list_stops_the_start_naming_it(variable, value, says):
    with pytest.raises(ConfigError) as refused:
        load_settings({variable: value})
    assert str(refused.value).startswith(f"{variable}={value!r}: {says}")


RELAY = {"MAILSCAN_DELIVERY": "relay", "MAILSCAN_RELAY": "127.0.0.1:25"}


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"MAILSCAN_SMTP_HOST": "0.0.0.0"}, "set MAILSCAN_SMTP_ALLOW_NETWORKS"),
        ({"MAILSCAN_SMTP_HOST": "192.0.2.1"}, "set MAILSCAN_SMTP_ALLOW_NETWORKS"),
        ({"MAILSCAN_SMTP_HOST": "::"}, "set MAILSCAN_SMTP_ALLOW_NETWORKS"),
        ({"MAILSCAN_SMTP_ALLOW_NETWORKS": "0.0.0.0/0"}, "would be an open relay"),
        ({"MAILSCAN_SMTP_ALLOW_NETWORKS": "10.0.0.0/8,::/0"}, "would be an open relay"),
    ],
)
def test_a_relaying_front_open_to_more_than_it_says_refuses_to_start(environ, says):
    with pytest.raises(ConfigError, match=says):
        check_exposure(load_settings({**RELAY, **environ}))


@pytest.mark.parametrize(
    "environ",
    [
        {},  # loopback, default allow-list
        {"MAILSCAN_SMTP_HOST": "localhost"},
        {"MAILSCAN_SMTP_HOST": "0.0.0.0", "MAILSCAN_SMTP_ALLOW_NETWORKS": "192.0.2.0/24"},
        {"MAILSCAN_SMTP_ALLOW_NETWORKS": "0.0.0.0/0", "MAILSCAN_RELAY_DOMAINS": "example.test"},
    ],
)
def test_a_relaying_front_that_says_who_may_use_it_starts(environ):
    check_exposure(load_settings({**RELAY, **environ}))


def test_a_maildir_front_may_listen_everywhere_with_the_default_allow_list():
    check_exposure(load_settings({"MAILSCAN_SMTP_HOST": "0.0.0.0"}))

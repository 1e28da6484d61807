"""The front parses MAIL and RCPT addresses exactly as aiosmtpd does (it skips the class
aiosmtpd defines on every call, and matches plain addresses with a pattern), and builds
the same command table from its short method listing."""

from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given
from hypothesis import strategies as st

from mailserver.front.smtpsession import LenientSMTP

ARGS = [
    "<alice@example.test>",
    "alice@example.test",
    "<alice@example.test> SIZE=1000 BODY=8BITMIME",
    "<>",
    "",
    "<alice@example.test",
    "<@relay.example:alice@example.test>",
    '<"quoted name"@example.test>',
    "<not an address>",
    "<" + "x" * 70 + "@example.test>",
    "<alice@example.test>SIZE=1",
    "<alice@example.test>   ",
    "<alice@example.test> (a comment) SIZE=1",
    "<a..b@example.test>",
    "<.a@example.test>",
    "<a@example..test>",
    "<a@-example.test>",
    "<a@[192.0.2.1]>",
    "<Ünïcode@example.test>",
    "<a@example.test> \t BODY=8BITMIME",
    " <alice@example.test>",
]


@pytest.mark.parametrize("limit", [0, 64])
@pytest.mark.parametrize("arg", ARGS)
def test_addresses_parse_as_aiosmtpd_parses_them(arg, limit):
    server = SimpleNamespace(local_part_limit=limit)
    assert LenientSMTP._getaddr(server, arg) == SMTP._getaddr(server, arg)


PIECES = ["a", "B", "7", ".", "@", "<", ">", " ", "\t", "(", ")", '"', "-", "+", "_", "é", "[", "]"]


def parsed(cls, server, arg):
    """The result, or the exception's type: aiosmtpd's parser raises on some input ("<")."""
    try:
        return cls._getaddr(server, arg)
    except Exception as error:
        return type(error)


@given(st.lists(st.sampled_from(PIECES), max_size=24).map("".join))
def test_any_argument_parses_as_aiosmtpd_parses_it(arg):
    server = SimpleNamespace(local_part_limit=0)
    for tried in (arg, "<" + arg):
        assert parsed(LenientSMTP, server, tried) == parsed(SMTP, server, tried)


@given(
    st.from_regex(r"[a-z0-9+_-]{1,8}(\.[a-z0-9]{1,4}){0,2}", fullmatch=True),
    st.from_regex(r"[a-z0-9-]{1,8}(\.[a-z0-9-]{1,6}){0,3}", fullmatch=True),
    st.sampled_from(["", " SIZE=10", "SIZE=10", "  BODY=8BITMIME SMTPUTF8", " ", "\t(x) y"]),
)
def test_plain_addresses_parse_as_aiosmtpd_parses_them(local, domain, params):
    server = SimpleNamespace(local_part_limit=64)
    arg = f"<{local}@{domain}>{params}"
    assert LenientSMTP._getaddr(server, arg) == SMTP._getaddr(server, arg)


def test_the_command_table_is_the_one_aiosmtpd_builds():
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        ours = LenientSMTP(object(), loop=loop)
        full = SMTP(object(), loop=loop)
    finally:
        loop.close()
    assert "DATA" in ours._smtp_methods
    # XFORWARD is ours (mailserver/front/xforward.py); aiosmtpd has no such command.
    assert set(ours._smtp_methods) == set(full._smtp_methods) | {"XFORWARD"}
    assert set(ours._auth_methods) == set(full._auth_methods)
    assert ours._smtp_methods["DATA"].__func__ is LenientSMTP.smtp_DATA

"""The front parses MAIL and RCPT addresses exactly as aiosmtpd does (it only skips the
class aiosmtpd defines on every call)."""

from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP

from mailserver.server import LenientSMTP

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
]


@pytest.mark.parametrize("limit", [0, 64])
@pytest.mark.parametrize("arg", ARGS)
def test_addresses_parse_as_aiosmtpd_parses_them(arg, limit):
    server = SimpleNamespace(local_part_limit=limit)
    assert LenientSMTP._getaddr(server, arg) == SMTP._getaddr(server, arg)

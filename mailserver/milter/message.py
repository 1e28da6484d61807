"""One message as the MTA describes it to a milter: the client, the envelope, and the
message rebuilt from its header fields and body chunks."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailserver.milter.codec import HEADER_LEADING_SPACE, Client, Negotiated

CRLF = b"\r\n"


@dataclass
class Message:
    """``content`` is the message as the client sent it (without the MTA's own Received
    field, which Postfix does not show its milters); ``too_big`` once it passed the size
    limit, and then nothing more is kept."""

    client: Client
    helo: str
    mail_from: str
    max_bytes: int
    agreed: Negotiated  # with the MTA, on this connection
    smtputf8: bool = False
    rcpt_tos: list[str] = field(default_factory=list)
    content: bytearray = field(default_factory=bytearray)
    too_big: bool = False
    # The first Subject field's value as sent, for the spam tag; None when there is none.
    subject: str | None = None

    @property
    def leading_space(self) -> bool:
        """Header values arrive with the space after the colon."""
        return bool(self.agreed.steps & HEADER_LEADING_SPACE)

    def add_header(self, name: bytes, value: bytes) -> None:
        if self.subject is None and name.lower() == b"subject":
            self.subject = value.decode("utf-8", "replace")
        space = b"" if self.leading_space else b" "
        self._keep(name + b":" + space + value.replace(b"\n", CRLF) + CRLF)

    def end_headers(self) -> None:
        self._keep(CRLF)

    def add_body(self, chunk: bytes) -> None:
        self._keep(chunk)  # the MTA sends the body with CRLF line ends

    def _keep(self, piece: bytes) -> None:
        if self.too_big:
            return
        if len(self.content) + len(piece) > self.max_bytes:
            # The MTA sends on to the end whatever the size: the memory stays bounded.
            self.too_big, self.content = True, bytearray()
            return
        self.content += piece


def envelope_address(raw: bytes) -> str:
    """``<addr>`` as the MTA sends MAIL and RCPT arguments: the address, "<>" for the null
    sender (as aiosmtpd gives it to the SMTP front)."""
    address = raw.decode("utf-8", "replace").strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address or "<>"

"""STARTTLS at the SMTP front, against the real front and a real TLS client: the configured
certificate is the one presented, mail sent over TLS is scanned and delivered with an
ESMTPS Received line, plaintext slipped in behind STARTTLS is never executed, TLS can be
required, and a certificate that cannot serve stops the start with one line."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import smtplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailserver.front.tls import MUST_START_TLS, StartTLS, server_context
from mailserver.supervisor.selfsigned import with_self_signed
from mailserver.supervisor.stack import Stack
from tasks.errors import ConfigError
from tasks.settings import Settings, load_settings
from tests.conftest import find_delivered, mailscan, make_message, on_the_wire, port, wait_for

CLIENT = "client.example.test"


@dataclass(frozen=True)
class Pki:
    """A certificate authority of the test and a server certificate it signed."""

    ca: Path
    cert: Path
    key: Path
    fingerprint: str

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _signed(subject, issuer, public, signer, ca: bool, extensions=()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    crypt = serialization.BestAvailableEncryption(password) if password else None
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        crypt or serialization.NoEncryption(),
    )


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    ca = _signed(_name("mailscan test CA"), _name("mailscan test CA"), ca_key.public_key(),
                 ca_key, True, [ca_usage])  # fmt: skip
    where = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = _signed(_name("localhost"), ca.subject, key.public_key(), ca_key, False, [
        x509.SubjectAlternativeName(where),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
    ])  # fmt: skip
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(_pem_key(key))
    fingerprint = server.fingerprint(hashes.SHA256()).hex()
    return Pki(folder / "ca.pem", folder / "cert.pem", folder / "key.pem", fingerprint)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_front(settings: Settings, pki: Pki, name: str, shift: int, **extra: str) -> Stack:
    """An SMTP front of its own with the test's certificate, on the session stack's Redis
    and pools."""
    env = {**os.environ, "MAILSCAN_TLS_CERT": str(pki.cert), "MAILSCAN_TLS_KEY": str(pki.key),
           "MAILSCAN_SMTP_PORT": str(settings.smtp_port + 7 + shift),
           "MAILSCAN_METRICS_PORT": str(port(19150) + shift),
           "MAILSCAN_VAR_DIR": str(settings.var_dir / name), **extra}  # fmt: skip
    front = Stack(load_settings(env), env)
    front.start(["mailserver"], progress=lambda _: None)
    return front


@pytest.fixture(scope="module")
def offering(stack, settings, pki) -> Iterator[Settings]:
    """A front that offers STARTTLS and takes plaintext mail too."""
    front = tls_front(settings, pki, "tls-offering", 0)
    yield front.settings
    front.stop()


@pytest.fixture(scope="module")
def requiring(stack, settings, pki) -> Iterator[Settings]:
    """A front that takes no mail before STARTTLS."""
    front = tls_front(settings, pki, "tls-requiring", 1, MAILSCAN_TLS_REQUIRED="yes")
    yield front.settings
    front.stop()


def header_block(message: bytes) -> str:
    return message.split(b"\n\n", 1)[0].decode()


@pytest.mark.integration
def test_mail_over_starttls_is_scanned_and_delivered_with_the_configured_certificate(offering, pki):
    with smtplib.SMTP("127.0.0.1", offering.smtp_port, timeout=60) as client:
        client.ehlo(CLIENT)
        assert client.has_extn("starttls")
        assert client.starttls(context=pki.client_context())[0] == 220  # verified by the CA
        presented = client.sock.getpeercert(binary_form=True)
        assert hashlib.sha256(presented).hexdigest() == pki.fingerprint
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        client.ehlo(CLIENT)
        assert not client.has_extn("starttls")  # not twice
        client.sendmail("alice@example.test", ["bob@example.test"],
                        on_the_wire(make_message(X_Test_Id="tls-e2e")))  # fmt: skip
    [delivered] = find_delivered(offering.maildir, b"X-Test-Id: tls-e2e")
    head = header_block(delivered)
    assert f"by {offering.hostname} (mailscan) with ESMTPS id" in head
    assert "X-Virus-Status: Clean" in head
    assert "X-Spam-Flag: NO" in head


@pytest.mark.integration
def test_plaintext_mail_is_still_taken_when_tls_is_offered_not_required(offering):
    with smtplib.SMTP("127.0.0.1", offering.smtp_port, timeout=60) as client:
        client.ehlo(CLIENT)
        assert client.has_extn("starttls")
        client.sendmail("alice@example.test", ["bob@example.test"],
                        on_the_wire(make_message(X_Test_Id="tls-plain")))  # fmt: skip
    [delivered] = find_delivered(offering.maildir, b"X-Test-Id: tls-plain")
    assert f"by {offering.hostname} (mailscan) with ESMTP id" in header_block(delivered)


def read_reply(sock: socket.socket) -> bytes:
    """Everything up to the end of a complete reply (its last line has a space after the
    code); two replies arriving together come back together."""
    data = b""
    while not (data.endswith(b"\r\n") and data.split(b"\r\n")[-2][3:4] == b" "):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.integration
@pytest.mark.parametrize("injected", [b"RSET", b"MAIL FROM:<injected@example.test>"])
def test_plaintext_sent_behind_starttls_is_not_executed(offering, pki, injected):
    """The STARTTLS command injection (CVE-2011-0411 and kin): a man in the middle appends a
    command to the client's STARTTLS in the same packet; executed after the handshake, it
    would act inside the encrypted session. Its reply would come before the client's own."""
    with socket.create_connection(("127.0.0.1", offering.smtp_port), timeout=30) as raw:
        assert read_reply(raw).startswith(b"220 ")
        raw.sendall(b"EHLO " + CLIENT.encode() + b"\r\n")
        assert b"STARTTLS" in read_reply(raw)
        raw.sendall(b"STARTTLS\r\n" + injected + b"\r\n")  # one write: one segment
        assert read_reply(raw).startswith(b"220 ")
        context = pki.client_context()
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"EHLO " + CLIENT.encode() + b"\r\n")
            first = read_reply(tls)
            assert first.startswith(b"250-"), first  # the EHLO's answer, nothing before it
            tls.sendall(b"RCPT TO:<bob@example.test>\r\n")
            assert read_reply(tls).startswith(b"503 ")  # no MAIL in this session
            tls.sendall(b"QUIT\r\n")
            assert read_reply(tls).startswith(b"221 ")


@pytest.mark.integration
def test_a_failed_handshake_is_one_line_in_the_log_and_the_front_goes_on(offering, pki):
    with socket.create_connection(("127.0.0.1", offering.smtp_port), timeout=30) as raw:
        assert read_reply(raw).startswith(b"220 ")
        raw.sendall(b"EHLO " + CLIENT.encode() + b"\r\n")
        read_reply(raw)
        raw.sendall(b"STARTTLS\r\n")
        assert read_reply(raw).startswith(b"220 ")
        raw.sendall(b"EHLO this is no TLS handshake\r\n")
        assert raw.recv(100) == b""  # closed
    log = offering.var_dir / "log" / "mailserver.log"
    wait_for(lambda: "STARTTLS handshake failed" in log.read_text(), 10, "the log line")
    assert "Traceback" not in log.read_text()
    with smtplib.SMTP("127.0.0.1", offering.smtp_port, timeout=60) as client:
        client.ehlo(CLIENT)
        assert client.starttls(context=pki.client_context())[0] == 220


@pytest.mark.integration
def test_tls_required_refuses_mail_until_starttls(requiring, pki):
    code, text = MUST_START_TLS.split(" ", 1)
    with smtplib.SMTP("127.0.0.1", requiring.smtp_port, timeout=60) as client:
        client.ehlo(CLIENT)
        assert client.mail("alice@example.test") == (int(code), text.encode())
        assert client.rcpt("bob@example.test")[0] == 530
        assert client.docmd("DATA")[0] == 530
        assert client.noop()[0] == 250
        assert client.rset()[0] == 250
        client.starttls(context=pki.client_context())
        client.ehlo(CLIENT)
        client.sendmail("alice@example.test", ["bob@example.test"],
                        on_the_wire(make_message(X_Test_Id="tls-required")))  # fmt: skip
    assert find_delivered(requiring.maildir, b"X-Test-Id: tls-required")


def test_the_front_speaks_tls_1_2_or_newer_only(pki):
    context = server_context(pki.cert, pki.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION


def bad_pairs(pki: Pki, folder: Path) -> dict[str, tuple[dict[str, object], str]]:
    other = make_pki(folder / "other")
    encrypted = folder / "encrypted.pem"
    loaded = serialization.load_pem_private_key(pki.key.read_bytes(), None)
    encrypted.write_bytes(_pem_key(loaded, b"secret"))  # type: ignore[arg-type]
    garbage = folder / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cert, key = pki.cert, pki.key
    return {
        "cert without key": ({"tls_cert": cert}, "MAILSCAN_TLS_CERT is set without "
                             "MAILSCAN_TLS_KEY: give both or neither"),
        "key without cert": ({"tls_key": key}, "MAILSCAN_TLS_KEY is set without "
                             "MAILSCAN_TLS_CERT: give both or neither"),
        "no such file": ({"tls_cert": folder / "absent.pem", "tls_key": key},
                         f"MAILSCAN_TLS_CERT='{folder}/absent.pem': cannot read it "
                         "(No such file or directory)"),
        "a folder": ({"tls_cert": cert, "tls_key": folder}, f"MAILSCAN_TLS_KEY='{folder}': "
                     "cannot read it (Is a directory)"),
        "not PEM": ({"tls_cert": garbage, "tls_key": key},
                    f"MAILSCAN_TLS_CERT='{garbage}': no PEM certificate in it"),
        "another's key": ({"tls_cert": cert, "tls_key": other.key}, "(key values mismatch)"),
        "encrypted key": ({"tls_cert": cert, "tls_key": encrypted},
                          "MAILSCAN_TLS_KEY: the private key is encrypted; give it without "
                          "a passphrase"),
        "required, no cert": ({"tls_required": True},
                              "MAILSCAN_TLS_REQUIRED=yes needs MAILSCAN_TLS_CERT and "
                              "MAILSCAN_TLS_KEY (no certificate)"),
    }  # fmt: skip


CASES = ["cert without key", "key without cert", "no such file", "a folder", "not PEM",
         "another's key", "encrypted key", "required, no cert"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_pair_that_cannot_serve_is_refused_with_one_clear_line(pki, tmp_path, case):
    changes, message = bad_pairs(pki, tmp_path)[case]
    with pytest.raises(ConfigError) as refused:
        StartTLS.from_settings(replace(load_settings(), **changes))
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.integration
def test_the_front_does_not_start_with_a_key_that_is_not_its_certificates(
    stack, settings, pki, tmp_path
):
    other = make_pki(tmp_path / "other")
    env = {**os.environ, "MAILSCAN_TLS_CERT": str(pki.cert), "MAILSCAN_TLS_KEY": str(other.key),
           "MAILSCAN_VAR_DIR": str(tmp_path / "var"),
           "MAILSCAN_SMTP_PORT": str(settings.smtp_port + 9)}  # fmt: skip
    for command in ("serve", "check-config"):
        done = mailscan(command, env=env)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("mailscan: MAILSCAN_TLS_CERT=")
        assert line.endswith("are not a certificate and its private key (key values mismatch)")


def test_the_self_signed_pair_is_made_once_with_a_private_key(settings, tmp_path):
    own = replace(settings, var_dir=tmp_path / "var")
    first = with_self_signed(own)
    assert first.tls_cert == tmp_path / "var" / "tls" / "cert.pem"
    assert first.tls_key is not None
    assert first.tls_key.stat().st_mode & 0o777 == 0o600
    assert first.tls_key.parent.stat().st_mode & 0o077 == 0
    assert StartTLS.from_settings(first).context is not None  # the pair loads
    made = first.tls_cert.read_bytes()
    again = with_self_signed(own)
    assert again.tls_cert == first.tls_cert
    assert first.tls_cert.read_bytes() == made
    with pytest.raises(ConfigError, match="--tls makes a self-signed certificate"):
        with_self_signed(first)  # a configured certificate is never replaced


def test_a_self_signed_certificate_near_its_end_is_made_again(settings, tmp_path):
    own = replace(settings, var_dir=tmp_path / "var")
    pair = with_self_signed(own)
    assert pair.tls_cert is not None
    old = make_pki(tmp_path / "old")  # valid for two days only
    pair.tls_cert.write_bytes(old.cert.read_bytes())
    renewed = with_self_signed(own)
    assert renewed.tls_cert is not None
    assert renewed.tls_cert.read_bytes() != old.cert.read_bytes()
    assert StartTLS.from_settings(renewed).context is not None

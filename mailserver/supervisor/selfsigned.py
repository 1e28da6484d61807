"""``mailscan up --tls``: a self-signed certificate and its key for the SMTP front, made once
under ``var/tls/`` (the key mode 600) and made again when it is near its end. For local use:
a client that checks certificates does not trust it; production sets MAILSCAN_TLS_CERT."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasks.errors import ConfigError
from tasks.settings import Settings, env_name

VALID_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)


def tls_folder(settings: Settings) -> Path:
    return settings.var_dir / "tls"


def is_self_signed(settings: Settings) -> bool:
    return settings.tls_cert == tls_folder(settings) / "cert.pem"


def with_self_signed(settings: Settings) -> Settings:
    """``settings`` with the self-signed pair as MAILSCAN_TLS_CERT and MAILSCAN_TLS_KEY,
    made first if missing or near its end. Refused when a certificate is configured."""
    if settings.tls_cert or settings.tls_key:
        raise ConfigError(
            f"--tls makes a self-signed certificate: leave it out, or unset "
            f"{env_name('tls_cert')} and {env_name('tls_key')}"
        )
    folder = tls_folder(settings)
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not (key.exists() and _still_valid(cert)):
        _make_pair(settings.hostname, cert, key)
    return dataclasses.replace(settings, tls_cert=cert, tls_key=key)


def _still_valid(cert: Path) -> bool:
    try:
        loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):
        return False
    return loaded.not_valid_after_utc - RENEW_BEFORE > datetime.datetime.now(datetime.UTC)


def _make_pair(hostname: str, cert: Path, key: Path) -> None:
    cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    _write(
        key,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    _write(cert, _certificate(hostname, private).public_bytes(serialization.Encoding.PEM))


def _certificate(hostname: str, private: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName(hostname), x509.DNSName("localhost")]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks a little behind
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Written whole under another name, then renamed: a stop halfway leaves no torn file,
    and the key is never readable by others, not even for a moment."""
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    partial.replace(path)

"""A self-signed certificate for ``vstudio up --tls``: made once per data folder, then reused.

The pair covers ``localhost``, ``127.0.0.1``, this machine's hostname and the address it serves
on (its LAN address when it listens on every interface), so a phone on the same network can
open the page over https after accepting the certificate once. A pair that has expired, expires
within a week, or lacks one of those names is made again.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["ANY_ADDRESS", "CERT_FILE", "KEY_FILE", "names_for", "self_signed_pair"]

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALID_DAYS = 397
"""Under Apple's 398-day ceiling for server certificates."""
RENEW_BEFORE = datetime.timedelta(days=7)
ANY_ADDRESS = {"0.0.0.0", "::", ""}


def _lan_address() -> str | None:
    """The address this machine reaches other hosts from (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed, never answered
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


def names_for(host: str) -> list[str]:
    """The names and addresses the certificate must cover when serving on ``host``."""
    names = ["localhost", "127.0.0.1", socket.gethostname()]
    if host in ANY_ADDRESS:
        lan = _lan_address()
        if lan:
            names.append(lan)
    else:
        names.append(host)
    return list(dict.fromkeys(name for name in names if name))


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _still_good(cert_path: Path, key_path: Path, names: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc - RENEW_BEFORE < now:
        return False
    try:
        covered = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return all(_san(name) in covered for name in names)


def self_signed_pair(folder: Path, names: list[str]) -> tuple[Path, Path, bool]:
    """``(certfile, keyfile, made)``: the pair in ``folder``, made now if missing or stale."""
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if _still_good(cert_path, key_path, names):
        return cert_path, key_path, False
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"V Studio on {names[0]}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_bytes)
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, True

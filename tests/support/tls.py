"""A throw-away certificate authority for tests of TLS clients (LDAPS, StartTLS).

``tests.support.redis_server.write_test_certificates`` writes one CA and one certificate for
127.0.0.1 in one go; the LDAP tests need more: a server certificate that also names
``localhost``, certificates that name another host (hostname check), and a second, unrelated CA
(a server the client must refuse). Keys are P-256 and everything is valid for one day.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _general_name(name: str) -> x509.GeneralName:
    """An IP address SAN for a literal address, a DNS SAN otherwise."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True)
class ServerFiles:
    """PEM files of one issued server certificate and its private key."""

    cert: Path
    key: Path


class TestCa:
    """A self-signed CA that issues server certificates.

    Args:
        common_name: the CA's subject CN (tell two CAs apart in error messages).
    """

    __test__ = False  # a helper, not a test class (its name starts with "Test")

    def __init__(self, common_name: str = "mfa-radius test CA") -> None:
        self._now = datetime.now(UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - timedelta(minutes=5))
            .not_valid_after(self._now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    def write_ca(self, path: Path) -> Path:
        """Write the CA certificate (what a client trusts) as PEM; return ``path``."""
        path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(
        self, directory: Path, names: tuple[str, ...], *, stem: str = "server"
    ) -> ServerFiles:
        """Issue a server certificate for ``names`` (IP or DNS SANs) into ``directory``.

        Args:
            directory: where ``<stem>.pem`` and ``<stem>.key`` are written.
            names: subject alternative names; the first is also the subject CN.
            stem: file name stem, to keep several certificates in one directory.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - timedelta(minutes=5))
            .not_valid_after(self._now + timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        files = ServerFiles(directory / f"{stem}.pem", directory / f"{stem}.key")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files.key.chmod(0o600)
        return files

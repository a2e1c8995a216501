"""The local stack's certificates: a CA made at ``stack up`` when ``STREAMFIT_STACK_TLS`` is
on, and one certificate per server it signs (brokers, Cassandra nodes, Airflow's API, the
predictions API) naming every address that server is dialled at. PEM throughout: Kafka 4 and
Cassandra 5 read PEM key stores, Python's ``ssl`` reads PEM. Private keys are PKCS#8, mode 0600.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 825  # the longest server-certificate life browsers accept; renewed by `stack up`


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(directory: Path, name: str = "streamfit local CA") -> Issued:
    """A self-signed CA in ``directory`` (``ca.pem``, ``ca-key.pem``)."""
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=VALID_DAYS * 2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    issued = Issued(directory / "ca.pem", directory / "ca-key.pem")
    _write_cert(issued.cert, cert)
    _write_key(issued.key, key)
    return issued


def issue(ca: Issued, directory: Path, name: str, hosts: list[str], *,
          not_before: datetime | None = None, not_after: datetime | None = None) -> Issued:
    """A certificate for ``name`` signed by ``ca``, naming ``hosts`` (addresses or DNS names)
    as subject alternative names, usable by a server and as a client certificate."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    key = _key()
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(minutes=5))
            .not_valid_after(not_after or now + timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    issued = Issued(directory / f"{name}.pem", directory / f"{name}-key.pem")
    _write_cert(issued.cert, cert)
    _write_key(issued.key, key)
    return issued


def local_ca(tls_dir: Path) -> Issued:
    """The stack's CA under ``tls_dir``, made on the first ``stack up`` with TLS and kept (the
    clients' trust follows it across restarts)."""
    issued = Issued(tls_dir / "ca.pem", tls_dir / "ca-key.pem")
    if issued.cert.is_file() and issued.key.is_file():
        return issued
    return make_ca(tls_dir)


def server_certificate(ca: Issued, tls_dir: Path, name: str, hosts: list[str]) -> Issued:
    """``<name>.pem`` and ``<name>-key.pem``, signed by ``ca`` for ``hosts``: issued once per
    server, reissued when it names other hosts or expires within a week."""
    current = Issued(tls_dir / f"{name}.pem", tls_dir / f"{name}-key.pem")
    if current.cert.is_file() and current.key.is_file():
        cert = x509.load_pem_x509_certificate(current.cert.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if (sorted(str(n.value) for n in sans) == sorted(hosts)
                and cert.not_valid_after_utc > datetime.now(UTC) + timedelta(days=7)):
            return current
    return issue(ca, tls_dir, name, hosts)


def server_keystore(ca: Issued, tls_dir: Path, name: str, hosts: list[str]) -> Path:
    """``<name>-keystore.pem`` (the private key, then the certificate of
    ``server_certificate``): the PEM key store Kafka and Cassandra read."""
    issued = server_certificate(ca, tls_dir, name, hosts)
    path = tls_dir / f"{name}-keystore.pem"
    content = issued.key.read_bytes() + issued.cert.read_bytes()
    if not path.is_file() or path.read_bytes() != content:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        path.chmod(0o600)
    return path

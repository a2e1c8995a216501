"""Client TLS contexts and what a failed handshake is explained as (`streamfit.tls`), against
a real TLS socket on loopback with certificates from the local stack's CA (`app.stack.tls`)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.stack.tls import Issued, issue, make_ca
from streamfit.settings import Settings, SettingsError
from streamfit.tls import client_context, explain


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    d = tmp_path_factory.mktemp("pki")
    ca, other = make_ca(d / "ca"), make_ca(d / "other", "another CA")
    now = datetime.now(UTC)
    return {
        "ca": ca, "other": other,
        "good": issue(ca, d, "good", ["127.0.0.1", "localhost"]),
        "elsewhere": issue(ca, d, "elsewhere", ["127.0.0.2"]),
        "expired": issue(ca, d, "expired", ["127.0.0.1"], not_before=now - timedelta(days=30),
                         not_after=now - timedelta(days=1)),
        "client": issue(ca, d, "client", ["streamfit-client"]),
    }


@contextmanager
def server(cert: Issued | None) -> Iterator[int]:
    """A loopback server: TLS with ``cert``, or plain bytes when None. It answers one
    connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            if cert is None:
                conn.recv(1024)
                conn.sendall(b"\x00\x00\x00\x04plain")  # a plaintext service's answer
                return
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert.cert), str(cert.key))
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(5)


def _handshake(settings: Settings, port: int) -> str | None:
    """None when the handshake succeeds, else explain()'s line."""
    context = client_context(settings, "kafka")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"x")
        except (ssl.SSLError, OSError) as exc:
            return explain(exc, settings, "kafka", f"127.0.0.1:{port}") or repr(exc)
    return None


def _settings(ca: Path, **more: object) -> Settings:
    return Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca, **more)  # type: ignore[arg-type]


def test_a_server_signed_by_the_ca_is_accepted(pki: dict[str, Issued]) -> None:
    with server(pki["good"]) as port:
        assert _handshake(_settings(pki["ca"].cert), port) is None


@pytest.mark.parametrize(("cert", "ca", "says"), [
    ("good", "other", "is not signed by a CA in STREAMFIT_KAFKA_SSL_CAFILE="),
    ("elsewhere", "ca", "does not name that host: dial a name its certificate holds "
                        "(STREAMFIT_KAFKA_BOOTSTRAP_SERVERS)"),
    ("expired", "ca", "has expired: renew the server's certificate"),
    (None, "ca", "does not speak TLS: point at its TLS port, or set "
                 "STREAMFIT_KAFKA_SSL=false"),
])
def test_a_refused_handshake_says_why_in_one_line(pki: dict[str, Issued], cert: str | None,
                                                  ca: str, says: str) -> None:
    with server(pki[cert] if cert else None) as port:
        line = _handshake(_settings(pki[ca].cert), port)
    assert line is not None and says in line, line
    assert "\n" not in line


def test_hostname_checking_can_be_turned_off_and_is_on_by_default(pki: dict[str, Issued]
                                                                  ) -> None:
    assert Settings().kafka_ssl_check_hostname and Settings().cassandra_ssl_check_hostname
    with server(pki["elsewhere"]) as port:
        assert _handshake(_settings(pki["ca"].cert, kafka_ssl_check_hostname=False),
                          port) is None


def test_files_that_cannot_serve_are_named_by_their_setting(pki: dict[str, Issued],
                                                           tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key.pem"
    with pytest.raises(SettingsError, match=f"STREAMFIT_KAFKA_SSL_KEYFILE={missing}: no such"):
        client_context(_settings(pki["ca"].cert, kafka_ssl_certfile=pki["client"].cert,
                                 kafka_ssl_keyfile=missing), "kafka")
    with pytest.raises(SettingsError, match="STREAMFIT_KAFKA_SSL_CAFILE=.*not a PEM file"):
        client_context(_settings(pki["client"].key), "kafka")
    with pytest.raises(SettingsError, match="not a PEM certificate and its private key"):
        client_context(_settings(pki["ca"].cert, kafka_ssl_certfile=pki["client"].cert,
                                 kafka_ssl_keyfile=pki["good"].key), "kafka")
    context = client_context(_settings(pki["ca"].cert, kafka_ssl_certfile=pki["client"].cert,
                                       kafka_ssl_keyfile=pki["client"].key), "kafka")
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_keys_are_private_to_their_owner(pki: dict[str, Issued]) -> None:
    for issued in pki.values():
        assert issued.key.stat().st_mode & 0o777 == 0o600, issued.key


@pytest.mark.parametrize(("given", "says"), [
    ({"kafka_username": "u", "kafka_password": "p", "kafka_security_protocol": "SSL"},
     "has no login; use SASL_SSL"),
    ({"kafka_security_protocol": "SASL_SSL"}, "needs STREAMFIT_KAFKA_USERNAME"),
    ({"cassandra_ssl_certfile": "/c.pem"}, "STREAMFIT_CASSANDRA_SSL_KEYFILE is not"),
])
def test_inconsistent_tls_settings_are_refused(given: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Settings(**given)  # type: ignore[arg-type]

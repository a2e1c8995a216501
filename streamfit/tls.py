"""TLS for the clients: one ``ssl.SSLContext`` per service, built from the settings, and
one-line explanations of failed handshakes that name the setting to fix.

Used by ``streamfit.kafka`` (every producer, consumer and admin client) and
``streamfit.cassandra`` (every session) when their settings ask for TLS; the Kafka and
Cassandra drivers get the same kind of context, so both verify certificates the same way.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from streamfit.settings import Settings, SettingsError

Service = Literal["kafka", "cassandra"]

#: What OpenSSL says (in an exception, or in the line a client logs) -> what went wrong.
_EXPIRED = ("certificate has expired",)
_NOT_YET_VALID = ("certificate is not yet valid",)
_HOST_MISMATCH = ("Hostname mismatch", "IP address mismatch")
_UNKNOWN_ISSUER = ("unable to get local issuer certificate", "self-signed certificate",
                   "self signed certificate", "unable to verify the first certificate",
                   "unable to get issuer certificate", "certificate signature failure")
_NOT_TLS = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure",
            "RECORD_LAYER_FAILURE", "packet length too long", "http request")
_CLOSED = ("Connection reset by peer", "EOF occurred in violation of protocol",
           "UNEXPECTED_EOF_WHILE_READING", "unexpected eof while reading")
_CLIENT_REFUSED = ("CERTIFICATE_REQUIRED", "certificate required", "BAD_CERTIFICATE",
                   "bad certificate", "UNKNOWN_CA", "unknown ca")


class TLSError(ConnectionError):
    """A TLS handshake failed; the message says why in one line and which setting to fix."""


def uses_tls(settings: Settings, service: Service) -> bool:
    if service == "kafka":
        return settings.kafka_protocol in ("SSL", "SASL_SSL")
    return settings.cassandra_ssl


def _env(service: Service, name: str) -> str:
    return f"STREAMFIT_{service.upper()}_SSL_{name.upper()}"


def client_context(settings: Settings, service: Service) -> ssl.SSLContext:
    """The context a client of ``service`` verifies servers with (TLS 1.2 or later, the CA
    file or else the system's CAs, host names checked unless the settings say not to), with
    the client certificate when one is set. A file that cannot serve is named by its setting."""
    cafile: Path | None = getattr(settings, f"{service}_ssl_cafile")
    certfile: Path | None = getattr(settings, f"{service}_ssl_certfile")
    keyfile: Path | None = getattr(settings, f"{service}_ssl_keyfile")
    password = getattr(settings, f"{service}_ssl_key_password")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = getattr(settings, f"{service}_ssl_check_hostname")
    context.verify_mode = ssl.CERT_REQUIRED
    for name, path in (("cafile", cafile), ("certfile", certfile), ("keyfile", keyfile)):
        if path is not None and not path.is_file():
            raise SettingsError(f"{_env(service, name)}={path}: no such file; point it at the "
                                "PEM file, or unset it")
    try:
        if cafile is not None:
            context.load_verify_locations(cafile=str(cafile))
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except ssl.SSLError as exc:
        raise SettingsError(f"{_env(service, 'cafile')}={cafile}: not a PEM file of CA "
                            f"certificates ({exc.reason or exc})") from None
    if certfile is not None:
        try:
            context.load_cert_chain(str(certfile), str(keyfile),
                                    password.get_secret_value() if password else None)
        except ssl.SSLError as exc:
            raise SettingsError(
                f"{_env(service, 'certfile')}={certfile} and {_env(service, 'keyfile')}="
                f"{keyfile}: not a PEM certificate and its private key ({exc.reason or exc}); "
                f"an encrypted key needs {_env(service, 'key_password')}") from None
    return context


def explain(error: BaseException | str, settings: Settings, service: Service, where: str
            ) -> str | None:
    """One line on why a TLS handshake with ``where`` (host:port) failed, naming the setting
    to fix; None when ``error`` (an exception, or the line a client logged) is no TLS failure
    we recognise. Text, not exception types: kafka-python reports handshakes only in its log."""
    text = str(error)

    def has(needles: tuple[str, ...]) -> bool:
        return any(n in text for n in needles)

    cafile = getattr(settings, f"{service}_ssl_cafile")
    no_tls = "STREAMFIT_KAFKA_SSL=false" if service == "kafka" else "STREAMFIT_CASSANDRA_SSL=false"
    if has(_EXPIRED):
        return (f"the certificate {where} presented has expired: renew the server's "
                "certificate (the client's clock says it is past its notAfter date)")
    if has(_NOT_YET_VALID):
        return (f"the certificate {where} presented is not valid yet: check the clocks of both "
                "machines, or reissue it")
    if has(_HOST_MISMATCH):
        hosts = ("STREAMFIT_KAFKA_BOOTSTRAP_SERVERS" if service == "kafka"
                 else "STREAMFIT_CASSANDRA_HOSTS")
        return (f"the certificate {where} presented does not name that host: dial a name its "
                f"certificate holds ({hosts}), or reissue the certificate with it")
    if has(_UNKNOWN_ISSUER):
        trust = (f"{_env(service, 'cafile')}={cafile}" if cafile
                 else f"the system's CAs ({_env(service, 'cafile')} is empty)")
        return (f"the certificate {where} presented is not signed by a CA in {trust}: point it "
                "at the CA that signed the servers' certificates")
    if has(_NOT_TLS):
        return (f"{where} does not speak TLS: point at its TLS port, or set {no_tls} if the "
                "server has no TLS")
    if has(_CLOSED):
        return (f"{where} closed the connection during the TLS handshake: it does not speak "
                f"TLS there (point at its TLS port, or set {no_tls}), or it wants a client "
                f"certificate ({_env(service, 'certfile')})")
    if has(_CLIENT_REFUSED):
        return (f"{where} refused this client's certificate: set {_env(service, 'certfile')} "
                f"and {_env(service, 'keyfile')} to a client certificate its CA signed")
    if isinstance(error, ssl.SSLError) or "[SSL" in text:
        return f"TLS with {where} failed ({text.splitlines()[0] if text else 'no reason given'})"
    return None


def speaks_tls(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether ``host:port`` completes a TLS handshake (its certificate unchecked): asked only
    after a plaintext client failed there, to tell "this port wants TLS" from "nothing answers"."""
    import socket

    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    try:
        with (socket.create_connection((host, port), timeout=timeout) as raw,
              probe.wrap_socket(raw, server_hostname=host)):
            return True
    except (OSError, ssl.SSLError):
        return False

"""`streamfit serve` over HTTPS as a user starts it: a subprocess with a certificate from a CA
the test made (``app.stack.tls``), answering on a free loopback port."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.stack.tls import Issued, issue
from tests.net import free_port
from tests.support.waiting import wait_for


def trusting(cafile: Path) -> ssl.SSLContext:
    """What an https client verifies against: the CA in PEM file ``cafile``."""
    return ssl.create_default_context(cafile=str(cafile))


@contextmanager
def serving_https(env: dict[str, str], ca: Issued, certs: Path) -> Iterator[str]:
    """The https base URL of `streamfit serve` run with ``env`` and a certificate ``ca``
    signs for 127.0.0.1; stopped on exit."""
    cert = issue(ca, certs, "api", ["127.0.0.1", "localhost"])
    port = free_port()
    env = {**env, "STREAMFIT_API_PORT": str(port), "STREAMFIT_API_TLS_CERTFILE": str(cert.cert),
           "STREAMFIT_API_TLS_KEYFILE": str(cert.key)}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "streamfit"), "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"https://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/health/live", verify=trusting(ca.cert)).status_code == 200
        except httpx.TransportError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            return False

    try:
        wait_for(answers, 60, "streamfit serve to answer over HTTPS")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)

"""Scenario 7: the local stack with logins and TLS (STREAMFIT_STACK_AUTH=true,
STREAMFIT_STACK_TLS=true).

The suite's stack is restarted with Cassandra's PasswordAuthenticator and client encryption, Kafka
SASL/SCRAM over TLS (SASL_SSL) and Airflow's API over HTTPS, every certificate from the stack's
own CA. Then: the whole flow runs with the credentials from settings (ingest, dead letters) and
from the environment (Airflow's tasks build features, train and score; the CLI reads
predictions; `streamfit serve` answers over HTTPS); a client without a login, with a wrong
password, trusting another CA, dialling a name the certificates do not hold, or speaking
plaintext to a TLS port, or meeting an expired certificate, is refused with one line naming the
setting to fix; PLAIN logins over TLS work as SCRAM ones do; and no password or
private key appears in any log the stack, Airflow's tasks or the CLI wrote, in `streamfit
settings` or in the report. The plain stack is restored afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaTimeoutError
from pydantic import SecretStr

from app.stack import control
from app.stack.services import KafkaService
from ingest.dlq import list_dead_letters
from ingest.producer import send_events
from ingest.service import ensure_topics
from ingest.signal import signal_now
from streamfit import kafka as kafka_io
from streamfit.airflow_api import airflow_client
from streamfit.cassandra import CassandraAuthError, connect
from streamfit.domains import ReplayOptions, load_domain
from streamfit.kafka import KafkaAuthError
from streamfit.schema import migrate
from streamfit.settings import Settings
from tests.chaos.conftest import Row, record
from tests.conftest import restore_after_restart
from tests.corpus import malformed
from tests.replay import one_origin
from tests.support.ingest import landed_ids, running_ingest, wait_caught_up
from tests.support.waiting import wait_for

S = TypeVar("S", bound=Settings)

START = date(2013, 5, 1)
DAYS = 10


def _credentials(home: Path) -> dict[str, str]:
    """The test's users, generated once per stack home: Cassandra keeps a user it created."""
    path = home / "chaos-security.json"
    if not path.exists():
        path.write_text(json.dumps({
            "cassandra_username": "streamfit_app", "cassandra_password": secrets.token_urlsafe(18),
            "kafka_username": "streamfit-app", "kafka_password": secrets.token_urlsafe(18)}))
        path.chmod(0o600)
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def with_tls(settings: S) -> S:
    """``settings`` with the stack's TLS on, and its clients trusting the stack's CA (what the
    stack's settings derive; a copy does not run that derivation)."""
    ca = settings.home / "tls" / "ca.pem"
    return settings.model_copy(update={
        "stack_tls": True, "cassandra_ssl": True, "cassandra_ssl_cafile": ca,
        "kafka_ssl": True, "kafka_ssl_cafile": ca, "airflow_ssl_cafile": ca})


def with_logins(settings: S) -> S:
    """``settings`` with the stack's logins on, as the test's users (``_credentials``)."""
    creds = _credentials(settings.home)
    return settings.model_copy(update={
        "stack_auth": True,
        "cassandra_username": creds["cassandra_username"],
        "cassandra_password": SecretStr(creds["cassandra_password"]),
        "kafka_username": creds["kafka_username"],
        "kafka_password": SecretStr(creds["kafka_password"])})


pytestmark = pytest.mark.restarts_stack


@pytest.fixture
def secure_stack(stack: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """The suite's stack, restarted with logins on; restarted plain again afterwards, unless
    the session is about to stop it (see ``restore_after_restart``)."""
    secure = with_tls(with_logins(stack))
    control.down(stack)
    try:
        control.up(secure)
        yield secure
    finally:
        control.down(secure)
        if restore_after_restart(request):
            control.up(stack)


def _env(settings: Settings, **changes: str) -> dict[str, str]:
    assert settings.cassandra_password and settings.kafka_password
    return {**os.environ, "STREAMFIT_KEYSPACE": settings.keyspace,
            "STREAMFIT_STACK_AUTH": "true",
            "STREAMFIT_CASSANDRA_USERNAME": settings.cassandra_username or "",
            "STREAMFIT_CASSANDRA_PASSWORD": settings.cassandra_password.get_secret_value(),
            "STREAMFIT_KAFKA_USERNAME": settings.kafka_username or "",
            "STREAMFIT_KAFKA_PASSWORD": settings.kafka_password.get_secret_value(), **changes}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "streamfit"), *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _log_files(settings: Settings) -> list[Path]:
    roots = [settings.home / "logs", settings.home / "airflow" / "logs"]
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


def _tls_refusals(s: Settings, tmp_path: Path) -> list[str]:
    """Clients that trust another CA, dial a name the certificates do not hold, speak
    plaintext to a TLS port, or name a key file that is not there: each refused with one line
    naming the setting to fix (in Python, and from the CLI without a traceback)."""
    from app.stack.tls import make_ca
    from streamfit.cassandra import CassandraTLSError, CassandraUnavailable
    from streamfit.kafka import KafkaTLSError
    from streamfit.settings import SettingsError

    other = make_ca(tmp_path / "other-ca", "a CA the stack never used")
    untrusting = s.model_copy(update={"kafka_ssl_cafile": other.cert,
                                      "cassandra_ssl_cafile": other.cert})
    with pytest.raises(KafkaTLSError) as kafka_refused:
        kafka_io.admin(untrusting).close()
    with pytest.raises(CassandraTLSError) as cass_refused, connect(untrusting, keyspace=None):
        pass
    for refused, service in ((kafka_refused, "KAFKA"), (cass_refused, "CASSANDRA")):
        line = str(refused.value)
        assert f"not signed by a CA in STREAMFIT_{service}_SSL_CAFILE" in line, line
        assert "\n" not in line
    # 127.1 reaches 127.0.0.1, but no certificate names it. (The Cassandra driver checks the
    # address it resolved a name to, which the nodes' certificates hold.)
    elsewhere = s.model_copy(update={"kafka_bootstrap_servers": f"127.1:{s.kafka_port}"})
    with pytest.raises(KafkaTLSError, match="does not name that host: dial a name its "
                       "certificate holds .STREAMFIT_KAFKA_BOOTSTRAP_SERVERS."):
        kafka_io.admin(elsewhere).close()
    plaintext = s.model_copy(update={"kafka_security_protocol": "SASL_PLAINTEXT",
                                     "cassandra_ssl": False})
    with pytest.raises((KafkaTLSError, KafkaAuthError, KafkaTimeoutError)) as kafka_plain:
        kafka_io.admin(plaintext).close()
    with pytest.raises(CassandraUnavailable) as cass_plain, connect(plaintext, keyspace=None):
        pass
    assert "STREAMFIT_KAFKA_SSL=true" in str(kafka_plain.value), kafka_plain.value
    assert "STREAMFIT_CASSANDRA_SSL" in str(cass_plain.value), cass_plain.value
    missing = tmp_path / "no-such-key.pem"
    keyless = s.model_copy(update={"kafka_ssl_certfile": other.cert, "kafka_ssl_keyfile": missing})
    with pytest.raises(SettingsError, match=f"STREAMFIT_KAFKA_SSL_KEYFILE={missing}: no such"):
        kafka_io.admin(keyless)
    outputs = []
    for changes, says in (
            ({"STREAMFIT_KAFKA_SSL_CAFILE": str(other.cert)}, "STREAMFIT_KAFKA_SSL_CAFILE"),
            ({"STREAMFIT_KAFKA_SSL_CERTFILE": str(other.cert),
              "STREAMFIT_KAFKA_SSL_KEYFILE": str(missing)}, "STREAMFIT_KAFKA_SSL_KEYFILE")):
        proc = _cli(_env(s, **changes), "ingest", "status")
        outputs += [proc.stdout, proc.stderr]
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
        assert says in proc.stderr, proc.stderr
    return outputs


def _bad_server_certificates(s: Settings, tmp_path: Path) -> list[str]:
    """Cassandra presenting an expired certificate, then one issued for another host, each put
    in place of its own and read without a restart (as an operator rotating a certificate
    would): a client is refused with one line saying why. Its own certificate is put back."""
    from app.stack.settings import load_stack_settings
    from app.stack.tls import issue, local_ca
    from streamfit.cassandra import CassandraTLSError

    stack = load_stack_settings(home=s.home, stack_tls=True)
    ca = local_ca(s.home / "tls")
    keystore = s.home / "tls" / "cassandra-keystore.pem"
    original = keystore.read_bytes()
    now = datetime.now(UTC)
    expired = issue(ca, tmp_path, "expired", ["127.0.0.1", "localhost"],
                    not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    elsewhere = issue(ca, tmp_path, "elsewhere", ["cassandra.example.invalid"])
    lines = []
    try:
        for cert, says in ((expired, "presented has expired: renew the server's certificate"),
                           (elsewhere, "does not name that host: dial a name its certificate "
                                       "holds .STREAMFIT_CASSANDRA_HOSTS.")):
            keystore.write_bytes(cert.key.read_bytes() + cert.cert.read_bytes())
            control.reload_cassandra_tls(stack)
            with pytest.raises(CassandraTLSError, match=says) as refused, connect(s, keyspace=None):
                pass
            lines.append(str(refused.value))
            assert "\n" not in lines[-1]
    finally:
        keystore.write_bytes(original)
        control.reload_cassandra_tls(stack)
    with connect(s, keyspace=None) as session:  # its own certificate again
        assert session.execute("SELECT release_version FROM system.local").one()
    return lines


def test_the_flow_with_logins_and_wrong_credentials(secure_stack: Settings,
                                                   caplog: pytest.LogCaptureFixture,
                                                   tmp_path: Path) -> None:
    caplog.set_level(logging.INFO)
    tag = uuid.uuid4().hex[:10]
    s = secure_stack.model_copy(update={
        "keyspace": f"t_secure_{tag}", "events_topic": f"t.secure.{tag}",
        "ingest_group": f"t-secure-{tag}", "ingest_metrics_port": 0, "signal_interval_s": 1.0})
    assert s.cassandra_password and s.kafka_password
    # the passwords, and a line from the body of every private key the stack made
    keys = sorted((s.home / "tls").glob("*key*.pem"))
    assert keys, "the TLS stack made no private keys"
    secret_values = [s.cassandra_password.get_secret_value(), s.kafka_password.get_secret_value(),
                     KafkaService(s).broker_secret(),
                     *(key.read_text().splitlines()[2] for key in keys)]
    outputs: list[str] = []

    # --- the stack refuses clients without a login, and explains wrong credentials -----------
    anonymous = s.model_copy(update={"cassandra_username": None, "cassandra_password": None,
                                     "kafka_username": None, "kafka_password": None})
    with (pytest.raises(CassandraAuthError, match="requires a login.*STREAMFIT_CASSANDRA_USER"),
          connect(anonymous, keyspace=None)):
        pass
    with pytest.raises(KafkaTimeoutError):  # a SASL listener does not answer plaintext clients
        KafkaAdminClient(bootstrap_servers=s.bootstrap_servers, bootstrap_timeout_ms=3000)
    wrong = "wrong-" + secrets.token_urlsafe(12)
    with (pytest.raises(CassandraAuthError) as cass_refused,
          connect(s.model_copy(update={"cassandra_password": SecretStr(wrong)}), keyspace=None)):
        pass
    with pytest.raises(KafkaAuthError) as kafka_refused:
        kafka_io.producer(s.model_copy(update={"kafka_password": SecretStr(wrong)}))
    for refused, service in ((cass_refused, "CASSANDRA"), (kafka_refused, "KAFKA")):
        message = str(refused.value)
        assert "refused" in message and f"STREAMFIT_{service}_PASSWORD" in message
        assert wrong not in message
    for changes, command in (
            ({"STREAMFIT_CASSANDRA_PASSWORD": wrong}, ("predictions", "list", "--date", "2013-05-01")),
            ({"STREAMFIT_KAFKA_PASSWORD": wrong}, ("ingest", "status"))):
        proc = _cli(_env(s, **changes), *command)
        outputs += [proc.stdout, proc.stderr]
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "refused" in proc.stderr and wrong not in proc.stdout + proc.stderr

    # --- TLS: a client that cannot verify the servers, or speaks plaintext, is told why ------
    outputs += _tls_refusals(s, tmp_path)
    outputs += _bad_server_certificates(s, tmp_path)
    # PLAIN over TLS (Confluent Cloud's mechanism) logs the same user in; a wrong one is refused
    plain = s.model_copy(update={"kafka_sasl_mechanism": "PLAIN"})
    listed_topics = kafka_io.admin(plain)
    try:
        assert listed_topics.list_topics() is not None
    finally:
        listed_topics.close()
    with pytest.raises(KafkaAuthError, match="STREAMFIT_KAFKA_PASSWORD"):
        kafka_io.producer(plain.model_copy(update={"kafka_password": SecretStr(wrong)}))

    # --- the whole flow with the right ones: settings here, env in Airflow and the CLI -------
    with connect(s, keyspace=None) as session:
        migrate(session, s)
    ensure_topics(s)
    events = one_origin(list(load_domain("flights").replay(
        "nycflights13", ReplayOptions(START, START + timedelta(days=DAYS)))))
    events = [e for e in events if e["event_time"][:10] < (START + timedelta(days=DAYS)).isoformat()]
    next_day = START + timedelta(days=DAYS)
    send_events(s, events)
    bad = malformed()[:5]
    producer = kafka_io.producer(s, max_request_size=2_000_000)
    for message in bad:
        producer.send(s.events_topic, message.value).get(30)
    producer.close()
    with running_ingest(s.model_copy(update={"airflow_url": "http://127.0.0.1:9"}), workers=2):
        wait_caught_up(s)
    since = datetime.now(UTC).isoformat()
    assert signal_now(s) is not None
    with airflow_client(s) as client:

        def scored() -> bool:
            try:
                return any(r.summary for r in client.pipeline_runs("score_batch", since,
                                                                   s.keyspace))
            except httpx.TransportError:  # its API server, busy running the tasks, was slow
                return False

        wait_for(scored, 420, "Airflow (logged in from its env) to build features, train and "
                 "score")
    ids = landed_ids(s, {date.fromisoformat(e["event_time"][:10]) for e in events})
    expected = {e["event_id"] for e in events}
    letters = list_dead_letters(s, limit=None)
    assert set(ids) == expected and len(ids) == len(expected)
    assert len(letters) == len(bad) and all(d.reason for d in letters)
    proc = _cli(_env(s), "predictions", "list", "--date", next_day.isoformat(),
                "--format", "json")
    outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert listed, "the CLI read no predictions"
    # ... and the API serves one over HTTPS, its certificate from the stack's CA
    from app.stack.tls import local_ca
    from tests.support.https import serving_https, trusting

    with serving_https(_env(s), local_ca(s.home / "tls"), tmp_path) as url:
        flight = listed[0]["flight_id"]
        got = httpx.get(f"{url}/predictions/{flight}", verify=trusting(s.home / "tls" / "ca.pem"))
        assert got.status_code == 200 and got.json()["flight_id"] == flight, got.text
    # the files holding secrets are the owner's alone
    private = [s.home / "airflow" / "passwords.json", KafkaService(s).broker_secret_file, *keys]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in private), [
        (str(p), oct(p.stat().st_mode & 0o777)) for p in private]

    # --- and no password in any log, in `streamfit settings` or in the report ------------------
    report = tmp_path / "report.html"
    for command in (("settings", "--json"), ("report", "--out", str(report))):
        proc = _cli(_env(s), *command)
        outputs += [proc.stdout, proc.stderr]
        assert proc.returncode == 0, proc.stderr
        if command[0] == "settings":  # the secrets are there, masked
            shown = {r["name"]: r for r in json.loads(proc.stdout)}
            assert shown["kafka_password"]["value"] and shown["cassandra_password"]["value"]
    outputs.append(report.read_text())
    files = _log_files(s)
    texts = [p.read_bytes().decode("utf-8", "replace") for p in files] + outputs + [caplog.text]
    leaks = [(str(path), i) for path, text in zip([*files, *(["output"] * (len(texts) - len(files)))],
                                                  texts, strict=True)
             for i, value in enumerate(secret_values) if value in text]
    assert len(files) > 10 and not leaks, leaks
    # the scan reads what was logged: the logins themselves are there, by user name
    assert any(f"Authenticated as {s.kafka_username}" in text for text in texts)
    record(Row("7. logins (SCRAM, PasswordAuthenticator)", len(events) + len(bad), len(set(ids)),
               len(letters), len(expected - set(ids)), len(ids) - len(set(ids)), None,
               f"over TLS; wrong/no credentials and untrusted servers refused clearly; no "
               f"password or private key in {len(files)} log files"))
    # its keyspace was announced to Airflow: dropped, so the DAGs' fallback stops serving it
    with connect(s, keyspace=None) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {s.keyspace}", timeout=60)

"""Logins without services: client configs, the errors a refused login gives, the broker's
properties in both modes, and what Airflow's tasks are handed."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from cassandra import AuthenticationFailed
from kafka.errors import KafkaTimeoutError
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslAuthenticateResponse
from pydantic import SecretStr

from app.stack.process import StackError, wait_until
from app.stack.services import AirflowService, KafkaService
from app.stack.settings import StackSettings
from streamfit.cassandra import _auth_message
from streamfit.kafka import KafkaAuthError, _login_explained, client_config

PASSWORD = "pa55word-not-in-logs"


def _secure(tmp_path: Path) -> StackSettings:
    return StackSettings(home=tmp_path, stack_auth=True, cassandra_username="app",
                    cassandra_password=SecretStr(PASSWORD), kafka_username="app",
                    kafka_password=SecretStr(PASSWORD), _env_file=None,  # type: ignore[call-arg]
                    # nothing listens there: a probe after a failure finds no broker at all
                    kafka_bootstrap_servers="127.0.0.1:9")


def test_plain_clients_have_no_sasl(tmp_path: Path) -> None:
    config = client_config(StackSettings(home=tmp_path, _env_file=None), "c")  # type: ignore[call-arg]
    assert config["security_protocol"] == "PLAINTEXT" and "sasl_plain_password" not in config
    assert "ssl_context" not in config


def test_sasl_clients_log_in_with_the_settings(tmp_path: Path) -> None:
    config = client_config(_secure(tmp_path), "c")
    assert config["security_protocol"] == "SASL_PLAINTEXT"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("app", PASSWORD)


def test_a_refused_kafka_login_is_named(tmp_path: Path) -> None:
    log = logging.getLogger("kafka.net.connection")
    with pytest.raises(KafkaAuthError) as refused, _login_explained(_secure(tmp_path)):
        log.error("<conn>: Connection lost: [Error 58] SaslAuthenticationFailedError: "
                  "SaslAuthenticationFailedError: Authentication failed due to invalid credentials")
        raise KafkaTimeoutError("Unable to bootstrap")
    message = str(refused.value)
    assert "user 'app'" in message and "invalid credentials" in message
    assert "STREAMFIT_KAFKA_PASSWORD" in message and PASSWORD not in message


def test_a_timeout_without_a_refused_login_stays_a_timeout(tmp_path: Path) -> None:
    with pytest.raises(KafkaTimeoutError), _login_explained(_secure(tmp_path)):
        logging.getLogger("kafka.net.connection").error("Connection lost: socket disconnected")
        raise KafkaTimeoutError("Unable to bootstrap")


class _Conn:
    """Stands for a kafka-python connection in the records (they name it by its first arg)."""


def _exchange(conn: _Conn, answered: bool) -> None:
    log = logging.getLogger("kafka.net.connection")
    log.debug("%s Request %d: %s", conn, 4, SaslAuthenticateRequest(auth_bytes=b"c=biws"))
    if answered:
        log.debug("%s: Response %d (%s ms): %s", conn, 4, 1.0,
                  SaslAuthenticateResponse(error_code=0, error_message="", auth_bytes=b""))
    log.error("%s: Connection lost: %s", conn, "KafkaConnectionError: socket disconnected")


def test_a_connection_closed_during_the_sasl_exchange_is_a_refusal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with pytest.raises(KafkaAuthError) as refused, _login_explained(_secure(tmp_path), watch=True):
        _exchange(_Conn(), answered=False)
        raise KafkaTimeoutError("Unable to bootstrap")
    assert "closed the connection during the SASL exchange" in str(refused.value)
    # the debug records it watched went no further than the watch
    assert caplog.records and all(r.levelno >= logging.WARNING for r in caplog.records)
    assert logging.getLogger("kafka.net.connection").level == logging.NOTSET


def test_a_connection_lost_after_the_exchange_is_no_refusal(tmp_path: Path) -> None:
    with (pytest.raises(KafkaTimeoutError),
          _login_explained(_secure(tmp_path), watch=True)):
        _exchange(_Conn(), answered=True)
        raise KafkaTimeoutError("Unable to bootstrap")


def test_cassandra_login_messages(tmp_path: Path) -> None:
    refused = AuthenticationFailed('Failed to authenticate to 127.0.0.1:9042: Error from server: '
                                   'code=0100 [Bad credentials] message="Provided username app '
                                   'and/or password are incorrect"')
    message = _auth_message(_secure(tmp_path), refused)
    assert "refused user 'app' (Provided username app and/or password are incorrect)" in message
    assert "STREAMFIT_CASSANDRA_PASSWORD" in message and PASSWORD not in message
    anonymous = StackSettings(home=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert "requires a login" in _auth_message(anonymous, refused)


def test_broker_properties_plain_and_with_logins(tmp_path: Path) -> None:
    plain = KafkaService(StackSettings(home=tmp_path, _env_file=None))  # type: ignore[call-arg]
    text = plain._write_properties(plain.nodes[0], tmp_path / "data").read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in text
    assert "sasl" not in text

    secure = KafkaService(_secure(tmp_path))
    path = secure._write_properties(secure.nodes[0], tmp_path / "data")
    text = path.read_text()
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in text
    assert "inter.broker.listener.name=SASL_PLAINTEXT" in text
    assert "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512" in text
    for mech in ("scram-sha-256", "scram-sha-512"):
        assert f'listener.name.sasl_plaintext.{mech}.sasl.jaas.config=' in text
    assert f'password="{secure.broker_secret()}"' in text
    assert PASSWORD not in text  # only the broker's own secret is in the file ...
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # ... which only we can read
    assert stat.S_IMODE(secure.broker_secret_file.stat().st_mode) == 0o600


def test_logins_need_a_store_formatted_with_the_broker_user(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.stack.services as services

    monkeypatch.setattr(services, "install_jars", lambda *_a: tmp_path / "lib")
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    (tmp_path / "kafka" / "data" / "meta.properties").write_text("formatted earlier\n")
    with pytest.raises(StackError, match="formatted before streamfit created a broker user"):
        KafkaService(_secure(tmp_path)).prepare()


def test_airflow_tasks_get_the_logins(tmp_path: Path) -> None:
    env = AirflowService(_secure(tmp_path))._credentials_env()
    assert not [k for k in env if k.startswith("STREAMFIT_STACK_")]  # the stack's, not theirs
    assert env["STREAMFIT_CASSANDRA_USERNAME"] == "app"
    assert env["STREAMFIT_KAFKA_PASSWORD"] == PASSWORD
    plain = AirflowService(StackSettings(home=tmp_path, _env_file=None))._credentials_env()  # type: ignore[call-arg]
    assert "STREAMFIT_KAFKA_PASSWORD" not in plain and "STREAMFIT_CASSANDRA_PASSWORD" not in plain


def test_wait_until_stops_at_a_final_error() -> None:
    calls = []

    def check() -> bool:
        calls.append(1)
        raise StackError("wrong password; waiting will not help")

    with pytest.raises(StackError, match="waiting will not help"):
        wait_until(check, timeout=30, what="x", interval=0.01)
    assert len(calls) == 1


def test_plain_is_offered_over_tls_only_and_the_brokers_stay_on_scram(tmp_path: Path) -> None:
    over_tls = KafkaService(_secure(tmp_path).model_copy(update={
        "stack_tls": True, "kafka_sasl_mechanism": "PLAIN"}))
    text = over_tls._write_properties(over_tls.nodes[0], tmp_path / "data").read_text()
    assert "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN" in text
    assert "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512" in text
    assert (f'listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.'
            f'plain.PlainLoginModule required user_app="{PASSWORD}";') in text
    assert over_tls._broker_settings().kafka_sasl_mechanism == "SCRAM-SHA-512"
    plaintext = KafkaService(_secure(tmp_path))
    text = plaintext._write_properties(plaintext.nodes[0], tmp_path / "data").read_text()
    assert ",PLAIN" not in text and "PlainLoginModule" not in text


def test_plain_needs_tls(tmp_path: Path) -> None:
    from streamfit.settings import SettingsError, build_settings

    with pytest.raises(SettingsError, match="PLAIN sends the password itself"):
        build_settings(StackSettings, {"home": tmp_path, "kafka_username": "app",
                                       "kafka_password": PASSWORD, "kafka_sasl_mechanism": "PLAIN"},
                       skip=None)
    ok = _secure(tmp_path).model_copy(update={"kafka_ssl": True, "kafka_sasl_mechanism": "PLAIN"})
    config = client_config(ok, "c")
    assert (config["security_protocol"], config["sasl_mechanism"]) == ("SASL_SSL", "PLAIN")

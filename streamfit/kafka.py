"""Kafka client configuration shared by every streamfit producer, consumer and admin client.

One place sets the bootstrap servers, client ids and the durability settings (acks=all plus
idempotence on producers), so the ingest service, the replay producer and the tests agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    GroupIdNotFoundError,
    KafkaTimeoutError,
    NotCoordinatorError,
    TopicAlreadyExistsError,
)

from streamfit.settings import Settings
from streamfit.tls import client_context, explain, speaks_tls, uses_tls

#: kafka-python 3 warns when one step of its network loop takes over 0.1 s ("It is blocking the
#: event loop"). On two shared cores an ingest worker's step waits that long for the CPU (Cassandra,
#: the other worker) with nothing wrong, and `make demo` printed such lines; a step of a second or
#: more is still reported.
SLOW_STEP_REPORTED_S = 1.0
_SLOW_STEP = re.compile(r"ran for ([0-9.]+)s \(>")


def not_contention(record: logging.LogRecord) -> bool:
    """Logging filter: False for kafka-python's slow-step warnings under
    ``SLOW_STEP_REPORTED_S``, True for every other record."""
    slow = _SLOW_STEP.search(record.getMessage())
    return slow is None or float(slow.group(1)) >= SLOW_STEP_REPORTED_S


def quiet_contention_warnings() -> None:
    """Drop kafka-python's sub-second slow-step warnings in this process (see ``not_contention``)."""
    logger = logging.getLogger("kafka.net.selector")
    if not_contention not in logger.filters:
        logger.addFilter(not_contention)


class KafkaAuthError(RuntimeError):
    """The broker refused our SASL login; the message says which settings to check."""


class KafkaTLSError(ConnectionError):
    """The TLS handshake with a broker failed; the message says why and what to set."""


class _AuthFailures(logging.Handler):
    """Catches the SASL failure kafka-python only logs (its bootstrap then just times out).

    A broker answers a wrong password with an error response, or, when that response is lost
    in its delayed close of the failed connection (seen with Kafka 4.3), by just closing the
    connection during the SASL exchange. The second kind shows only in kafka-python's debug
    records, so ``watch_exchanges`` lets those through to ``_follow`` (and no further).
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reason: str | None = None
        self.handshake: str | None = None  # a failed TLS handshake, as kafka-python logged it
        self._pending: set[int] = set()  # connections awaiting a SaslAuthenticate response
        self._passthrough = logging.WARNING

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "SaslAuthenticationFailedError" in message and self.reason is None:
            self.reason = message.rsplit("SaslAuthenticationFailedError:", 1)[-1].strip()
        if "Handshake failed" in message and self.handshake is None:
            self.handshake = message.rsplit("Handshake failed:", 1)[-1].strip()

    def _follow(self, record: logging.LogRecord) -> bool:
        """A filter of kafka.net.connection (not this handler's ``filter``): follow each
        connection's SASL exchange; pass on only what the logger's own level would have."""
        args = record.args if isinstance(record.args, tuple) else ()
        names = [type(a).__name__ for a in args]
        if args and "SaslAuthenticateRequest" in names:
            self._pending.add(id(args[0]))
        elif args and "SaslAuthenticateResponse" in names:
            self._pending.discard(id(args[0]))
        elif (args and id(args[0]) in self._pending and "Connection lost" in str(record.msg)
              and self.reason is None):
            self.reason = "the broker closed the connection during the SASL exchange"
        return record.levelno >= self._passthrough

    @contextmanager
    def watch_exchanges(self) -> Iterator[None]:
        logger = logging.getLogger("kafka.net.connection")
        level, self._passthrough = logger.level, logger.getEffectiveLevel()
        logger.setLevel(logging.DEBUG)
        logger.addFilter(self._follow)
        try:
            yield
        finally:
            logger.removeFilter(self._follow)
            logger.setLevel(level)


@contextmanager
def _login_explained(settings: Settings, watch: bool = False) -> Iterator[None]:
    """Turn "Unable to bootstrap" after a refused login into a KafkaAuthError saying so."""
    catcher = _AuthFailures()
    # kafka-python 3 logs the refusal from kafka.net.connection ("Connection lost") or, when the
    # connection was already closed, only from kafka.net.manager ("Bootstrap attempt ...
    # failed"): listen to the whole package
    logger = logging.getLogger("kafka")
    logger.addHandler(catcher)
    try:
        with catcher.watch_exchanges() if watch else contextlib.nullcontext():
            yield
    except KafkaTimeoutError:
        if catcher.handshake is not None:
            where = f"Kafka at {settings.bootstrap_servers}"
            why = explain(catcher.handshake, settings, "kafka", where)
            raise KafkaTLSError(why or f"{where}: TLS failed ({catcher.handshake})") from None
        if catcher.reason is None:
            if not uses_tls(settings, "kafka"):
                host, _, port = settings.bootstrap_servers.split(",")[0].rpartition(":")
                if port.isdigit() and speaks_tls(host.strip("[]"), int(port)):
                    raise KafkaTLSError(
                        f"Kafka at {settings.bootstrap_servers} speaks TLS: set "
                        "STREAMFIT_KAFKA_SSL=true and "
                        "STREAMFIT_KAFKA_SSL_CAFILE (the CA that signed the brokers' "
                        "certificates)") from None
            raise
        raise KafkaAuthError(
            f"Kafka at {settings.bootstrap_servers} refused the SASL login of user "
            f"{settings.kafka_username!r} ({catcher.reason}): check STREAMFIT_KAFKA_USERNAME, "
            "STREAMFIT_KAFKA_PASSWORD and STREAMFIT_KAFKA_SASL_MECHANISM. The local stack "
            "creates this user at `stack up` with STREAMFIT_STACK_AUTH=true") from None
    finally:
        logger.removeHandler(catcher)


#: Logins this process has seen accepted (servers, user, mechanism, password digest).
_ACCEPTED: set[tuple[str, ...]] = set()


def _check_login(settings: Settings) -> None:
    """With SASL or TLS, connect once per process with a short bootstrap: a wrong password or
    a refused certificate is reported within 3 s, and explained, instead of after the clients'
    30 s bootstrap timeout (a consumer would only log it, over and over)."""
    sasl = bool(settings.kafka_username and settings.kafka_password)
    if not (sasl or uses_tls(settings, "kafka")):
        return
    password = settings.kafka_password.get_secret_value() if settings.kafka_password else ""
    digest = hashlib.sha256(password.encode()).hexdigest()
    login = (settings.bootstrap_servers, settings.kafka_protocol, str(settings.kafka_username),
             settings.kafka_sasl_mechanism, digest, str(settings.kafka_ssl_cafile),
             str(settings.kafka_ssl_certfile))
    if login in _ACCEPTED:
        return
    with contextlib.suppress(KafkaTimeoutError), _login_explained(settings, watch=sasl):
        # no login failure seen (a slow or stopped broker): the real client waits as usual
        KafkaAdminClient(**{**client_config(settings, "streamfit-login-check"),
                            "bootstrap_timeout_ms": 3000}).close()
        _ACCEPTED.add(login)


def client_config(settings: Settings, client_id: str) -> dict[str, Any]:
    config: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers.split(","),
                              "client_id": client_id,
                              # back within a second of a broker's restart, not up to 30 s later
                              "reconnect_backoff_max_ms": settings.kafka_reconnect_backoff_max_ms,
                              "bootstrap_timeout_ms": int(1000 * settings.kafka_bootstrap_timeout_s)}
    protocol = settings.kafka_protocol
    config["security_protocol"] = protocol
    if protocol.startswith("SASL") and settings.kafka_password:
        config.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                      sasl_plain_username=settings.kafka_username,
                      sasl_plain_password=settings.kafka_password.get_secret_value())
    if uses_tls(settings, "kafka"):
        config["ssl_context"] = client_context(settings, "kafka")
    return config


def producer(settings: Settings, client_id: str = "streamfit-producer",
             **overrides: Any) -> KafkaProducer:
    """A durable producer: every write acknowledged by all in-sync replicas, no duplicates on retry."""
    config: dict[str, Any] = {
        **client_config(settings, client_id),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "compression_type": None,
    }
    config.update(overrides)
    _check_login(settings)
    with _login_explained(settings):
        return KafkaProducer(**config)


def consumer(settings: Settings, group_id: str | None, client_id: str = "streamfit-consumer",
             **overrides: Any) -> KafkaConsumer:
    """A consumer that never auto-commits: offsets are committed only after the work is durable."""
    config: dict[str, Any] = {
        **client_config(settings, client_id),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    config.update(overrides)
    _check_login(settings)
    with _login_explained(settings):
        return KafkaConsumer(**config)


def admin(settings: Settings, client_id: str = "streamfit-admin",
          request_timeout_ms: int = 30000) -> KafkaAdminClient:
    _check_login(settings)
    with _login_explained(settings):
        return KafkaAdminClient(**client_config(settings, client_id),
                                request_timeout_ms=request_timeout_ms)


def ensure_topic(settings: Settings, name: str, partitions: int,
                 configs: dict[str, str] | None = None) -> bool:
    """Create ``name`` if missing (True if created). Existing topics are left as they are."""
    client = admin(settings)
    try:
        client.create_topics(
            {name: {"num_partitions": partitions,
                    "replication_factor": settings.kafka_replication_factor,
                    # with acks=all, a write succeeds once this many replicas hold it
                    "configs": {"min.insync.replicas": str(settings.min_insync_replicas),
                                **(configs or {})}}},
            wait_for_metadata=True,
        )
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        client.close()


def forget_coordinator(client: KafkaAdminClient, group: str) -> bool:
    """Drop the admin client's cached coordinator of ``group``; True if one was cached.

    kafka-python 3.0.12's admin looks a group's coordinator up once and keeps it for the
    client's life (``ClusterMetadata._coordinators``), and nothing in it drops the entry when
    that broker answers NOT_COORDINATOR. On several brokers the coordinator moves (a broker
    restarts; Kafka's preferred-leader rebalance moves the __consumer_offsets partition back
    minutes later), and a long-lived admin (the ingest signaller's) would then ask the same
    broker on every retry. (Moving the leader by hand on the cluster topology, the old broker
    still answered; a restarted broker was not tried.) No public call clears the cache, hence the
    private attribute; on a client without it, nothing is dropped."""
    cluster = getattr(getattr(client, "_manager", None), "cluster", None)
    cached = getattr(cluster, "_coordinators", None)
    if not isinstance(cached, dict):
        return False
    keys = [k for k in cached if isinstance(k, tuple) and len(k) == 2 and k[1] == group]
    for key in keys:
        cached.pop(key, None)
    return bool(keys)


def committed_offsets(client: KafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    """Partition -> committed offset of ``group`` on ``topic`` ({} before its first commit).

    On a fresh cluster the group coordinator (the __consumer_offsets topic) may not exist yet or
    may still be moving: retried briefly, each time looking the coordinator up afresh
    (``forget_coordinator``), then read as "nothing committed yet". Every caller polls, so the
    next call sees the real offsets.
    """
    offsets: dict[Any, Any] = {}
    for attempt in range(6):
        try:
            offsets = client.list_group_offsets(group).get(group, {})
            break
        except GroupIdNotFoundError:
            return {}
        except (CoordinatorNotAvailableError, NotCoordinatorError,
                CoordinatorLoadInProgressError):
            forget_coordinator(client, group)
            if attempt == 5:
                return {}
            time.sleep(0.2 * 2**attempt)
    return {tp.partition: om.offset for tp, om in offsets.items()
            if tp.topic == topic and om.offset is not None and om.offset >= 0}

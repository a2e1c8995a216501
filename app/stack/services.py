"""The services of the local stack: Kafka (KRaft), Cassandra and Airflow, and on request
(``STREAMFIT_STACK_SPARK=true``) a Spark standalone master and worker.

Each service knows how to prepare itself (jars, config, one-time formatting), which processes to
run, and when it is actually usable. ``app.stack.control`` starts and stops them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from string import Template

from pydantic import SecretStr

from app.stack.maven import install_jars
from app.stack.process import ProcessSpec, StackError, port_open
from app.stack.settings import KAFKA_BROKER_USER, StackSettings
from streamfit.airflow_api import AirflowClient, airflow_client, airflow_password
from streamfit.settings import PROJECT_ROOT

CONF_DIR = Path(__file__).parent / "conf"
log = logging.getLogger(__name__)

# JDK 17 module flags from upstream Cassandra's conf/jvm17-server.options: without them 5.0 fails
# at start with IllegalAccessException.
CASSANDRA_JDK17_FLAGS = [
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]


def _write_private(path: Path, text: str) -> Path:
    """Write a file only its owner can read: created 0600 before the secret goes in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    return _write(path, text)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _render(template: str, **values: object) -> str:
    return Template((CONF_DIR / template).read_text()).substitute(
        {k: str(v) for k, v in values.items()}
    )


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home) / "bin" / "java") if java_home else "java"


class Service(ABC):
    """One service of the stack; ``components`` are the names of its processes."""

    name: str
    components: tuple[str, ...]

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.home = settings.home / self.name

    @property
    @abstractmethod
    def ports(self) -> tuple[int, ...]: ...

    @abstractmethod
    def prepare(self) -> list[ProcessSpec]:
        """Install and configure (idempotently); return the processes to start."""

    @abstractmethod
    def ready(self) -> bool:
        """True once the service answers real requests."""

    @abstractmethod
    def version(self) -> str: ...

    def configure(self) -> None:  # noqa: B027 - optional hook, most services need nothing
        """Run once the service is ready (every `stack up`); idempotent. Default: nothing."""


class KafkaService(Service):
    name = "kafka"
    components = ("kafka",)

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.kafka_port, self.settings.stack_kafka_controller_port)

    @property
    def broker_secret_file(self) -> Path:
        """The broker's own SCRAM password, generated when the storage is formatted."""
        return self.home / "broker.secret"

    def prepare(self) -> list[ProcessSpec]:
        s = self.settings
        lib = install_jars("kafka", "kafka.version", s.stack_kafka_version, s.home / "cache")
        data = self.home / "data"
        log4j = _write(self.home / "config" / "log4j2.properties",
                       (CONF_DIR / "kafka-log4j2.properties").read_text())
        jvm = [_java(), f"-Xms{s.stack_kafka_heap}", f"-Xmx{s.stack_kafka_heap}", "-server",
               "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
               "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{lib}/*"]
        formatted = (data / "meta.properties").exists()
        if s.stack_auth and formatted and not self.broker_secret_file.exists():
            raise StackError(
                f"the Kafka storage in {data} was formatted before streamfit created a broker "
                "user, so STREAMFIT_STACK_AUTH cannot be turned on for it. Stop the stack and "
                f"remove {self.home} (its topics are lost), or use a fresh STREAMFIT_HOME")
        props = self._write_properties(data)
        if not formatted:
            self._format(jvm, props)
        return [ProcessSpec("kafka", [*jvm, "kafka.Kafka", str(props)], ports=self.ports)]

    def _write_properties(self, data: Path) -> Path:
        s = self.settings
        sasl = ""
        if s.stack_auth:
            # The broker logs in to itself as its own user; clients log in as theirs (configure()).
            secret = self.broker_secret()
            sasl = (
                "# SASL/SCRAM on the client listener (STREAMFIT_STACK_AUTH=true).\n"
                "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512\n"
                f"sasl.mechanism.inter.broker.protocol={s.kafka_sasl_mechanism}\n"
            ) + "".join(
                f"listener.name.sasl_plaintext.{mech}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{KAFKA_BROKER_USER}" password="{secret}";\n'
                for mech in ("scram-sha-256", "scram-sha-512"))
        # private: it may hold the broker's password
        return _write_private(self.home / "config" / "server.properties", _render(
            "kafka-server.properties", port=s.kafka_port, controller_port=s.stack_kafka_controller_port,
            data_dir=data, protocol="SASL_PLAINTEXT" if s.stack_auth else "PLAINTEXT", sasl=sasl))

    def broker_secret(self) -> str:
        path = self.broker_secret_file
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(24) + "\n")
        return path.read_text().strip()

    def _format(self, jvm: list[str], props: Path) -> None:
        """Format the KRaft storage once, with a cluster id generated and kept for this home.

        The broker's own SCRAM user is always created: a home formatted in plaintext mode can
        later run with STREAMFIT_STACK_AUTH=true (SCRAM users live in the metadata log, and only
        a user that already exists can create others).
        """
        id_file = self.home / "cluster.id"
        if not id_file.exists():
            # URL-safe base64 of 16 random bytes, unpadded; a leading '-' would read as an option.
            while True:
                cluster_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
                if not cluster_id.startswith("-"):
                    break
            _write(id_file, cluster_id + "\n")
        cluster_id = id_file.read_text().strip()
        scram = [f"--add-scram={mech}=[name={KAFKA_BROKER_USER},password={self.broker_secret()}]"
                 for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512")]
        cmd = [*jvm, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
               "-c", str(props), "--ignore-formatted", *scram]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{proc.stdout}{proc.stderr}")

    def _broker_settings(self) -> StackSettings:
        """Settings that log in as the broker's own user (before the client user exists)."""
        if not self.settings.stack_auth:
            return self.settings
        return self.settings.model_copy(update={
            "kafka_username": KAFKA_BROKER_USER, "kafka_password": SecretStr(self.broker_secret())})

    def ready(self) -> bool:
        if not port_open(self.settings.kafka_port):
            return False
        from streamfit.kafka import admin  # local: keeps `streamfit --help` fast

        client = admin(self._broker_settings(), request_timeout_ms=5000)
        try:
            return bool(client.describe_cluster().get("brokers"))
        finally:
            client.close()

    def configure(self) -> None:
        """With STREAMFIT_STACK_AUTH: create (or update the password of) the client's user."""
        s = self.settings
        if not s.stack_auth or not (s.kafka_username and s.kafka_password):
            return
        from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

        from streamfit.kafka import admin

        mechanism = ScramMechanism[s.kafka_sasl_mechanism.replace("-", "_")]
        client = admin(self._broker_settings())
        try:
            errors = client.alter_user_scram_credentials([UserScramCredentialUpsertion(
                s.kafka_username, mechanism, s.kafka_password.get_secret_value())])
        finally:
            client.close()
        if errors.get(s.kafka_username):
            raise StackError(f"creating Kafka user {s.kafka_username!r} failed: "
                             f"{errors[s.kafka_username]}")

    def version(self) -> str:
        return self.settings.stack_kafka_version


class CassandraService(Service):
    name = "cassandra"
    components = ("cassandra",)

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.cassandra_port, self.settings.stack_cassandra_storage_port)

    def prepare(self) -> list[ProcessSpec]:
        s = self.settings
        lib = install_jars("cassandra", "cassandra.version", s.stack_cassandra_version, s.home / "cache")
        data = self.home / "data"
        auth = s.stack_auth
        yaml = _write(self.home / "conf" / "cassandra.yaml", _render(
            "cassandra.yaml", storage_port=s.stack_cassandra_storage_port, native_port=s.cassandra_port,
            data_dir=data,
            authenticator="PasswordAuthenticator" if auth else "AllowAllAuthenticator",
            authorizer="CassandraAuthorizer" if auth else "AllowAllAuthorizer"))
        logback = _write(self.home / "conf" / "logback.xml",
                         (CONF_DIR / "cassandra-logback.xml").read_text())
        jamm = next(lib.glob("jamm-*.jar"), None)
        argv = [
            _java(), f"-Xms{s.stack_cassandra_heap}", f"-Xmx{s.stack_cassandra_heap}", "-Xss256k",
            "-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1",
            "-XX:G1RSetUpdatingPauseTimePercent=5", "-XX:MaxGCPauseMillis=300",
            "-XX:+AlwaysPreTouch", "-XX:+HeapDumpOnOutOfMemoryError",
            *CASSANDRA_JDK17_FLAGS,
            *([f"-javaagent:{jamm}"] if jamm else []),
            "-Djava.net.preferIPv4Stack=true",
            f"-Dcassandra.config=file://{yaml}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.storagedir={data}",
            f"-Dcassandra.logdir={s.home / 'logs'}",
            f"-Dlogback.configurationFile={logback}",
            # single node: no gossip to settle, no saved ring, no wait before creating roles
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.load_ring_state=false",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-cp", f"{lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]
        return [ProcessSpec("cassandra", argv, ports=self.ports)]

    def _query_local(self, settings: StackSettings | None = None) -> tuple[str, str] | None:
        from streamfit.cassandra import connect

        logging.getLogger("cassandra").setLevel(logging.CRITICAL)  # retries are expected here
        with connect(settings or self.settings, keyspace=None, connect_timeout=3) as session:
            row = session.execute("SELECT bootstrapped, release_version FROM system.local").one()
        return (row.bootstrapped, row.release_version) if row else None

    def ready(self) -> bool:
        if not port_open(self.settings.cassandra_port):
            return False
        from streamfit.cassandra import CassandraAuthError

        try:
            local = self._query_local()
        except CassandraAuthError as exc:
            if not self.settings.stack_auth or self.users_file.exists():
                raise StackError(str(exc)) from None  # waiting will not fix a wrong password
            # First start with logins on: our user does not exist yet. Cassandra creates the
            # default superuser shortly after the port opens; the bootstrap logs in as it once.
            with contextlib.suppress(CassandraAuthError):  # the default user is not there yet
                self._bootstrap_user()
            return False
        return local is not None and local[0] == "COMPLETED"

    @property
    def users_file(self) -> Path:
        """Written once the stack's Cassandra user exists (then a refused login is final)."""
        return self.home / "users.created"

    def _bootstrap_user(self) -> None:
        """Log in as the default superuser once and create the configured user, a superuser.

        Runs only while the configured login is refused and before ``configure()`` disabled the
        default user; after that a refused login is final (see ``ready``).
        """
        from streamfit.cassandra import connect

        s = self.settings
        assert s.cassandra_username and s.cassandra_password  # checked by Settings
        default = s.model_copy(update={"cassandra_username": "cassandra",
                                       "cassandra_password": SecretStr("cassandra")})
        role = _quote_identifier(s.cassandra_username)
        with connect(default, keyspace=None, connect_timeout=3) as session:
            exists = session.execute("SELECT role FROM system_auth.roles WHERE role = %s",
                                     (s.cassandra_username,)).one()
            session.execute(f"{'ALTER' if exists else 'CREATE'} ROLE {role} WITH PASSWORD = %s "
                            "AND LOGIN = true AND SUPERUSER = true",
                            (s.cassandra_password.get_secret_value(),))
        log.info("created Cassandra user %s", s.cassandra_username)

    def configure(self) -> None:
        """With STREAMFIT_STACK_AUTH: disable the well-known default superuser (cassandra/
        cassandra), as the configured user; a superuser cannot demote itself."""
        s = self.settings
        if not s.stack_auth:
            return
        from streamfit.cassandra import connect

        with connect(s, keyspace=None) as session:
            default = session.execute(
                "SELECT can_login FROM system_auth.roles WHERE role = 'cassandra'").one()
            if s.cassandra_username != "cassandra" and default and default.can_login:
                session.execute("ALTER ROLE cassandra WITH SUPERUSER = false AND LOGIN = false")
                log.info("disabled Cassandra's default superuser")
        _write(self.users_file, f"{s.cassandra_username}\n")

    def version(self) -> str:
        local = self._query_local()
        return local[1] if local else "?"


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class AirflowService(Service):
    name = "airflow"
    components = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
                  "airflow-triggerer")

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.airflow_port,)

    @property
    def password_file(self) -> Path:
        return self.home / "passwords.json"

    def password(self) -> str | None:
        return airflow_password(self.settings)

    def _secrets(self) -> dict[str, str]:
        """Keys every Airflow component must share (a per-process random JWT key breaks tasks)."""
        path = self.home / "secrets.json"
        if not path.exists():
            from cryptography.fernet import Fernet

            _write_private(path, json.dumps({
                "jwt_secret": secrets.token_urlsafe(32),
                "api_secret_key": secrets.token_urlsafe(32),
                "fernet_key": Fernet.generate_key().decode(),
            }))
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def env(self) -> dict[str, str]:
        """The environment of every Airflow process (and of `airflow` CLI calls in tests)."""
        s = self.settings
        keys = self._secrets()
        db = s.stack_airflow_database_url or f"sqlite:///{self.home / 'airflow.db'}"
        base = f"http://127.0.0.1:{s.airflow_port}"
        venv_bin = str(Path(sys.executable).parent)
        return {
            "AIRFLOW_HOME": str(self.home),
            # Airflow's subprocesses call `airflow` by name.
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(s.stack_airflow_parallelism),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(s.airflow_port),
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API__WORKERS": "1",
            # Must match the API port, or every task fails with "Connection refused".
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{s.airflow_username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.password_file),
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            # New DAG files and asset changes are picked up within seconds, not minutes.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # A task left "running" by a stopped stack blocks its DAG (max_active_runs=1) until
            # the scheduler declares it dead: after one minute here, not the default five.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **self._credentials_env(),
        }

    def _credentials_env(self) -> dict[str, str]:
        """The logins DAG tasks need, from the settings `stack up` ran with (which may come from
        a .env file the tasks would not see: they run in the Airflow home)."""
        s = self.settings
        env: dict[str, str] = {"STREAMFIT_KAFKA_SASL_MECHANISM": s.kafka_sasl_mechanism}
        # the engine the tasks run feature builds and scoring on, and where its jobs go
        env.update({k: v for k, v in s.as_env().items()
                    if k == "STREAMFIT_ENGINE" or k.startswith("STREAMFIT_SPARK_")})
        for service in ("cassandra", "kafka"):
            user, password = getattr(s, f"{service}_username"), getattr(s, f"{service}_password")
            if user and password:
                env[f"STREAMFIT_{service.upper()}_USERNAME"] = user
                env[f"STREAMFIT_{service.upper()}_PASSWORD"] = password.get_secret_value()
        return env

    def prepare(self) -> list[ProcessSpec]:
        s = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            password = (s.airflow_password.get_secret_value() if s.airflow_password
                        else secrets.token_urlsafe(12))
            _write_private(self.password_file, json.dumps({s.airflow_username: password}))
        env = self.env()
        airflow = str(Path(sys.executable).parent / "airflow")
        log = s.home / "logs" / "airflow-db-migrate.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as fh:
            proc = subprocess.run([airflow, "db", "migrate"], env={**os.environ, **env},  # noqa: S603
                                  stdout=fh, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            raise StackError(f"`airflow db migrate` failed (exit {proc.returncode}); see {log}")
        return [
            ProcessSpec("airflow-api-server", [airflow, "api-server", "--host", "127.0.0.1",
                                               "--port", str(s.airflow_port), "--workers", "1"],
                        ports=self.ports, env=env, cwd=self.home),
            ProcessSpec("airflow-scheduler", [airflow, "scheduler"], env=env, cwd=self.home),
            ProcessSpec("airflow-dag-processor", [airflow, "dag-processor"], env=env,
                        cwd=self.home),
            ProcessSpec("airflow-triggerer", [airflow, "triggerer"], env=env, cwd=self.home),
        ]

    def client(self) -> AirflowClient:
        return airflow_client(self.settings)

    def ready(self) -> bool:
        if not port_open(self.settings.airflow_port):
            return False
        with self.client() as client:
            return client.healthy()

    def version(self) -> str:
        with self.client() as client:
            return client.version()


def install_connector(settings: StackSettings) -> Path:
    """The Spark Cassandra Connector's jars, from Maven Central into the jar cache (once per
    version): what ``STREAMFIT_ENGINE=spark`` jobs load, wherever their master runs."""
    if settings.spark_jars_dir is not None:
        return settings.spark_jars_dir
    return install_jars("spark-cassandra-connector", "connector.version",
                        settings.spark_connector_version, settings.home / "cache")


class SparkService(Service):
    """A Spark standalone master and one worker (``STREAMFIT_STACK_SPARK=true``), run from
    pyspark's own distribution; jobs reach it as ``spark://127.0.0.1:<stack_spark_master_port>``."""

    name = "spark"
    components = ("spark-master", "spark-worker")

    @property
    def ports(self) -> tuple[int, ...]:
        s = self.settings
        return (s.stack_spark_master_port, s.stack_spark_master_ui_port, s.stack_spark_worker_ui_port)

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.settings.stack_spark_master_port}"

    def prepare(self) -> list[ProcessSpec]:
        from streamfit.spark import spark_home

        s = self.settings
        install_connector(s)
        home = spark_home()
        spark_class = str(home / "bin" / "spark-class")
        env = {"SPARK_HOME": str(home), "SPARK_DAEMON_MEMORY": "256m",
               "SPARK_LOG_DIR": str(s.home / "logs"), "SPARK_LOCAL_IP": "127.0.0.1",
               # executors run Python workers with this venv's interpreter and packages
               "PYSPARK_PYTHON": sys.executable}
        work = self.home / "work"
        work.mkdir(parents=True, exist_ok=True)
        return [
            ProcessSpec("spark-master", [
                spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                "--port", str(s.stack_spark_master_port), "--webui-port", str(s.stack_spark_master_ui_port)],
                ports=(s.stack_spark_master_port, s.stack_spark_master_ui_port), env=env, cwd=self.home),
            ProcessSpec("spark-worker", [
                spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                "--webui-port", str(s.stack_spark_worker_ui_port), "--cores",
                str(s.stack_spark_worker_cores), "--memory", s.stack_spark_worker_memory,
                "--work-dir", str(work), self.master_url],
                ports=(s.stack_spark_worker_ui_port,), env=env, cwd=self.home),
        ]

    def ready(self) -> bool:
        """The master answers and has a live worker."""
        import httpx

        if not port_open(self.settings.stack_spark_master_port):
            return False
        try:
            state = httpx.get(f"http://127.0.0.1:{self.settings.stack_spark_master_ui_port}/json/",
                              timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        return any(w.get("state") == "ALIVE" for w in state.get("workers", []))

    def version(self) -> str:
        from importlib.metadata import version

        return version("pyspark")


def all_services(settings: StackSettings) -> dict[str, Service]:
    # Cassandra first: it boots slowest, so it gets the head start.
    return {svc.name: svc for svc in (CassandraService(settings), KafkaService(settings),
                                      AirflowService(settings), SparkService(settings))}

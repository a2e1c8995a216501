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
import shutil
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from string import Template

from pydantic import SecretStr

from app.stack.maven import install_jars
from app.stack.process import ProcessSpec, StackError, port_open
from app.stack.settings import KAFKA_BROKER_USER, TLS_DIR, StackSettings
from streamfit.airflow_api import AirflowClient, airflow_client, airflow_password
from streamfit.settings import PLACEMENT_FIELDS, PROJECT_ROOT, SECURITY_FIELDS

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


# Durability of the single node: periodic fsync every 10 s, upstream's default. A write is
# acknowledged once it is in the commit log's memory map; a SIGKILLed node replays what its last
# marker (written every 100 ms) covers, and a power loss can cost the last 10 s.
SINGLE_COMMITLOG = """\
# Durability: periodic fsync every 10 s like upstream's default; writes are acknowledged once in
# the commit log buffer, which the single-node demo accepts (replicas would cover this in a cluster).
commitlog_sync: periodic
commitlog_sync_period: 10000ms"""
# A cluster node acknowledges a write only once its commit log is on disk (batch mode: each sync
# covers every write waiting for it; fsync takes about 0.3 ms on this machine). With periodic sync
# a node SIGKILLed mid-stream lost the writes it had acknowledged in its last moments (15 events
# in one CI run): no hint covers those, since the node had answered, and only a repair brings
# them back. With batch, hints alone make a restarted node whole.
CLUSTER_COMMITLOG = """\
# Durability: a write is acknowledged once it is fsynced to the commit log (batch mode), so a
# killed node has every write it acknowledged, and hints bring it the rest.
commitlog_sync: batch"""


def _jaas_quoted(value: str) -> str:
    """``value`` inside a JAAS option's double quotes (Kafka's parser reads backslash escapes)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _tls_material(s: StackSettings, node: Node) -> tuple[Path, Path]:
    """The stack's CA and ``node``'s PEM key store (made on first use; see app.stack.tls)."""
    from app.stack.tls import local_ca, server_keystore

    tls_dir = s.home / TLS_DIR
    ca = local_ca(tls_dir)
    return ca.cert, server_keystore(ca, tls_dir, node.component,
                                    sorted({node.address, "127.0.0.1", "localhost"}))


def _render(template: str, **values: object) -> str:
    return Template((CONF_DIR / template).read_text()).substitute(
        {k: str(v) for k, v in values.items()}
    )


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home) / "bin" / "java") if java_home else "java"


@dataclass(frozen=True)
class Node:
    """One Cassandra node or Kafka broker: its number, the address it listens on, its files."""

    number: int
    address: str
    home: Path
    component: str


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

    def endpoints(self) -> list[tuple[str, int]]:
        """Every (address, port) the service listens on: all must be free before it starts."""
        return [("127.0.0.1", port) for port in self.ports]

    def component_ports(self, component: str) -> list[str]:
        """What ``stack status`` shows as the ports of ``component``."""
        return [str(p) for p in self.ports] if component == self.components[0] else []

    @abstractmethod
    def prepare(self) -> list[ProcessSpec]:
        """Install and configure (idempotently); return the processes to start."""

    @abstractmethod
    def ready(self) -> bool:
        """True once the service answers real requests."""

    def health(self) -> dict[str, bool]:
        """Whether each component answers (default: all as the service does)."""
        ok = bool(self.ready())
        return dict.fromkeys(self.components, ok)

    @abstractmethod
    def version(self) -> str: ...

    def configure(self) -> None:  # noqa: B027 - optional hook, most services need nothing
        """Run once the service is ready (every `stack up`); idempotent. Default: nothing."""


class NodeService(Service):
    """A service of one node, or of ``STREAMFIT_STACK_CLUSTER_SIZE`` nodes in the cluster
    topology (node i on ``<block>.i``, every node with the same ports, as ccm lays them out)."""

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings)
        if settings.cluster:
            base = settings.home / "cluster" / self.name
            self.nodes = [Node(i, address, base / f"node{i}", f"{self.name}-{i}")
                          for i, address in enumerate(settings.node_addresses, start=1)]
            self.base = base
        else:
            self.nodes = [Node(1, "127.0.0.1", self.home, self.name)]
            self.base = self.home
        self.components = tuple(node.component for node in self.nodes)

    def endpoints(self) -> list[tuple[str, int]]:
        return [(node.address, port) for node in self.nodes for port in self.ports]

    def component_ports(self, component: str) -> list[str]:
        node = next(n for n in self.nodes if n.component == component)
        if not self.settings.cluster:
            return [str(p) for p in self.ports]
        return [f"{node.address}:{p}" for p in self.ports]

    def node(self, component: str) -> Node:
        return next(n for n in self.nodes if n.component == component)


def _kafka_uuid() -> str:
    """A Kafka Uuid (cluster and directory ids): URL-safe base64 of 16 random bytes, unpadded;
    never with a leading '-', which a command line would read as an option."""
    while True:
        value = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not value.startswith("-"):
            return value


class KafkaService(NodeService):
    name = "kafka"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.kafka_port, self.settings.stack_kafka_controller_port)

    @property
    def broker_secret_file(self) -> Path:
        """The brokers' own SCRAM password, generated when the storage is formatted."""
        return self.base / "broker.secret"

    def _jvm(self, node: Node, lib: Path) -> list[str]:
        s = self.settings
        log4j = _write(node.home / "config" / "log4j2.properties",
                       (CONF_DIR / "kafka-log4j2.properties").read_text())
        return [_java(), f"-Xms{s.kafka_heap}", f"-Xmx{s.kafka_heap}", "-server",
                "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{lib}/*"]

    def prepare(self) -> list[ProcessSpec]:
        s = self.settings
        lib = install_jars("kafka", "kafka.version", s.stack_kafka_version, s.home / "cache")
        specs = []
        for node in self.nodes:
            data = node.home / "data"
            jvm = self._jvm(node, lib)
            formatted = (data / "meta.properties").exists()
            if self.settings.stack_auth and formatted and not self.broker_secret_file.exists():
                raise StackError(
                    f"the Kafka storage in {data} was formatted before streamfit created a "
                    "broker user, so STREAMFIT_STACK_AUTH cannot be turned on for it. Stop the "
                    f"stack and remove {self.base} (its topics are lost), or use a fresh "
                    "STREAMFIT_HOME")
            props = self._write_properties(node, data)
            if not formatted:
                self._format(jvm, props, node)
            specs.append(ProcessSpec(node.component, [*jvm, "kafka.Kafka", str(props)],
                                     ports=self.ports, host=node.address))
        return specs

    def _write_properties(self, node: Node, data: Path) -> Path:
        s = self.settings
        protocol = ("SASL_" if s.stack_auth else "") + ("SSL" if s.stack_tls else "PLAINTEXT")
        sasl = ""
        if s.stack_auth:
            # The brokers log in as their own user; clients log in as theirs (configure()).
            secret = self.broker_secret()
            # PLAIN too over TLS (Confluent Cloud's mechanism), for the client's user only: it
            # sends the password itself, so never on a plaintext listener.
            plain = s.stack_tls and s.kafka_username and s.kafka_password
            sasl = (
                "# SASL/SCRAM on the client listener (STREAMFIT_STACK_AUTH=true).\n"
                f"sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512{',PLAIN' if plain else ''}\n"
                f"sasl.mechanism.inter.broker.protocol={self.broker_mechanism}\n"
            ) + "".join(
                f"listener.name.{protocol.lower()}.{mech}.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{KAFKA_BROKER_USER}" password="{secret}";\n'
                for mech in ("scram-sha-256", "scram-sha-512"))
            if plain and s.kafka_username and s.kafka_password:
                sasl += (f"listener.name.{protocol.lower()}.plain.sasl.jaas.config="
                         "org.apache.kafka.common.security.plain.PlainLoginModule required "
                         f'user_{s.kafka_username}="'
                         f'{_jaas_quoted(s.kafka_password.get_secret_value())}";\n')
        # the controllers' own listener: TLS too between the cluster's nodes
        controller = "SSL" if s.stack_tls and s.cluster else "PLAINTEXT"
        if s.stack_tls:
            ca, keystore = _tls_material(s, node)
            sasl += (
                "# TLS (STREAMFIT_STACK_TLS=true): PEM key and trust stores from the stack's CA.\n"
                f"ssl.keystore.type=PEM\nssl.keystore.location={keystore}\n"
                f"ssl.truststore.type=PEM\nssl.truststore.location={ca}\n"
                "ssl.client.auth=none\nssl.endpoint.identification.algorithm=https\n")
        rf = min(3, len(self.nodes))
        # private: it may hold the broker's password
        return _write_private(node.home / "config" / "server.properties", _render(
            "kafka-server.properties", node_id=node.number, host=node.address,
            port=s.kafka_port, controller_port=s.stack_kafka_controller_port,
            controller_bootstrap=",".join(f"{n.address}:{s.stack_kafka_controller_port}"
                                          for n in self.nodes),
            data_dir=data, protocol=protocol, sasl=sasl, controller_protocol=controller,
            rf=rf, min_isr=2 if rf >= 3 else 1))

    @property
    def broker_mechanism(self) -> str:
        """The brokers' own SASL mechanism: the clients' when it is SCRAM (their user is SCRAM)."""
        mechanism = self.settings.kafka_sasl_mechanism
        return mechanism if mechanism.startswith("SCRAM") else "SCRAM-SHA-512"

    def broker_secret(self) -> str:
        path = self.broker_secret_file
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(24) + "\n")
        return path.read_text().strip()

    def _ids(self) -> dict[str, str]:
        """The cluster id and each node's metadata directory id, generated once for this home."""
        path = self.base / "ids.json"
        legacy = self.base / "cluster.id"  # the single node's, before the cluster topology
        if not path.exists():
            ids = {"cluster": legacy.read_text().strip() if legacy.exists() else _kafka_uuid()}
            ids.update({str(n.number): _kafka_uuid() for n in self.nodes})
            _write(path, json.dumps(ids))
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def _format(self, jvm: list[str], props: Path, node: Node) -> None:
        """Format the node's KRaft storage once. A single node is its own quorum
        (``--standalone``); cluster nodes all get the same ``--initial-controllers``.

        The brokers' own SCRAM user is always created: a home formatted in plaintext mode can
        later run with STREAMFIT_STACK_AUTH=true (SCRAM users live in the metadata log, and only
        a user that already exists can create others).
        """
        s = self.settings
        ids = self._ids()
        if s.cluster:
            quorum = ["--initial-controllers", ",".join(
                f"{n.number}@{n.address}:{s.stack_kafka_controller_port}:{ids[str(n.number)]}"
                for n in self.nodes)]
        else:
            quorum = ["--standalone"]
        scram = [f"--add-scram={mech}=[name={KAFKA_BROKER_USER},password={self.broker_secret()}]"
                 for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512")]
        cmd = [*jvm, "kafka.tools.StorageTool", "format", *quorum, "-t", ids["cluster"],
               "-c", str(props), "--ignore-formatted", *scram]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage of {node.component} failed:\n"
                             f"{proc.stdout}{proc.stderr}")

    def _broker_settings(self) -> StackSettings:
        """Settings that log in as the brokers' own user (before the client user exists)."""
        if not self.settings.stack_auth:
            return self.settings
        return self.settings.model_copy(update={
            "kafka_username": KAFKA_BROKER_USER, "kafka_password": SecretStr(self.broker_secret()),
            "kafka_sasl_mechanism": self.broker_mechanism})

    def _live_brokers(self) -> set[int]:
        from streamfit.kafka import admin  # local: keeps `streamfit --help` fast

        client = admin(self._broker_settings(), request_timeout_ms=5000)
        try:
            return {int(b["broker_id"]) for b in client.describe_cluster().get("brokers", [])}
        finally:
            client.close()

    def ready(self) -> bool:
        if not all(port_open(self.settings.kafka_port, n.address) for n in self.nodes):
            return False
        return self._live_brokers() >= {n.number for n in self.nodes}

    def health(self) -> dict[str, bool]:
        try:
            live = self._live_brokers()
        except Exception:  # noqa: BLE001 - no broker answers: none is healthy
            live = set()
        return {n.component: n.number in live and port_open(self.settings.kafka_port, n.address)
                for n in self.nodes}

    def configure(self) -> None:
        """With STREAMFIT_STACK_AUTH: create (or update the password of) the client's user."""
        s = self.settings
        if not s.stack_auth or not (s.kafka_username and s.kafka_password):
            return
        from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

        from streamfit.kafka import admin

        # a SCRAM user with PLAIN too (its PLAIN password is in the brokers' JAAS settings)
        mechanism = ScramMechanism[self.broker_mechanism.replace("-", "_")]
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


class CassandraService(NodeService):
    name = "cassandra"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.cassandra_port, self.settings.stack_cassandra_storage_port)

    def prepare(self) -> list[ProcessSpec]:
        s = self.settings
        lib = install_jars("cassandra", "cassandra.version", s.stack_cassandra_version, s.home / "cache")
        specs = []
        for node in self.nodes:
            data = node.home / "data"
            yaml = self._write_yaml(node, data)
            logback = _write(node.home / "conf" / "logback.xml",
                             (CONF_DIR / "cassandra-logback.xml").read_text())
            jamm = next(lib.glob("jamm-*.jar"), None)
            logdir = s.home / "logs" / node.component if s.cluster else s.home / "logs"
            argv = [
                _java(), f"-Xms{s.cassandra_heap}", f"-Xmx{s.cassandra_heap}", "-Xss256k",
                "-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1",
                "-XX:G1RSetUpdatingPauseTimePercent=5", "-XX:MaxGCPauseMillis=300",
                "-XX:+AlwaysPreTouch", "-XX:+HeapDumpOnOutOfMemoryError",
                *CASSANDRA_JDK17_FLAGS,
                *([f"-javaagent:{jamm}"] if jamm else []),
                "-Djava.net.preferIPv4Stack=true",
                f"-Dcassandra.config=file://{yaml}",
                "-Dcassandra-foreground=yes",
                f"-Dcassandra.storagedir={data}",
                f"-Dcassandra.logdir={logdir}",
                f"-Dlogback.configurationFile={logback}",
                # no wait for gossip to settle, no saved ring (every node is a seed and learns
                # the ring from the others), no wait before creating roles
                "-Dcassandra.skip_wait_for_gossip_to_settle=0",
                "-Dcassandra.load_ring_state=false",
                "-Dcassandra.superuser_setup_delay_ms=0",
                "-cp", f"{lib}/*",
                "org.apache.cassandra.service.CassandraDaemon",
            ]
            specs.append(ProcessSpec(node.component, argv, ports=self.ports, host=node.address))
        return specs

    def _write_yaml(self, node: Node, data: Path) -> Path:
        s = self.settings
        auth = s.stack_auth
        seeds = ",".join(f"{n.address}:{s.stack_cassandra_storage_port}" for n in self.nodes)
        # balanced tokens, one per node (ccm's layout); a fresh ring of seeds needs no bootstrap
        # streaming
        token = (node.number - 1) * (2**64 // len(self.nodes)) - 2**63 if s.cluster else 0
        return _write(node.home / "conf" / "cassandra.yaml", _render(
            "cassandra.yaml", storage_port=s.stack_cassandra_storage_port,
            native_port=s.cassandra_port, data_dir=data, address=node.address, seeds=seeds,
            initial_token=token, cluster="auto_bootstrap: false" if s.cluster else "",
            authenticator="PasswordAuthenticator" if auth else "AllowAllAuthenticator",
            authorizer="CassandraAuthorizer" if auth else "AllowAllAuthorizer",
            commitlog=CLUSTER_COMMITLOG if s.cluster else SINGLE_COMMITLOG,
            encryption=self._encryption(node)))

    def _encryption(self, node: Node) -> str:
        """With STREAMFIT_STACK_TLS: clients must use TLS; in the cluster, the nodes encrypt
        what they send each other too (and check each other's certificates)."""
        s = self.settings
        if not s.stack_tls:
            return ""
        ca, keystore = _tls_material(s, node)
        stores = ("  ssl_context_factory:\n"
                  "    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory\n"
                  f"  keystore: {keystore}\n  truststore: {ca}\n")
        out = ("# TLS (STREAMFIT_STACK_TLS=true): PEM stores from the stack's CA.\n"
               "client_encryption_options:\n  enabled: true\n  optional: false\n"
               "  require_client_auth: false\n" + stores)
        if s.cluster:
            out += ("server_encryption_options:\n  internode_encryption: all\n"
                    "  require_client_auth: true\n  require_endpoint_verification: true\n"
                    + stores)
        return out

    def _query_local(self, settings: StackSettings | None = None) -> dict[str, tuple[str, str]]:
        """Each answering node's (bootstrapped, release_version), by address."""
        from streamfit.cassandra import connect

        logging.getLogger("cassandra").setLevel(logging.CRITICAL)  # retries are expected here
        out: dict[str, tuple[str, str]] = {}
        wanted = {n.address for n in self.nodes}
        with connect(settings or self.settings, keyspace=None, connect_timeout=3) as session:
            # The driver opens its pools to the other nodes in the background: a node it has
            # not reached yet is asked again for a few seconds before it counts as not answering.
            deadline = time.monotonic() + 8
            while True:
                for host in session.cluster.metadata.all_hosts():
                    if host.address in out or not host.is_up:
                        continue
                    try:
                        row = session.execute("SELECT bootstrapped, release_version FROM "
                                              "system.local", host=host).one()
                    except Exception as exc:  # noqa: BLE001 - its pool may still be opening
                        log.debug("Cassandra node %s: %s", host.address, exc)
                        continue
                    if row:
                        out[host.address] = (row.bootstrapped, row.release_version)
                if wanted <= out.keys() or time.monotonic() > deadline:
                    return out
                time.sleep(0.5)

    def ready(self) -> bool:
        if not all(port_open(self.settings.cassandra_port, n.address) for n in self.nodes):
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
        return all(local.get(n.address, ("",))[0] == "COMPLETED" for n in self.nodes)

    def health(self) -> dict[str, bool]:
        local: dict[str, tuple[str, str]] = {}
        for _attempt in range(3):  # one slow connection attempt is not a node down
            try:
                local = self._query_local()
            except Exception as exc:  # noqa: BLE001 - no node answers: none is healthy
                log.debug("Cassandra health check: %s: %s", type(exc).__name__, exc)
                local = {}
            if all(local.get(n.address, ("",))[0] == "COMPLETED" for n in self.nodes):
                break
        self._seen = local
        return {n.component: local.get(n.address, ("",))[0] == "COMPLETED" for n in self.nodes}

    @property
    def users_file(self) -> Path:
        """Written once the stack's Cassandra user exists (then a refused login is final)."""
        return self.base / "users.created"

    def _bootstrap_user(self) -> None:
        """Log in as the default superuser once and create the configured user, a superuser.

        Runs only while the configured login is refused and before ``configure()`` disabled the
        default user; after that a refused login is final (see ``ready``). In the cluster
        topology ``system_auth`` is raised to 3 replicas first, so that the new role is written
        to every replica (a role kept on one node would be lost with it).
        """
        from streamfit.cassandra import connect

        s = self.settings
        assert s.cassandra_username and s.cassandra_password  # checked by Settings
        default = s.model_copy(update={"cassandra_username": "cassandra",
                                       "cassandra_password": SecretStr("cassandra")})
        role = _quote_identifier(s.cassandra_username)
        with connect(default, keyspace=None, connect_timeout=3) as session:
            if s.cluster:
                session.execute(f"ALTER KEYSPACE system_auth WITH replication = "
                                f"{s.replication_cql()}")
            exists = session.execute("SELECT role FROM system_auth.roles WHERE role = %s",
                                     (s.cassandra_username,)).one()
            session.execute(f"{'ALTER' if exists else 'CREATE'} ROLE {role} WITH PASSWORD = %s "
                            "AND LOGIN = true AND SUPERUSER = true",
                            (s.cassandra_password.get_secret_value(),))
        log.info("created Cassandra user %s", s.cassandra_username)

    def configure(self) -> None:
        """With STREAMFIT_STACK_AUTH: disable the well-known default superuser (cassandra/
        cassandra), as the configured user; a superuser cannot demote itself. In the cluster
        topology, keep ``system_auth`` at the keyspaces' replication."""
        s = self.settings
        if not s.stack_auth:
            return
        from streamfit.cassandra import connect

        with connect(s, keyspace=None) as session:
            if s.cluster:
                session.execute(f"ALTER KEYSPACE system_auth WITH replication = "
                                f"{s.replication_cql()}")
            default = session.execute(
                "SELECT can_login FROM system_auth.roles WHERE role = 'cassandra'").one()
            if s.cassandra_username != "cassandra" and default and default.can_login:
                session.execute("ALTER ROLE cassandra WITH SUPERUSER = false AND LOGIN = false")
                log.info("disabled Cassandra's default superuser")
        _write(self.users_file, f"{s.cassandra_username}\n")

    def version(self) -> str:
        local = getattr(self, "_seen", None) or self._query_local()
        return next(iter(local.values()))[1] if local else "?"


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class AirflowService(Service):
    """Airflow 3: API server, scheduler, DAG processor and triggerer, running tasks with the
    LocalExecutor; in the cluster topology with the CeleryExecutor instead, Redis as its broker
    and ``STREAMFIT_STACK_CELERY_WORKERS`` workers as separate processes (what Airflow's own
    compose file and Helm chart run)."""

    name = "airflow"
    CORE = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer")

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings)
        self.workers = ([f"airflow-celery-{i}" for i in range(1, settings.stack_celery_workers + 1)]
                        if settings.cluster else [])
        # Redis first: the scheduler and the workers connect to it at start
        self.components = (*(("redis",) if settings.cluster else ()), *self.CORE, *self.workers)

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.airflow_port,)

    def endpoints(self) -> list[tuple[str, int]]:
        extra = [("127.0.0.1", self.settings.stack_redis_port)] if self.settings.cluster else []
        return [*super().endpoints(), *extra]

    def component_ports(self, component: str) -> list[str]:
        if component == "redis":
            return [str(self.settings.stack_redis_port)]
        return [str(self.settings.airflow_port)] if component == "airflow-api-server" else []

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.settings.stack_redis_port}/0"

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
        base = s.airflow_api_url
        venv_bin = str(Path(sys.executable).parent)
        return {
            "AIRFLOW_HOME": str(self.home),
            # Airflow's subprocesses call `airflow` by name.
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if s.cluster else "LocalExecutor",
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
            **self._celery_env(),
            **self._tls_env(),
            **self._credentials_env(),
        }

    def _celery_env(self) -> dict[str, str]:
        if not self.settings.cluster:
            return {}
        return {
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            # results in Redis too: SQLite is for one writer, and the workers are several
            "AIRFLOW__CELERY__RESULT_BACKEND": f"redis://127.0.0.1:{self.settings.stack_redis_port}/1",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.settings.stack_celery_concurrency),
            # Each task instance records the worker that ran it, by this name (both workers share
            # this machine's host name).
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "app.stack.worker_name.hostname",
            # A task whose worker died is declared dead within half a minute (its supervisor
            # heartbeats every few seconds, from its own process, so a busy task does not miss
            # them) and retried elsewhere: Redis would redeliver its message only after the
            # visibility timeout (a day).
            "AIRFLOW__CELERY__TASK_ACKS_LATE": "False",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        }

    def _tls_env(self) -> dict[str, str]:
        """With STREAMFIT_STACK_TLS: the API server serves HTTPS, and the task supervisors
        verify it against the stack's CA."""
        s = self.settings
        if not s.stack_tls:
            return {}
        from app.stack.tls import local_ca, server_certificate

        tls_dir = s.home / TLS_DIR
        ca = local_ca(tls_dir)
        cert = server_certificate(ca, tls_dir, "airflow-api", ["127.0.0.1", "localhost"])
        return {"AIRFLOW__API__SSL_CERT": str(cert.cert), "AIRFLOW__API__SSL_KEY": str(cert.key),
                "AIRFLOW__API__SSL_CA_FILE": str(ca.cert)}

    def _credentials_env(self) -> dict[str, str]:
        """The logins DAG tasks need, from the settings `stack up` ran with (which may come from
        a .env file the tasks would not see: they run in the Airflow home)."""
        s = self.settings
        env: dict[str, str] = {"STREAMFIT_KAFKA_SASL_MECHANISM": s.kafka_sasl_mechanism}
        # the engine the tasks run feature builds and scoring on, where its jobs go, and where
        # the data lives and how it is replicated (the cluster's hosts and replication factors)
        placement = {f"STREAMFIT_{name.upper()}" for name in (*PLACEMENT_FIELDS,
                                                                *SECURITY_FIELDS)}
        env.update({k: v for k, v in s.as_env().items()
                    if k == "STREAMFIT_ENGINE" or k.startswith("STREAMFIT_SPARK_")
                    or k in placement})
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
        # the processes that fork task processes: see app/stack/preloaded.py
        forking = ([sys.executable, "-m", "app.stack.preloaded"] if s.stack_airflow_preload
                   else [airflow])
        log = s.home / "logs" / "airflow-db-migrate.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as fh:
            proc = subprocess.run([airflow, "db", "migrate"], env={**os.environ, **env},  # noqa: S603
                                  stdout=fh, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            raise StackError(f"`airflow db migrate` failed (exit {proc.returncode}); see {log}")
        return [
            *self._cluster_specs(airflow, env),
            ProcessSpec("airflow-api-server", [airflow, "api-server", "--host", "127.0.0.1",
                                               "--port", str(s.airflow_port), "--workers", "1"],
                        ports=self.ports, env=env, cwd=self.home),
            ProcessSpec("airflow-scheduler", [*forking, "scheduler"], env=env, cwd=self.home),
            ProcessSpec("airflow-dag-processor", [airflow, "dag-processor"], env=env,
                        cwd=self.home),
            ProcessSpec("airflow-triggerer", [airflow, "triggerer"], env=env, cwd=self.home),
            *(ProcessSpec(name, [
                *forking, "celery", "worker", "--celery-hostname", f"{name}@%h",
                "--concurrency", str(s.stack_celery_concurrency), "--pid",
                str(s.home / "run" / f"{name}.celery.pid"),
                # logs are files in this same Airflow home: no log server (8793) per worker
                "--skip-serve-logs"], env={**env, "STREAMFIT_STACK_CELERY_WORKER": name}, cwd=self.home)
              for name in self.workers),
        ]

    def _cluster_specs(self, airflow: str, env: dict[str, str]) -> list[ProcessSpec]:
        if not self.settings.cluster:
            return []
        redis = shutil.which("redis-server")
        if redis is None:
            raise StackError("the cluster topology needs Redis (the Celery broker): "
                             "apt-get install redis-server, or `make install`")
        work = self.settings.home / "cluster" / "redis"
        work.mkdir(parents=True, exist_ok=True)
        return [ProcessSpec("redis", [
            redis, "--bind", "127.0.0.1", "--port", str(self.settings.stack_redis_port),
            "--dir", str(work), "--save", "", "--appendonly", "no", "--daemonize", "no"],
            ports=(self.settings.stack_redis_port,), cwd=work)]

    def client(self) -> AirflowClient:
        return airflow_client(self.settings)

    def ready(self) -> bool:
        if not port_open(self.settings.airflow_port):
            return False
        with self.client() as client:
            if not client.healthy():
                return False
        return not self.workers or len(self._live_workers()) == len(self.workers)

    def _live_workers(self) -> set[str]:
        """The Celery workers that answer a ping through the broker."""
        from celery import Celery

        app = Celery(broker=self.broker_url)
        try:
            replies = app.control.ping(timeout=1.0)
        finally:
            app.close()
        return {name.split("@")[0] for reply in replies for name in reply}

    def health(self) -> dict[str, bool]:
        try:
            with self.client() as client:
                core = client.healthy()
        except Exception:  # noqa: BLE001 - the API does not answer
            core = False
        out = dict.fromkeys(self.CORE, core)
        if self.settings.cluster:
            out["redis"] = port_open(self.settings.stack_redis_port)
            try:
                live = self._live_workers() if out["redis"] else set()
            except Exception:  # noqa: BLE001 - the broker does not answer
                live = set()
            out.update({w: w in live for w in self.workers})
        return out

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
    """A Spark standalone master and its workers (``STREAMFIT_STACK_SPARK=true``; one worker, two
    in the cluster topology), run from pyspark's own distribution; jobs reach it as
    ``spark://127.0.0.1:<stack_spark_master_port>``."""

    name = "spark"

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(settings)
        self.workers = (["spark-worker"] if settings.spark_workers == 1 else
                        [f"spark-worker-{i}" for i in range(1, settings.spark_workers + 1)])
        self.components = ("spark-master", *self.workers)

    @property
    def ports(self) -> tuple[int, ...]:
        s = self.settings
        return (s.stack_spark_master_port, s.stack_spark_master_ui_port, *s.spark_worker_ui_ports)

    def component_ports(self, component: str) -> list[str]:
        s = self.settings
        if component == "spark-master":
            return [str(s.stack_spark_master_port), str(s.stack_spark_master_ui_port)]
        return [str(s.spark_worker_ui_ports[self.workers.index(component)])]

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
            *(ProcessSpec(name, [
                spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                "--webui-port", str(ui_port), "--cores",
                str(s.stack_spark_worker_cores), "--memory", s.stack_spark_worker_memory,
                "--work-dir", str(work / name), self.master_url],
                ports=(ui_port,), env=env, cwd=self.home)
              for name, ui_port in zip(self.workers, s.spark_worker_ui_ports, strict=True)),
        ]

    def _alive_ui_ports(self) -> set[int] | None:
        """The UI ports of the workers the master has ALIVE (None: the master does not answer)."""
        import httpx

        if not port_open(self.settings.stack_spark_master_port):
            return None
        try:
            state = httpx.get(f"http://127.0.0.1:{self.settings.stack_spark_master_ui_port}/json/",
                              timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return None
        return {int(w.get("webuiaddress", ":0").rsplit(":", 1)[1])
                for w in state.get("workers", []) if w.get("state") == "ALIVE"}

    def ready(self) -> bool:
        """The master answers and every worker is registered ALIVE."""
        alive = self._alive_ui_ports()
        return alive is not None and set(self.settings.spark_worker_ui_ports) <= alive

    def health(self) -> dict[str, bool]:
        alive = self._alive_ui_ports()
        return {"spark-master": alive is not None,
                **{name: alive is not None and port in alive
                   for name, port in zip(self.workers, self.settings.spark_worker_ui_ports,
                                         strict=True)}}

    def version(self) -> str:
        from importlib.metadata import version

        return version("pyspark")


def all_services(settings: StackSettings) -> dict[str, Service]:
    # Cassandra first: it boots slowest, so it gets the head start.
    return {svc.name: svc for svc in (CassandraService(settings), KafkaService(settings),
                                      AirflowService(settings), SparkService(settings))}

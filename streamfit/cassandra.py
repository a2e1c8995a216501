"""Cassandra sessions for every streamfit process.

One place decides how we connect: the libev event loop and the driver's compiled extensions when
present (several times the throughput of the asyncore/asyncio fallbacks), token-aware routing,
protocol v5, and password auth when a user is configured.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from streamfit.settings import Settings
from streamfit.tls import client_context, explain, speaks_tls

log = logging.getLogger(__name__)

try:
    from cassandra.io.libevreactor import LibevConnection as _Connection

    CONNECTION_CLASS: type | None = _Connection
except ImportError:  # pragma: no cover - depends on how the driver was built
    CONNECTION_CLASS = None


class CassandraUnavailable(RuntimeError):
    """No Cassandra node answered; the message says where we looked and what to do."""


class QuorumUnavailable(CassandraUnavailable):
    """Cassandra answered, but too few replicas of the data are alive for the consistency level
    (nodes down): nothing is wrong with the request, and it succeeds once they are back."""


def explain_failure(exc: BaseException) -> str:
    """One plain line for a failed Cassandra request: a lost quorum is named as such."""
    from cassandra import ReadTimeout, Unavailable, WriteTimeout
    from cassandra.cluster import NoHostAvailable

    causes = list(exc.errors.values()) if isinstance(exc, NoHostAvailable) else [exc]
    for cause in causes:
        if isinstance(cause, Unavailable):
            level = ConsistencyLevel.value_to_name.get(cause.consistency, cause.consistency)
            return (f"Cassandra quorum unavailable: {level} needs {cause.required_replicas} "
                    f"replicas alive, {cause.alive_replicas} are; start the nodes that are down "
                    "(`streamfit stack status`)")
        if isinstance(cause, ReadTimeout | WriteTimeout):
            level = ConsistencyLevel.value_to_name.get(cause.consistency, cause.consistency)
            return (f"Cassandra timed out at {level}: {cause.received_responses} of "
                    f"{cause.required_responses} replicas answered (nodes down or overloaded?)")
    return f"{type(exc).__name__}: {exc}"


def is_quorum_loss(exc: BaseException) -> bool:
    return explain_failure(exc).startswith("Cassandra quorum unavailable")


class CassandraAuthError(CassandraUnavailable):
    """Cassandra answered but refused our login (or needs one and none is configured)."""


class CassandraTLSError(CassandraUnavailable):
    """The TLS handshake with the nodes failed; the message says why and what to set."""


class KeyspaceMissing(CassandraUnavailable):
    """Cassandra answered, but the keyspace asked for does not exist."""


#: The execution profile of ``aexecute``: named-tuple rows whose classes are made once.
FAST_ROWS = "streamfit-fast-rows"


#: Row data per unlogged single-partition batch: under stock Cassandra's
#: batch_size_fail_threshold (50 KiB), so a managed cluster on default settings accepts every
#: batch (it may log its 5 KiB warning; the local stack raises that to 64 KiB).
BATCH_BYTES = 32 * 1024


def rows_per_batch(row_bytes: int) -> int:
    """How many rows of about ``row_bytes`` make one batch of about BATCH_BYTES."""
    return max(1, BATCH_BYTES // max(1, row_bytes))


def partition_batches(statement: Any, rows: Sequence[tuple[Any, ...]], per_batch: int,
                      partition: Callable[[tuple[Any, ...]], Any]
                      ) -> list[tuple[Any, tuple[()]]]:
    """``rows`` of ``statement`` as unlogged batches of at most ``per_batch`` rows, each within
    one partition (``partition`` of a row): one request and one mutation per batch instead of
    one per row. py-spy showed the driver's per-response work dominating ingest with single-row
    INSERTs; feature rows of 69 values write 3 to 4 times faster in batches (local stack)."""
    from cassandra.query import BatchStatement, BatchType

    groups: dict[Any, list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault(partition(row), []).append(row)
    statements: list[tuple[Any, tuple[()]]] = []
    for group in groups.values():
        for i in range(0, len(group), per_batch):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for row in group[i:i + per_batch]:
                batch.add(statement, row)
            statements.append((batch, ()))
    return statements


def cached_row_factory(colnames: list[str], rows: list[Any]) -> list[Any]:
    """The driver's named-tuple rows, with the row class made once per column list: its own
    factory builds a new namedtuple class for every result (py-spy under HTTP load: 20 % of the
    API's time went to that alone)."""
    return [row_class(tuple(colnames))._make(row) for row in rows] if rows else []


@functools.lru_cache(maxsize=512)
def row_class(colnames: tuple[str, ...]) -> Any:
    from cassandra.query import named_tuple_factory

    # the driver's own name cleaning ("[applied]" -> "applied"), applied once to a dummy row
    return type(named_tuple_factory(list(colnames), [(None,) * len(colnames)])[0])


def make_cluster(settings: Settings, connect_timeout: float = 10.0,
                 request_timeout: float = 20.0) -> Cluster:
    def profile(**extra: Any) -> ExecutionProfile:  # each with a policy of its own
        return ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(
                DCAwareRoundRobinPolicy(local_dc=settings.cassandra_local_dc)),
            request_timeout=request_timeout,
            consistency_level=ConsistencyLevel.name_to_value[settings.consistency("write")],
            **extra)

    auth = None
    if settings.cassandra_username:
        password = settings.cassandra_password.get_secret_value() if settings.cassandra_password else ""
        auth = PlainTextAuthProvider(username=settings.cassandra_username, password=password)
    kwargs: dict[str, object] = {}
    if settings.cassandra_ssl:  # the driver checks host names when the context does
        kwargs["ssl_context"] = client_context(settings, "cassandra")
    if CONNECTION_CLASS is not None:
        kwargs["connection_class"] = CONNECTION_CLASS
    return Cluster(
        contact_points=settings.contact_endpoints,
        port=settings.cassandra_port,
        # v4, not v5: the driver frames v5 in pure-Python checksummed segments (~25% slower here).
        protocol_version=4,
        # FAST_ROWS: rows of cached classes, for hot reads (``aexecute``). Not the default: the
        # driver's LWT ``was_applied`` only knows its own row factories.
        execution_profiles={EXEC_PROFILE_DEFAULT: profile(),
                            FAST_ROWS: profile(row_factory=cached_row_factory)},
        auth_provider=auth,
        connect_timeout=connect_timeout,
        control_connection_timeout=connect_timeout,
        **kwargs,  # type: ignore[arg-type]
    )


@contextmanager
def connect(settings: Settings, keyspace: str | None = "", connect_timeout: float = 10.0,
            request_timeout: float = 20.0) -> Iterator[Session]:
    """A session on ``keyspace`` (default: the settings' keyspace; None: no keyspace)."""
    from cassandra import AuthenticationFailed, UnresolvableContactPoints
    from cassandra.cluster import NoHostAvailable

    try:
        cluster = make_cluster(settings, connect_timeout=connect_timeout,
                               request_timeout=request_timeout)
    except UnresolvableContactPoints as exc:
        raise CassandraUnavailable(
            f"no contact point of STREAMFIT_CASSANDRA_HOSTS={settings.cassandra_hosts} resolves "
            f"to an address ({exc}); check the host names") from None
    try:
        try:
            session = cluster.connect(settings.keyspace if keyspace == "" else keyspace)
        except NoHostAvailable as exc:
            if isinstance(exc.errors, list):
                # the driver's way of saying the nodes answered but the keyspace is not there
                # (the "errors" are then the hosts it tried)
                name = settings.keyspace if keyspace == "" else keyspace
                raise KeyspaceMissing(
                    f"keyspace {name!r} does not exist in Cassandra at {_where(settings)}: check "
                    "STREAMFIT_KEYSPACE (`streamfit pipeline keyspaces` lists the keyspaces "
                    "the pipeline serves), or create it with `streamfit db migrate`") from None
            refused = [e for e in exc.errors.values() if isinstance(e, AuthenticationFailed)]
            if refused:
                raise CassandraAuthError(_auth_message(settings, refused[0])) from None
            tls = [line for error in exc.errors.values() if settings.cassandra_ssl
                   and (line := explain(error, settings, "cassandra",
                                        f"Cassandra at {_where(settings)}"))]
            if tls:
                raise CassandraTLSError(tls[0]) from None
            if not settings.cassandra_ssl and speaks_tls(*settings.contact_endpoints[0]):
                raise CassandraTLSError(
                    f"Cassandra at {_where(settings)} requires TLS: set "
                    "STREAMFIT_CASSANDRA_SSL=true and STREAMFIT_CASSANDRA_SSL_CAFILE (the CA "
                    "that signed the nodes' certificates)") from None
            raise CassandraUnavailable(
                f"no Cassandra node answered at {_where(settings)}: start the local stack with "
                f"`streamfit stack up` or set STREAMFIT_CASSANDRA_HOSTS ({exc})"
            ) from None
        _read_consistency(session, settings)
        yield session
    finally:
        cluster.shutdown()


def _where(settings: Settings) -> str:
    return ",".join(f"{host}:{port}" for host, port in settings.contact_endpoints)


def _read_consistency(session: Session, settings: Settings) -> None:
    """Statements use the write consistency of the default profile; prepared SELECTs get the
    read consistency. Every statement we run often is prepared, so this one hook covers reads
    without a second execution profile passed at every call site."""
    read = ConsistencyLevel.name_to_value[settings.consistency("read")]
    if read == session.cluster.profile_manager.default.consistency_level:
        return
    prepare = session.prepare

    def prepare_with_read_consistency(query: str, *args: object, **kwargs: object) -> object:
        statement = prepare(query, *args, **kwargs)
        if query.lstrip().upper().startswith("SELECT"):
            statement.consistency_level = read
        return statement

    session.prepare = prepare_with_read_consistency  # type: ignore[method-assign]


def _auth_message(settings: Settings, error: Exception) -> str:
    # The server's reason names the user, never the password; we add which settings to fix.
    where = f"Cassandra at {_where(settings)}"
    reason = str(error).rsplit("message=", 1)[-1].strip('"\' ')
    if not settings.cassandra_username:
        return (f"{where} requires a login ({reason}): set STREAMFIT_CASSANDRA_USERNAME and "
                "STREAMFIT_CASSANDRA_PASSWORD")
    return (f"{where} refused user {settings.cassandra_username!r} ({reason}): check "
            "STREAMFIT_CASSANDRA_USERNAME and STREAMFIT_CASSANDRA_PASSWORD. The local stack "
            "creates this user at the first `stack up` with STREAMFIT_STACK_AUTH=true; later "
            "changes of the password need ALTER ROLE")


def as_utc(value: datetime) -> datetime:
    """Cassandra hands timestamps back as naive UTC datetimes: make the zone explicit."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def cql_date(value: object) -> date:
    """cassandra.util.Date -> datetime.date."""
    return value.date() if hasattr(value, "date") else date.fromisoformat(str(value))


def open_session(settings: Settings, keyspace: str | None = "") -> Session:
    """A session for a long-running process (the HTTP server), configured as ``connect``'s;
    the caller shuts down ``session.cluster`` when it stops."""
    cluster = make_cluster(settings)
    session = cluster.connect(settings.keyspace if keyspace == "" else keyspace)
    _read_consistency(session, settings)
    return session


def aexecute(session: Session, statement: Any, params: Any = None,
             **kwargs: Any) -> asyncio.Future[Any]:
    """``session.execute`` for asyncio code: the driver's own future (``execute_async``), its
    result handed to the running event loop, so no thread waits on Cassandra. The future gives
    the ResultSet (``current_rows``, ``paging_state``)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    kwargs.setdefault("execution_profile", FAST_ROWS)
    response = session.execute_async(statement, params, **kwargs)

    def settle(_rows: object) -> None:  # on the driver's event-loop thread
        loop.call_soon_threadsafe(_resolve, done, response, None)

    def fail(exc: BaseException) -> None:
        loop.call_soon_threadsafe(_resolve, done, None, exc)

    response.add_callbacks(settle, fail)
    return done


def _resolve(done: asyncio.Future[Any], response: Any, exc: BaseException | None) -> None:
    if done.cancelled():
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        # complete already: result() returns the ResultSet of the first page without waiting
        done.set_result(response.result())

"""``streamfit stack up | down | status``: run the real services on loopback, without Docker.

``up`` is idempotent: running processes are reused and nothing is re-formatted. It returns only
when every service answers real requests (Kafka metadata, Cassandra ``system.local`` bootstrapped,
Airflow API health). ``down`` sends SIGTERM to each process group and waits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from app.stack.process import ProcessSpec, StackError, Supervisor, wait_until
from app.stack.services import NodeService, Service, all_services, install_connector
from app.stack.settings import StackSettings
from streamfit.settings import (
    LOCAL_STACK_FILE,
    PLACEMENT_FIELDS,
    SECURITY_FIELDS,
    local_stack_defaults,
)

#: What `stack up` starts by default.
SERVICE_NAMES = ("cassandra", "kafka", "airflow")
#: Every service it knows, in start order: Spark only when asked (STREAMFIT_STACK_SPARK=true or
#: `--service spark`).
ALL_SERVICE_NAMES = (*SERVICE_NAMES, "spark")


def default_services(settings: StackSettings) -> tuple[str, ...]:
    return ALL_SERVICE_NAMES if settings.spark else SERVICE_NAMES


@dataclass(frozen=True)
class ComponentStatus:
    service: str
    component: str
    pid: int | None
    rss_mb: float | None
    healthy: bool
    version: str
    ports: tuple[str, ...]
    log: str


def supervisor(settings: StackSettings) -> Supervisor:
    return Supervisor(settings.home / "run", settings.home / "logs")


def _select(settings: StackSettings, only: Iterable[str] | None) -> list[Service]:
    services = all_services(settings)
    names = list(only) if only else list(default_services(settings))
    unknown = [n for n in names if n not in services]
    if unknown:
        raise StackError(f"unknown service(s) {unknown}; choose from "
                         f"{', '.join(ALL_SERVICE_NAMES)}")
    return [services[n] for n in ALL_SERVICE_NAMES if n in names]


def _tree_rss_mb(proc: psutil.Process) -> float | None:
    try:
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
    except psutil.Error:
        return None


def _other_topology(settings: StackSettings) -> StackSettings:
    other = "single" if settings.cluster else "cluster"
    return settings.model_copy(update={"stack_topology": other})


def running_topology(settings: StackSettings) -> str | None:
    """The topology whose processes run under this home (None: nothing runs). Cassandra's and
    Kafka's processes tell them apart (``cassandra`` or ``cassandra-1``...); Airflow's and Spark's
    share names, so with only those running the record decides."""
    candidates = (settings, _other_topology(settings))
    for candidate in candidates:
        sup = supervisor(candidate)
        for svc in all_services(candidate).values():
            if isinstance(svc, NodeService) and any(sup.process(c) for c in svc.components):
                return candidate.stack_topology
    sup = supervisor(settings)
    if any(sup.process(c) for candidate in candidates
           for svc in all_services(candidate).values() for c in svc.components):
        recorded = local_stack_defaults(settings.home, "any")
        return str(recorded.get("topology", "single"))
    return None


def _record(settings: StackSettings) -> None:
    """Tell every later process on this machine where the running stack listens (its client
    settings; ``streamfit.settings.LOCAL_STACK_FILE``). The single-node stack without TLS is
    the default and needs no record."""
    path = settings.home / LOCAL_STACK_FILE
    if not (settings.cluster or settings.stack_tls):
        path.unlink(missing_ok=True)
        return
    fields = ("stack_topology", "stack_cluster_size", "stack_cluster_address_block",
              *PLACEMENT_FIELDS, *SECURITY_FIELDS)
    values = settings.model_dump(mode="json", include=set(fields))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"topology": settings.stack_topology, "settings": {
        k: v for k, v in values.items() if v is not None and k != "home"}}, indent=1) + "\n")


def up(settings: StackSettings, only: Iterable[str] | None = None,
       on_event: Callable[[str], None] = lambda _msg: None) -> dict[str, float]:
    """Start what is not running and wait until all selected services are usable.

    Returns, per service, the seconds it took to become ready (0 for reused ones).
    """
    sup = supervisor(settings)
    running = running_topology(settings)
    if running is not None and running != settings.stack_topology:
        raise StackError(
            f"the {running} stack is running under {settings.home}; stop it first "
            f"(`STREAMFIT_STACK_TOPOLOGY={running} streamfit stack down`): one machine runs one "
            "stack at a time")
    services = _select(settings, only)
    if settings.engine == "spark":
        install_connector(settings)  # local[N] jobs need the connector's jars too
    missing: dict[str, list[str]] = {}
    for svc in services:
        missing[svc.name] = [c for c in svc.components if sup.process(c) is None]
        if not missing[svc.name]:
            on_event(f"{svc.name}: already running, reused")
        elif len(missing[svc.name]) == len(svc.components):
            # Fail before installing or starting anything if a port is taken.
            sup.check_endpoints(svc.name, svc.endpoints())
    to_start: list[tuple[Service, list[ProcessSpec]]] = [
        # A partly running service (one Airflow component died) gets only its missing parts.
        (svc, [spec for spec in svc.prepare() if spec.name in missing[svc.name]])
        for svc in services if missing[svc.name]
    ]
    _record(settings)
    started_at = time.monotonic()
    procs: dict[str, list[psutil.Process]] = {}
    for svc, specs in to_start:
        on_event(f"{svc.name}: starting {', '.join(s.name for s in specs)}")
        procs[svc.name] = [sup.start(spec) for spec in specs]
    took: dict[str, float] = {}
    for svc in services:
        wait_until(svc.ready, settings.stack_startup_timeout_s, f"{svc.name} did not become ready",
                   alive=procs.get(svc.name, ()), log=sup.log_file(svc.components[0]))
        svc.configure()
        took[svc.name] = time.monotonic() - started_at if svc.name in procs else 0.0
        on_event(f"{svc.name}: ready")
    return took


def down(settings: StackSettings, only: Iterable[str] | None = None,
         on_event: Callable[[str], None] = lambda _msg: None) -> list[str]:
    """Stop the selected services (SIGTERM, wait, SIGKILL leftovers). Returns what was stopped."""
    sup = supervisor(settings)
    stopped = []
    selected = {svc.name: svc for svc in _select(settings, only or ALL_SERVICE_NAMES)}
    # Spark and Airflow first (their jobs talk to Kafka/Cassandra), then Kafka and Cassandra;
    # every service by default, so a Spark started with `--service spark` stops too. The
    # services of one tier stop together (a full `stack down`: 20 s one at a time).
    for tier in (("spark", "airflow"), ("kafka", "cassandra")):
        components = [c for name in tier if name in selected
                      for c in reversed(selected[name].components)]
        for component in sup.stop_all(components, timeout=90.0):
            stopped.append(component)
            on_event(f"{component}: stopped")
    if running_topology(settings) is None:
        (settings.home / LOCAL_STACK_FILE).unlink(missing_ok=True)
    return stopped


def status(settings: StackSettings, only: Iterable[str] | None = None) -> list[ComponentStatus]:
    sup = supervisor(settings)
    rows = []
    for svc in _select(settings, only):
        procs = {c: sup.process(c) for c in svc.components}
        health: dict[str, bool] = {}
        version = "-"
        if any(procs.values()):
            try:
                health = svc.health()
                version = svc.version() if any(health.values()) else "-"
            except Exception:  # noqa: BLE001 - any failure means "not healthy" here
                pass
        for component, proc in procs.items():
            rows.append(ComponentStatus(
                service=svc.name, component=component,
                pid=proc.pid if proc else None,
                rss_mb=_tree_rss_mb(proc) if proc else None,
                healthy=health.get(component, False) and proc is not None, version=version,
                ports=tuple(svc.component_ports(component)),
                log=str(sup.log_file(component)),
            ))
    return rows


def reload_cassandra_tls(settings: StackSettings) -> None:
    """Make every running Cassandra node read its TLS stores again, without a restart (after a
    certificate was replaced in place). Cassandra only checks its files every 10 minutes by
    itself; this asks each node's MessagingService at once, as `nodetool reloadssl` does,
    through the JVM's attach API (the stack runs no JMX port)."""
    import subprocess

    from app.stack.services import CONF_DIR, CassandraService

    sup = supervisor(settings)
    procs = [(c, sup.process(c)) for c in CassandraService(settings).components]
    missing = [c for c, proc in procs if proc is None]
    if missing:
        raise StackError(f"{', '.join(missing)} not running: nothing to reload")
    for component, proc in procs:
        assert proc is not None
        done = subprocess.run(["java", str(CONF_DIR / "ReloadSsl.java"), str(proc.pid)],
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no output"])[0]
            raise StackError(f"{component} did not reload its certificates: {last}")


def running(settings: StackSettings, service: str) -> bool:
    svc = all_services(settings)[service]
    sup = supervisor(settings)
    return all(sup.process(c) is not None for c in svc.components)

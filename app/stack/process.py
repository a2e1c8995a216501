"""Start, find and stop the local stack's long-running processes.

Used by ``streamfit stack up|down|status``. Each process runs detached in its own session (so a
Ctrl-C in the terminal does not kill the stack) and is remembered by a pid file holding the pid and
the process start time: a reused pid after a reboot is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil


class StackError(RuntimeError):
    """A local-stack operation failed; the message says what and how to fix it."""


class PortInUseError(StackError):
    pass


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one process of the stack."""

    name: str
    argv: Sequence[str]
    ports: tuple[int, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    host: str = "127.0.0.1"  # the address its ports are bound on


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_holder(port: int) -> str:
    """Describe the process listening on ``port`` ("pid 123 (java ...)"), as far as we can see."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        conns = []
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "a process of another user"
            try:
                proc = psutil.Process(conn.pid)
                cmd = " ".join(proc.cmdline())[:120]
                return f"pid {conn.pid} ({cmd})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return "an unknown process"


class Supervisor:
    """Pid files and log files of the stack's processes, below one state directory."""

    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    @staticmethod
    def identity(proc: psutil.Process) -> str:
        """What tells ``proc`` from a later process given the same pid. On Linux, its start in
        clock ticks since boot (``/proc/<pid>/stat``): psutil's ``create_time`` is that plus a
        boot time derived from the wall clock, so a clock step (NTP, a VM's host sync) moves it.
        On 2026-12-04 `stack down` here took our own running services for stale pid files and
        left them running, most likely after such a step (the step itself was not caught)."""
        try:
            stat = Path(f"/proc/{proc.pid}/stat").read_text()
        except OSError:  # not Linux: the wall-clock start is the best there is
            return str(proc.create_time())
        return "t" + stat.rsplit(")", 1)[1].split()[19]  # field 22, after the command name

    def process(self, name: str) -> psutil.Process | None:
        """The live process recorded for ``name``, or None (stale pid files are removed)."""
        path = self.pid_file(name)
        try:
            pid_text, started_text = path.read_text().split()
            proc = psutil.Process(int(pid_text))
            if started_text.startswith("t"):
                if self.identity(proc) != started_text:
                    raise psutil.NoSuchProcess(int(pid_text))
            elif abs(proc.create_time() - float(started_text)) > 1.0:  # written before ticks
                raise psutil.NoSuchProcess(int(pid_text))
            if proc.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(int(pid_text))
            return proc
        except FileNotFoundError:
            return None
        except (ValueError, psutil.NoSuchProcess):
            path.unlink(missing_ok=True)
            return None

    def check_ports(self, spec: ProcessSpec) -> None:
        self.check_endpoints(spec.name, [(spec.host, port) for port in spec.ports])

    def check_endpoints(self, name: str, endpoints: Iterable[tuple[str, int]]) -> None:
        for host, port in endpoints:
            if not port_is_free(port, host):
                where = str(port) if host == "127.0.0.1" else f"{host}:{port}"
                raise PortInUseError(
                    f"port {where}, needed by {name}, is already taken by {port_holder(port)}. "
                    f"Stop that process, or give {name} another port (see the "
                    "STREAMFIT_*_PORT settings)."
                )

    def start(self, spec: ProcessSpec) -> psutil.Process:
        """Start ``spec`` detached, logging to its log file; return the running process."""
        self.check_ports(spec)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **spec.env}
        with open(self.log_file(spec.name), "ab") as log:
            log.write(f"\n--- streamfit: starting {spec.name} at {time.ctime()} ---\n".encode())
            log.flush()
            popen = subprocess.Popen(  # noqa: S603 - argv is built by us, never from user input
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=spec.cwd,
                env=env,
                start_new_session=True,  # own process group: `down` signals the whole group
            )
        proc = psutil.Process(popen.pid)
        self.pid_file(spec.name).write_text(f"{proc.pid} {self.identity(proc)}\n")
        return proc

    def stop(self, name: str, timeout: float = 60.0) -> bool:
        """SIGTERM the process group of ``name``, wait, SIGKILL what is left. True if it ran."""
        return bool(self.stop_all([name], timeout))

    def stop_all(self, names: Iterable[str], timeout: float = 60.0) -> list[str]:
        """``stop`` for several components at once: every group is signalled first and then
        waited for together, so their shutdowns overlap (Airflow's four components took
        12.5 s one after another, 5 s together). Returns the names that were running."""
        running = [(name, proc) for name in names if (proc := self.process(name)) is not None]
        group: list[psutil.Process] = []
        for _name, proc in running:
            group += _group_members(proc)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            except PermissionError:
                proc.terminate()
        _gone, alive = psutil.wait_procs(group, timeout=timeout)
        for leftover in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()
        psutil.wait_procs(alive, timeout=10)
        for name, _proc in running:
            self.pid_file(name).unlink(missing_ok=True)
        return [name for name, _proc in running]

    def tail(self, name: str, lines: int) -> list[str]:
        path = self.log_file(name)
        if not path.exists():
            return []
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read().decode("utf-8", "replace")
        return data.splitlines()[-lines:]


def _group_members(proc: psutil.Process) -> list[psutil.Process]:
    """The process and every descendant (all of them must be gone before `down` returns)."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.5,
               alive: Iterable[psutil.Process] = (), log: Path | None = None) -> None:
    """Poll ``check()`` until it is truthy; fail fast if one of ``alive`` dies meanwhile."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for proc in alive:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                hint = f"; see {log}" if log else ""
                raise StackError(f"{what}: the process exited during start-up{hint}")
        try:
            if check():
                return
        except StackError:
            raise  # the check knows waiting cannot help
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"; kept for the report
            last_error = f" (last check: {type(exc).__name__}: {exc})"
        time.sleep(interval)
    hint = f"; see {log}" if log else ""
    raise StackError(f"{what}: not ready after {timeout:.0f}s{last_error}{hint}")

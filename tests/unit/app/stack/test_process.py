from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest

from app.stack.process import (
    PortInUseError,
    ProcessSpec,
    StackError,
    Supervisor,
    port_is_free,
    wait_until,
)


@pytest.fixture
def listener() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock, sock.getsockname()[1]
    sock.close()


def test_taken_port_error_names_port_and_holder(tmp_path: Path, listener) -> None:
    _sock, port = listener
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    assert not port_is_free(port)
    with pytest.raises(PortInUseError) as info:
        sup.check_ports(ProcessSpec("kafka", ["true"], ports=(port,)))
    message = str(info.value)
    assert f"port {port}" in message and "kafka" in message
    assert f"pid {os.getpid()}" in message  # the holder is this very test process
    assert "STREAMFIT_" in message  # says how to fix it


def test_start_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    # A parent that spawns a child and ignores nothing: both must be gone after stop().
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = sup.start(ProcessSpec("sleeper", [sys.executable, "-c", script]))
    wait_until(lambda: "up" in sup.log_file("sleeper").read_text(), 10, "sleeper")
    wait_until(lambda: proc.children(), 10, "child")
    child = proc.children()[0]
    assert sup.process("sleeper") is not None
    assert sup.stop("sleeper", timeout=10)
    assert not psutil.pid_exists(proc.pid) or proc.status() == psutil.STATUS_ZOMBIE
    assert not psutil.pid_exists(child.pid) or child.status() == psutil.STATUS_ZOMBIE
    assert sup.process("sleeper") is None
    assert not sup.stop("sleeper")  # second stop: nothing to do


def test_stop_all_stops_several_groups_together(tmp_path: Path) -> None:
    """Each sleeper takes a second to exit after SIGTERM and logs when it got the signal and
    when it left: every one was signalled before any had left (their shutdowns overlapped),
    all are gone, and ``stop_all`` names only the ones that were running."""
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    script = ("import signal, sys, time\n"
              "def bye(*_):\n"
              "    print('term', time.time(), flush=True)\n"
              "    time.sleep(1)\n"
              "    print('exit', time.time(), flush=True)\n"
              "    sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye)\n"
              "print('up', flush=True)\n"
              "time.sleep(600)\n")
    names = [f"slow{i}" for i in range(3)]
    procs = [sup.start(ProcessSpec(name, [sys.executable, "-c", script])) for name in names]
    for name in names:
        wait_until(lambda name=name: "up" in sup.log_file(name).read_text(), 10, name)
    assert sup.stop_all(["slow0", "never-started", "slow1", "slow2"], timeout=20) == names
    assert all(not psutil.pid_exists(p.pid) or p.status() == psutil.STATUS_ZOMBIE for p in procs)
    assert all(sup.process(name) is None for name in names)
    logged = [dict(line.split() for line in sup.log_file(name).read_text().splitlines()
                   if line.startswith(("term", "exit"))) for name in names]
    assert max(float(x["term"]) for x in logged) < min(float(x["exit"]) for x in logged)


def test_a_pid_file_names_its_process_whatever_the_wall_clock_says(tmp_path: Path) -> None:
    """The pid file holds the start in ticks since boot, which a clock step does not move: our
    own process is found through it, and a reused pid (another start) is not taken for it."""
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    sup.run_dir.mkdir(parents=True)
    me = psutil.Process()
    ticks = sup.identity(me)
    assert ticks.startswith("t") and ticks[1:].isdigit()
    sup.pid_file("kafka").write_text(f"{me.pid} {ticks}\n")
    assert sup.process("kafka") == me
    sup.pid_file("kafka").write_text(f"{me.pid} t{int(ticks[1:]) - 1}\n")
    assert sup.process("kafka") is None
    assert not sup.pid_file("kafka").exists()


def test_stale_pid_file_is_ignored(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    sup.run_dir.mkdir(parents=True)
    # our own pid but a different start time: a reused pid must not count as "running"
    sup.pid_file("kafka").write_text(f"{os.getpid()} {time.time() - 10_000}\n")
    assert sup.process("kafka") is None
    assert not sup.pid_file("kafka").exists()


def test_wait_until_reports_the_last_error_and_dead_processes(tmp_path: Path) -> None:
    def failing() -> bool:
        raise ConnectionError("refused")

    with pytest.raises(StackError, match="ConnectionError: refused"):
        wait_until(failing, 0.3, "svc", interval=0.05)
    sup = Supervisor(tmp_path / "run", tmp_path / "logs")
    proc = sup.start(ProcessSpec("dies", [sys.executable, "-c", "raise SystemExit(3)"]))
    with pytest.raises(StackError, match="exited during start-up"):
        wait_until(lambda: False, 10, "dies", alive=[proc], log=sup.log_file("dies"))

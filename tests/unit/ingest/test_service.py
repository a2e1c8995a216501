"""The ingest service's signalling loop: how it retries while signals fail (no services: the
signaller here is a function that fails as an unreachable Airflow makes it fail)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ingest import service as service_module
from ingest.service import IngestService
from streamfit.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Signaller:
    """Fails ``failures`` times (as a refused connection does), then sends one signal; after
    it, nothing new has landed."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def tick(self, force: bool = False) -> dict[str, Any] | None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        return {"rows": 5} if self.calls == self.failures + 1 else None


def test_failing_signals_back_off_log_once_and_resume(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    monkeypatch.setattr(service_module.time, "monotonic", clock)
    service = IngestService(Settings(), workers=1)
    signaller = Signaller(failures=6)
    attempts = []
    with caplog.at_level(logging.INFO, logger="streamfit.ingest"):
        for second in range(60):  # the supervising loop ticks once a second
            clock.now = 1000.0 + second
            before = signaller.calls
            service._signal(signaller)
            if signaller.calls > before:
                attempts.append(second)
    # waits of 1, 2, 4, 8, then at most SIGNAL_BACKOFF_MAX_S seconds between attempts
    assert attempts[:7] == [0, 1, 3, 7, 15, 25, 35], attempts
    assert service.signal_failures == 6 and service.signals_sent == 1
    assert service.last_signal_error == "ConnectionRefusedError: [Errno 111] Connection refused"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Connection refused" in warnings[0].getMessage()
    assert any("again after 6 failed attempts" in r.getMessage() for r in caplog.records)
    # once sent, every tick asks again (the loop ran on to second 59)
    assert signaller.calls == 7 + (59 - 35)
    # a forced signal (at stop) is never held back
    failing = Signaller(failures=2)
    service._signal(failing)
    service._signal(failing, force=True)
    assert failing.calls == 2

"""Polling for a condition on the real services, with a deadline that names what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(check: Callable[[], bool], timeout: float, what: str | Callable[[], str],
             every: float = 1.0) -> None:
    """Poll ``check`` until it holds; ``what`` (or what it returns, computed on timeout, so it
    can show the state that was reached) names the wait in the failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for "
                         f"{what if isinstance(what, str) else what()}")

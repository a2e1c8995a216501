"""The predictions HTTP API served for a test: the real app in uvicorn on a loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from streamfit.settings import Settings
from tests.net import free_port


@contextmanager
def serving(s: Settings) -> Iterator[str]:
    """The base URL of ``streamfit serve``'s app for settings ``s``, stopped on exit."""
    from app.server import create_app

    with serving_app(create_app(s)) as url:
        yield url


@contextmanager
def serving_app(app: Any) -> Iterator[str]:
    """The base URL of ``app`` served by uvicorn on a loopback port, stopped on exit."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)

"""The predictions HTTP API served for a test: the real app in uvicorn on a loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from streamfit.settings import Settings
from tests.net import free_port


@contextmanager
def serving(s: Settings) -> Iterator[str]:
    """The base URL of ``streamfit serve``'s app for settings ``s``, stopped on exit."""
    import uvicorn

    from app.server import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(s), host="127.0.0.1", port=port,
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

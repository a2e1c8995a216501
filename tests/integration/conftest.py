from __future__ import annotations

import pytest

from streamfit.settings import Settings


@pytest.fixture(autouse=True)
def _require_stack(stack: Settings) -> None:
    """Every integration test runs against the real stack."""

"""The malformed-message corpus (tests/data/malformed_messages.jsonl) plus generated cases."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data" / "malformed_messages.jsonl"


@dataclass(frozen=True)
class BadMessage:
    case: str
    value: bytes
    expect_reason: str


def malformed(max_bytes: int = 262144) -> list[BadMessage]:
    cases = [BadMessage(d["case"], base64.b64decode(d["value_b64"]), d["expect_reason"])
             for d in map(json.loads, DATA.read_text().splitlines())]
    # Generated rather than stored: a message one byte over the limit.
    cases.append(BadMessage("oversize", b"{" + b" " * max_bytes + b"}", "oversize"))
    return cases

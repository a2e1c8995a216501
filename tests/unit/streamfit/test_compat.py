"""The ast.parse guard against CPython gh-106905 (`streamfit.compat`)."""

from __future__ import annotations

import ast
import gc
import random
import threading
from pathlib import Path

import streamfit  # noqa: F401 - applies the guard
from streamfit import compat


def _parse_in_threads(threads: int = 16, rounds: int = 4) -> list[BaseException]:
    """gh-106905's reproducer: many threads parse a large module while every collection runs
    Python code, so the interpreter switches threads in the middle of a parse."""
    source = Path(ast.__file__).read_text(encoding="utf-8")
    errors: list[BaseException] = []

    def busy(_phase: str, _info: dict[str, int]) -> None:
        sorted(str(random.random()) for _ in range(30))

    def work() -> None:
        try:
            for _ in range(rounds):
                ast.parse(source)
        except SystemError as exc:
            errors.append(exc)

    gc.callbacks.append(busy)
    try:
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        gc.callbacks.remove(busy)
    return errors


def test_parsing_in_many_threads_raises_no_system_error() -> None:
    if compat._AFFECTED:
        assert getattr(ast.parse, "_streamfit_serialised", False)
    assert _parse_in_threads() == []


def test_the_guard_is_applied_once() -> None:
    compat.serialise_ast_parse()
    first = ast.parse
    compat.serialise_ast_parse()
    assert ast.parse is first
    assert ast.dump(ast.parse("x = 1")) == ast.dump(ast.parse("x = 1", mode="exec"))

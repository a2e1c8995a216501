"""Interpreter workarounds, applied once when the ``streamfit`` package is first imported.

CPython 3.11.0-3.11.7 and 3.12.0-3.12.1 keep the AST constructor's recursion depth in state
shared by every thread (gh-106905; fixed in 3.11.8 and 3.12.2). If the garbage collector runs
Python code while one thread is inside ``ast.parse`` and a second thread parses meanwhile, the
first one fails with ``SystemError: AST constructor recursion depth mismatch``.

Our processes parse in several threads without asking to: joblib parses its ``pre_dispatch``
expression on every parallel scikit-learn predict, and 3.11's traceback module parses source
lines to place its carets. The HTTP server scores in a thread pool, and the test suite serves
the API in a thread beside its own training and scoring, where CI met the error. On those
versions ``ast.parse`` is serialised: the parses involved are one-liners, so the lock costs
nothing measurable. (``compile(..., ast.PyCF_ONLY_AST)`` called directly is not covered;
anyio does that once per lazily imported module.)
"""

from __future__ import annotations

import ast
import sys
import threading
from typing import Any

_AFFECTED = ((3, 11) <= sys.version_info[:3] < (3, 11, 8)
             or (3, 12) <= sys.version_info[:3] < (3, 12, 2))


def serialise_ast_parse() -> None:
    """Make ``ast.parse`` take a process-wide lock (once; later calls change nothing)."""
    if getattr(ast.parse, "_streamfit_serialised", False):
        return
    unlocked = ast.parse
    # re-entrant: a collection triggered inside one parse may run code that parses again
    lock = threading.RLock()

    def parse(*args: Any, **kwargs: Any) -> ast.AST:
        with lock:
            return unlocked(*args, **kwargs)

    parse.__doc__ = unlocked.__doc__
    parse._streamfit_serialised = True  # type: ignore[attr-defined]
    ast.parse = parse  # type: ignore[assignment]


if _AFFECTED:
    serialise_ast_parse()

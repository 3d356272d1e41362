"""A private switch for the checks a solve runs on every field call and every step.

The per-call checks of a field's output (shape and dtype, host metadata) and the per-step
non-finite checks (carried by the error norm's one scalar sync, plus one check of the outputs per
solve; in fixed-step mode one sync of ``all(isfinite(y1))``) are on by default and cheap (``docs/bench_checks.md``). The drivers read
this switch once per solve, never per step. It exists to measure their cost
(``validation/bench_checks.py``): with the checks off a bad field is not caught, and the numba
driver may read past the end of a short output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_enabled = True


def enabled() -> bool:
    """Whether solves started now check field outputs and non-finite states."""
    return _enabled


@contextlib.contextmanager
def checks_disabled() -> Iterator[None]:
    """Solves started inside skip the per-call and per-step checks (benchmarks only)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous

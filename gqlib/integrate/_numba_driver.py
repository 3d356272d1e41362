"""Placeholder until the compiled driver lands: never selected."""


def use_numba(f, y0, norm) -> bool:
    return False


def numba_solve(*args, **kwargs):  # pragma: no cover
    raise NotImplementedError

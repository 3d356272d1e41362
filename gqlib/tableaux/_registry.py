"""The method registry: ``METHODS[name]`` -> :class:`ButcherTableau`."""

from __future__ import annotations

from importlib import import_module
from types import MappingProxyType

from ._tableau import ButcherTableau

# one module per method; each defines TABLEAU
_MODULES = ("euler", "midpoint", "heun", "ralston", "heun3", "bosh3", "rk4", "rk38", "fehlberg2",
            "adaptive_heun", "dopri5", "dopri5_shampine", "tsit5", "dop853", "dopri8")


def _load() -> dict[str, ButcherTableau]:
    methods: dict[str, ButcherTableau] = {}
    for mod in _MODULES:
        try:
            tab = import_module(f"{__package__}.{mod}").TABLEAU
        except ModuleNotFoundError as exc:  # pragma: no cover - only while methods are added
            if exc.name != f"{__package__}.{mod}":
                raise
            continue
        methods[tab.name] = tab
        for alias in tab.aliases:
            methods[alias] = tab
    return methods


METHODS = MappingProxyType(_load())


def get_method(method: str | ButcherTableau) -> ButcherTableau:
    """Look up a method by name (or pass a tableau through), with a helpful error."""
    if isinstance(method, ButcherTableau):
        return method
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a method name or a ButcherTableau, got {type(method).__name__}")
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"`method` {method!r} is unknown; valid methods: {', '.join(sorted(METHODS))}") from None

"""Explicit registries: a mapping built from a tuple of entries, duplicates fail at import."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TypeVar

T = TypeVar("T")


def registry(entries: Iterable[T], key: Callable[[T], str]) -> Mapping[str, T]:
    """A read-only name → entry mapping; raises if two entries share a name."""
    table: dict[str, T] = {}
    for entry in entries:
        name = key(entry)
        if name in table:
            raise RuntimeError(f"duplicate registry entry {name!r}")
        table[name] = entry
    return MappingProxyType(table)

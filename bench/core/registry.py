"""One generic registry for encoders, attacks, tasks and suites: canonical names, aliases, one-line descriptions
and "did you mean" errors."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from bench.core.errors import BenchError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    description: str
    aliases: tuple[str, ...] = ()


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, value: T, description: str, aliases: tuple[str, ...] = ()) -> T:
        for key in (name, *aliases):
            if key != key.strip().lower() or not key:
                raise ValueError(f"{self.kind} names are lower-case and non-empty: {key!r}")
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        self._entries[name] = Entry(name, value, description, tuple(aliases))
        for alias in aliases:
            self._aliases[alias] = name
        return value

    def canonical(self, name: str) -> str:
        key = name.strip().lower()
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        known = sorted([*self._entries, *self._aliases])
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise BenchError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})")

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.canonical(name)]

    def get(self, name: str) -> T:
        return self.entry(name).value

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        key = name.strip().lower()
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

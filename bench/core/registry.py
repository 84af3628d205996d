"""One generic registry for encoders, attacks, losses, objectives, tasks and suites: canonical names, aliases,
one-line descriptions, "did you mean" errors, and two ways to grow without editing anything else:

- **built-in modules**: a registry names the packages whose modules register into it (``discover``); every module
  there is imported the first time the registry is read, so a new loss or objective is one new file;
- **from above**: a package of a higher layer registers into a lower layer's registry when it is imported
  (``extend``: the training objectives name the robust encoders, the micro suite registers its base), so that no
  lower layer imports a higher one; whoever resolves names (the runner, the command line, the API) imports them;
- **plugins**: installed distributions declare Python entry points in the group
  ``clip_robust_bench.<plugin_group>`` (as lm-evaluation-harness and pytest do). An entry point names either the
  value to register under the entry point's name, or a function that takes the registry and registers what it
  likes. A plugin that fails to load is reported in one line and skipped; the rest of the registry still works.

Loading is lazy and happens once per registry, so importing a registry costs nothing until it is used.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from bench.core.errors import BenchError

T = TypeVar("T")
PLUGIN_PREFIX = "clip_robust_bench."


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    description: str
    aliases: tuple[str, ...] = ()
    origin: str = "built-in"  # or "plugin <distribution>"


class Registry(Generic[T]):
    def __init__(self, kind: str, *, discover: tuple[str, ...] = (), plugin_group: str | None = None,
                 populate: Callable[[Registry[T]], None] | None = None,
                 retired: dict[str, str] | None = None):
        """``discover``: packages whose modules register into this registry; ``plugin_group``: the entry point
        group's suffix; ``populate``: a function run after discovery (more come through ``extend``); ``retired``:
        old names and the one-line message a user who types one gets instead of a lookup."""
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._discover = discover
        self.plugin_group = PLUGIN_PREFIX + plugin_group if plugin_group else None
        self._populate = [populate] if populate is not None else []
        self._retired = dict(retired or {})
        self._loaded = not (discover or plugin_group or populate)
        self._loading = False
        self._origin = "built-in"

    # --- registering ---------------------------------------------------------------------------------------------
    def register(self, name: str, value: T, description: str, aliases: tuple[str, ...] = ()) -> T:
        for key in (name, *aliases):
            if key != key.strip().lower() or not key:
                raise ValueError(f"{self.kind} names are lower-case and non-empty: {key!r}")
            if key in self._entries or key in self._aliases or key in self._retired:
                raise ValueError(f"{self.kind} {key!r} is already registered")
        self._entries[name] = Entry(name, value, description, tuple(aliases), self._origin)
        for alias in aliases:
            self._aliases[alias] = name
        return value

    def extend(self, populate: Callable[[Registry[T]], None]) -> None:
        """Have ``populate(self)`` register more entries: when the registry loads, or now if it has. A layer above
        calls this when it is imported (it must never be imported by the layer that owns the registry)."""
        if self._loaded:
            populate(self)
        else:
            self._populate.append(populate)

    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True  # modules being discovered read the registry while they register into it
        try:
            for package in self._discover:
                import_submodules(package)
            for populate in self._populate:
                populate(self)
            if self.plugin_group:
                self._load_plugins()
        finally:
            self._loading = False
        self._loaded = True

    def _load_plugins(self) -> None:
        for ep in sorted(entry_points(group=self.plugin_group), key=lambda e: e.name):
            dist = getattr(ep.dist, "name", None) or ep.value
            self._origin = f"plugin {dist}"
            try:
                obj = ep.load()
                if getattr(obj, "registers_into_registry", False) or (
                        callable(obj) and not isinstance(obj, type) and not hasattr(obj, "description")):
                    obj(self)
                else:
                    description = getattr(obj, "description", None) or (obj.__doc__ or "").strip().split("\n")[0]
                    self.register(ep.name.strip().lower(), obj, f"{description} [plugin {dist}]")
            except Exception as exc:  # a broken plugin must not take the benchmark down with it
                print(f"warning: {self.kind} plugin {ep.name!r} ({ep.value}, {self.plugin_group}) was not loaded: "
                      f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
            finally:
                self._origin = "built-in"

    @contextmanager
    def temporarily(self, name: str, value: T, description: str) -> Iterator[T]:
        """``value`` registered as ``name`` (in place of the entry of that name, if any) for the duration of a
        ``with`` block, then the registry as it was: a test's stand-in, never a way to extend the benchmark."""
        self._load()
        previous = self._entries.get(name)
        self._entries[name] = Entry(name, value, description, previous.aliases if previous else (), "temporary")
        try:
            yield value
        finally:
            if previous is None:
                del self._entries[name]
            else:
                self._entries[name] = previous

    # --- reading -------------------------------------------------------------------------------------------------
    def canonical(self, name: str) -> str:
        self._load()
        key = name.strip().lower()
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        if key in self._retired:
            raise BenchError(self._retired[key])
        known = sorted([*self._entries, *self._aliases])
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise BenchError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})")

    def entry(self, name: str) -> Entry[T]:
        return self._entries[self.canonical(name)]

    def get(self, name: str) -> T:
        return self.entry(name).value

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        key = name.strip().lower()
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load()
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (not recursively): each registers what it defines."""
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def registers(fn: Callable) -> Callable:
    """Mark a plugin function that takes the registry and registers into it itself (instead of being registered)."""
    fn.registers_into_registry = True
    return fn

"""Definitions as data: reading a TOML file against a small schema, with every problem one line that names the file
and the field (``attack protocol ./p.toml: stages[0].iterations: expected an integer, got a string ('ten')``).

A schema is a dataclass: a table's keys are its fields, typed as the dataclass annotates them (``str``, ``int``,
``float``, ``bool``, ``tuple[str, ...]``, each optionally ``| None``, which TOML spells by leaving the key out); a
field without a default and not ``| None`` is required. A number may be written as a fraction (``"1/255"``), which
reads as the same float Python computes for ``1 / 255``. A field added to the dataclass is a key of the files at
once: the schema grows with the code that reads it.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from fractions import Fraction
from pathlib import Path

from bench.core.errors import BenchError

_FRACTION = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # what a name read from a file may be (as typed on the command line)


class DataFile:
    """One TOML file being read; ``what`` says what it holds (``attack protocol``, ``paper suites``)."""

    def __init__(self, path: str | Path, what: str):
        self.path, self.what = Path(path), what

    def error(self, field: str, problem: str) -> BenchError:
        where = f"{field}: " if field else ""
        return BenchError(f"{self.what} {self.path}: {where}{problem}")

    def load(self) -> dict:
        if not self.path.is_file():
            raise self.error("", "no such file")
        try:
            return tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise self.error("", f"not valid TOML ({str(exc).splitlines()[0]})") from exc

    def table(self, value, field: str, schema: type, *, skip: tuple[str, ...] = ()) -> dict:
        """The fields of dataclass ``schema`` read from ``value`` (a TOML table), without those in ``skip`` (the
        caller reads them); a key the schema lacks or a required field missing is an error."""
        if not isinstance(value, dict):
            raise self.error(field, f"expected a table, got {describe(value)}")
        known = {f.name: f for f in dataclasses.fields(schema) if f.name not in skip}
        unknown = sorted(set(value) - set(known) - set(skip))
        if unknown:
            raise self.error(join(field, unknown[0]), f"unknown field (known: {', '.join(known)})")
        out = {}
        for name, f in known.items():
            if name in value:
                out[name] = self.typed(value[name], join(field, name), str(f.type))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if "None" not in str(f.type):
                    raise self.error(join(field, name), "missing (required)")
                out[name] = None  # TOML has no null: an optional field without a default is absent
        return out

    def typed(self, value, field: str, annotation: str):
        """``value`` as the annotated type, or an error naming the field."""
        kind = next(k.strip() for k in annotation.split("|") if k.strip() != "None")  # TOML has no null: absent
        reader = READERS.get(kind)
        if reader is None:
            raise self.error(field, f"has type {annotation}, which data files cannot give")
        return reader(self, value, field)

    def name(self, value, field: str) -> str:
        text = self.typed(value, field, "str")
        if not NAME.match(text):
            raise self.error(field, f"{text!r} is not a name (lower-case letters, digits, '.', '_' or '-')")
        return text

    def check(self, ok: bool, field: str, problem: str) -> None:
        if not ok:
            raise self.error(field, problem)


def join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def describe(value) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})" if not isinstance(value, (dict, list)) else kind


def _str(data: DataFile, value, field: str) -> str:
    if not isinstance(value, str):
        raise data.error(field, f"expected a string, got {describe(value)}")
    return value


def _int(data: DataFile, value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise data.error(field, f"expected an integer, got {describe(value)}")
    return value


def _float(data: DataFile, value, field: str) -> float:
    """A number, or a fraction ``"k/n"`` read as the correctly rounded k / n (what Python's ``k / n`` gives)."""
    if isinstance(value, str):
        m = _FRACTION.match(value)
        if not m or int(m.group(2)) == 0:
            raise data.error(field, f"expected a number or a fraction like \"1/255\", got {value!r}")
        return float(Fraction(int(m.group(1)), int(m.group(2))))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise data.error(field, f"expected a number, got {describe(value)}")
    return float(value)


def _bool(data: DataFile, value, field: str) -> bool:
    if not isinstance(value, bool):
        raise data.error(field, f"expected true or false, got {describe(value)}")
    return value


def _strings(data: DataFile, value, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise data.error(field, f"expected a list of strings, got {describe(value)}")
    return tuple(_str(data, v, f"{field}[{i}]") for i, v in enumerate(value))


READERS = {"str": _str, "int": _int, "float": _float, "bool": _bool, "tuple[str, ...]": _strings}

"""Named options of a registered method — a training objective's, a test-time defence's hyperparameters — whose
defaults are the released code's values: a user's settings parsed, checked against the method's options and their
allowed values, and made canonical (sorted, defaults dropped) so that equal settings hash equally."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bench.core.errors import BenchError


def parse_option(kind: str, owner: str, defaults: Mapping[str, float | str],
                 choices: Mapping[str, tuple[str, ...]], name: str, value) -> float | str:
    """``value`` as option ``name`` of ``owner`` (a ``kind``, e.g. objective fare) takes it: a number, or one of the
    allowed texts."""
    if name not in defaults:
        known = ", ".join(defaults) or "none"
        raise BenchError(f"{kind} {owner} has no option {name!r} (its options: {known})")
    if isinstance(defaults[name], str):
        value = str(value)
        if value not in choices.get(name, (value,)):
            raise BenchError(f"option {name} of {owner} must be one of {', '.join(choices[name])}, got {value!r}")
        return value
    try:
        return float(value)
    except ValueError:
        raise BenchError(f"option {name} of {owner} takes a number, got {value!r}") from None


def canonical_options(kind: str, owner: str, defaults: Mapping[str, float | str],
                      choices: Mapping[str, tuple[str, ...]], options: Iterable) -> tuple[tuple[str, str], ...]:
    """``options`` ("name=value" strings or (name, value) pairs) as sorted pairs of text, defaults dropped, so
    that equal settings hash equally (``alpha=1`` and ``alpha=1.0`` and nothing at all are one configuration)."""
    out: dict[str, str] = {}
    for item in options:
        if isinstance(item, str):
            name, sep, value = item.partition("=")
            if not sep:
                raise BenchError(f"{kind} option takes NAME=VALUE, got {item!r}")
        else:
            name, value = item
        name = name.strip()
        parsed = parse_option(kind, owner, defaults, choices, name, str(value).strip())
        if parsed != defaults[name]:
            out[name] = repr(parsed) if isinstance(parsed, float) else parsed
        else:
            out.pop(name, None)
    return tuple(sorted(out.items()))

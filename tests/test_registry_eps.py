"""The registry (aliases, suggestions) and ε parsing, with property-based checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attacks.registry import ATTACKS
from bench.core.eps import parse_eps
from bench.core.errors import BenchError
from bench.core.registry import Registry
from bench.encoders.registry import ENCODERS
from tasks.registry import TASKS


def test_encoder_names_and_aliases():
    methods = ("fare", "tecoa", "simclip", "simclip-siamese")
    expected = {"clip"} | {f"{m}{k}" for m in methods for k in (1, 2, 4)}
    assert expected <= set(ENCODERS.names())
    for alias in methods:
        spec = ENCODERS.get(alias)
        assert spec.name == f"{alias}4" and spec.train_eps.numerator == 4 and spec.method == alias


def test_retired_names_say_where_they_went():
    """``simclip-ref*`` was the released Sim-CLIP; that is ``simclip*`` now, and the old name is refused with the
    new one rather than resolved, so no table can show two rows for one trained encoder."""
    for old, new in (("simclip-ref4", "simclip4"), ("simclip-ref2", "simclip2"), ("simclip-ref", "simclip")):
        with pytest.raises(BenchError, match=f"now '{new}'"):
            ENCODERS.canonical(old)
    assert "simclip-ref4" not in ENCODERS


def test_unknown_name_suggests():
    with pytest.raises(BenchError, match="did you mean 'simclip'"):
        ENCODERS.canonical("simclp")
    with pytest.raises(BenchError, match="unknown attack"):
        ATTACKS.canonical("fgsm-9000")
    assert TASKS.canonical("Zero-Shot") == "zeroshot"


def test_registry_rejects_duplicates():
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1, "one", aliases=("uno",))
    with pytest.raises(ValueError):
        reg.register("uno", 2, "clash")


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12))
def test_registry_lookup_total(name):
    """Every string either resolves to a registered name or raises a one-line BenchError."""
    try:
        assert ENCODERS.canonical(name) in ENCODERS.names()
    except BenchError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("text,value,label", [
    ("4/255", 4 / 255, "4/255"), ("2/255", 2 / 255, "2/255"), ("0.0157", 0.0157, "0.0157"),
    ("0", 0.0, "0"), ("8 / 255", 8 / 255, "8/255"), (".5", 0.5, "0.5"), ("1", 1.0, "255/255"),
])
def test_parse_eps_valid(text, value, label):
    eps = parse_eps(text)
    assert eps.value == pytest.approx(value) and eps.label == label


@pytest.mark.parametrize("text,message", [
    ("4", "did you mean 4/255"), ("-0.1", "negative"), ("-4/255", "negative"), ("abc", "expected a fraction"),
    ("4/0", "division by zero"), ("nan", "expected a fraction"), ("300/255", "must be ≤ 1"), ("", "expected"),
])
def test_parse_eps_invalid(text, message):
    with pytest.raises(BenchError, match=message):
        parse_eps(text)


@given(st.integers(min_value=0, max_value=255))
def test_eps_fraction_roundtrip(k):
    eps = parse_eps(f"{k}/255")
    assert eps.value == pytest.approx(k / 255)
    assert parse_eps(eps.label).value == pytest.approx(eps.value)


@given(st.text(max_size=20))
def test_parse_eps_total(text):
    """Any input gives a valid ε in [0,1] or a one-line BenchError, never another exception."""
    try:
        eps = parse_eps(text)
    except BenchError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0.0 <= eps.value <= 1.0

"""Property-based checks beyond test_registry_eps.py and test_vqa_metrics.py: every registry (all of them, found in
the loaded modules: encoders, attacks, tasks, suites, losses, objectives, sources, bases) on arbitrary text,
ε labels that re-parse to themselves, the result store's round trip with odd strings, and the VQA normaliser on
arbitrary input."""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import bench.runner  # noqa: F401  (a name resolver: it imports every layer that registers names)
from bench.core.config import CellConfig
from bench.core.eps import parse_eps
from bench.core.errors import BenchError
from bench.core.registry import Registry
from bench.store import ROW_COLUMNS, Store
from tasks.metrics_vqa import normalize_answer


def every_registry() -> list[Registry]:
    """Every registry of the package, found in its loaded modules, so that a new one is fuzzed without editing
    this file."""
    ours = [m for name, m in list(sys.modules.items()) if name.split(".")[0] in ("attacks", "bench", "tasks")]
    found = {id(v): v for module in ours for v in list(vars(module).values()) if isinstance(v, Registry)}
    return sorted(found.values(), key=lambda r: r.kind)


REGISTRIES = every_registry()
KNOWN = [(reg, key) for reg in REGISTRIES for e in reg for key in (e.name, *e.aliases)]


def test_the_fuzzed_registries_are_all_of_them():
    kinds = {r.kind for r in REGISTRIES}
    assert {"attack", "base kind", "classification loss", "encoder", "encoder source", "suite", "task",
            "training objective"} <= kinds, kinds


@settings(max_examples=300)
@given(reg=st.sampled_from(REGISTRIES), name=st.text(max_size=16))
def test_every_registry_is_total(reg, name):
    """Arbitrary text: a registered name, or a one-line BenchError naming the kind; ``in`` agrees."""
    try:
        canonical = reg.canonical(name)
    except BenchError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"unknown {reg.kind} ") and name not in reg
    else:
        assert canonical in reg.names() and name in reg


@given(st.sampled_from(KNOWN), st.sampled_from(["", " ", "\t"]), st.booleans())
def test_names_and_aliases_resolve_whatever_the_case(known, pad, upper):
    reg, key = known
    text = pad + (key.upper() if upper else key) + pad
    assert reg.canonical(text) == reg.canonical(key) == reg.entry(key).name


@given(st.floats(min_value=0.0, max_value=1.0))
@example(1.1496408032143521e-09)  # found by CI: it used to snap to 0/255, i.e. no attack
def test_eps_labels_reparse_to_the_same_budget(value):
    eps = parse_eps(repr(value))
    assert eps.value == pytest.approx(value, abs=1e-9)
    again = parse_eps(eps.label)
    assert again == eps  # the stored label names exactly this budget


@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False))
def test_negative_eps_is_refused_as_negative(value):
    for text in (f"-{value!r}", f"-{value!r}/255"):
        with pytest.raises(BenchError, match="negative"):
            parse_eps(text)


odd = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12) | st.sampled_from(
    ["NA", "nan", "None", "null", "#N/A", "-", ",", '"', "a,b", 'say "hi"', "line\nbreak", "cr\rlf", " pad ", "1e5",
     "0", "True"])
numbers = st.floats(allow_nan=False, allow_infinity=False, width=64)


labels = st.sampled_from(["", "apgd-ce", "apgd-t/3", 'odd "quoted", label', "cr\rlf", "line\nbreak", "tab\t "])


@settings(max_examples=60, deadline=None)
@given(sample_ids=st.lists(odd.filter(str.strip), min_size=1, max_size=4, unique=True), broken_by=st.lists(labels),
       value=numbers, label=odd.filter(bool), version=odd.filter(bool))
def test_store_round_trip(sample_ids, broken_by, value, label, version):
    """What a run writes is what it reads back: per-sample records and metric rows, odd strings included."""
    cfg = CellConfig("micro", "clip", None, "zeroshot", "novel-colours", "apgd", 4 / 255, "4/255", len(sample_ids), 0)
    records = [{"sample_id": sid, "index": i, "robust": i % 2 == 0, "iterations": 100 - i,
                "broken_by": broken_by[i] if i < len(broken_by) else "", "loss": value / (i + 1)}
               for i, sid in enumerate(sample_ids)]
    row = {c: None for c in ROW_COLUMNS} | {"run_id": cfg.run_id, "metric": label, "value": value, "ci_low": math.nan,
                                           "eps_str": "4/255", "train_eps": "0", "versions": version, "seed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        run = Store(Path(tmp)).run(cfg)
        run.write_batch(records[:2])
        run.write_batch(records[2:])
        back = run.records().sort_values("index", ignore_index=True)
        assert back.sample_id.tolist() == sample_ids and back.broken_by.astype(str).tolist() == [
            r["broken_by"] for r in records]
        assert back.robust.tolist() == [r["robust"] for r in records]
        assert back.loss.tolist() == pytest.approx([r["loss"] for r in records], rel=1e-15)
        assert run.done_ids() == set(sample_ids)
        run.finish([row], {"run_id": cfg.run_id})
        stored = run.rows()
        assert run.complete and len(stored) == 1 and list(stored.columns) == ROW_COLUMNS
        got = stored.iloc[0]
        assert (got.metric, got.versions, got.eps_str, got.train_eps) == (label, version, "4/255", "0")
        assert got.value == value and math.isnan(got.ci_low)
        pd.testing.assert_frame_equal(Store(Path(tmp)).rows(), stored)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_vqa_normaliser_on_arbitrary_text(text):
    once = normalize_answer(text)
    assert once == once.strip() and "  " not in once
    assert normalize_answer(once) == once

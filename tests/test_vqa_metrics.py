"""The VQA accuracy and its answer normalisation (tasks/metrics_vqa.py), with property tests."""

from __future__ import annotations

import json

import pytest
from conftest import requires_real_data
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.metrics_vqa import (
    ARTICLES,
    NUMBER_WORDS,
    most_common_answers,
    normalize_answer,
    postprocess_answer,
    vqa_accuracy,
)


@pytest.mark.parametrize("raw,expected", [
    ("Two", "2"), ("the dog.", "dog"), ("A Dog", "dog"), ("dont", "don't"), ("1,000", "1000"), ("yes!", "yes"),
    ("  tennis\nracket ", "tennis racket"), ("black-and-white", "black and white"), ("t - shirt", "t shirt"),
    ("2.5", "2.5"), ("none", "0"), ("an apple", "apple"),
])
def test_normalisation_examples(raw, expected):
    assert normalize_answer(raw) == expected


def expected_accuracy(k: int, n: int = 10) -> float:
    """Closed form: with k of n annotators matching, leaving a matching one out leaves k-1, another leaves k."""
    return (k * min(1.0, (k - 1) / 3) + (n - k) * min(1.0, k / 3)) / n


@given(k=st.integers(0, 10))
def test_accuracy_closed_form(k):
    answers = ["cat"] * k + ["dog"] * (10 - k)
    assert vqa_accuracy("cat", answers) == pytest.approx(expected_accuracy(k))


def test_three_matches_are_not_quite_full_marks():
    # the leave-one-out average: 3 matches score 0.9, 4 or more score 1
    assert vqa_accuracy("cat", ["cat"] * 3 + ["dog"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("cat", ["cat"] * 4 + ["dog"] * 6) == 1.0
    assert vqa_accuracy("cat", ["dog"] * 10) == 0.0


words = st.sampled_from(["dog", "two", "The", "a", "an", "cat's", "dont", "red", "3", "ten", "yes", "No", "none"])
punct = st.sampled_from(["", ".", ",", "!", "?", "-", " ", "  ", "\n", "(", ")"])
answers = st.lists(st.tuples(words, punct), min_size=0, max_size=5).map(lambda ws: "".join(w + p for w, p in ws))


@settings(max_examples=200, deadline=None)
@given(answers)
def test_normalised_answers_are_canonical(text):
    out = normalize_answer(text)
    assert out == out.strip() and "  " not in out and out == out.lower()
    tokens = out.split()
    assert not set(tokens) & ARTICLES
    assert not set(tokens) & set(NUMBER_WORDS)


@settings(max_examples=200, deadline=None)
@given(answers)
def test_normalisation_is_idempotent(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once


@settings(max_examples=100, deadline=None)
@given(words, st.sampled_from(["", "the ", "a ", "The "]), st.sampled_from(["", ".", "!"]))
def test_surface_variants_score_alike(word, article, end):
    gts = [word] * 6 + ["other"] * 4
    assert vqa_accuracy(f"{article}{word.upper()}{end}", gts) == vqa_accuracy(word, gts)


def test_most_common_answers_are_distinct_after_normalisation():
    gts = ["Two", "2", "two", "3", "three", "a dog", "dog", "dog", "cat", "2"]
    assert most_common_answers(gts) == ["2", "dog", "3", "cat"]
    assert most_common_answers(gts, k=1) == ["2"]


def test_postprocess_cuts_at_the_answer():
    assert postprocess_answer("Yes, it is") == "Yes"
    assert postprocess_answer("red Question: what") == "red"


def test_real_vqav2_annotations():
    root = requires_real_data("vqav2")
    anns = json.loads((root / "annotations_mini.json").read_text())["annotations"]
    for a in anns:
        gts = [x["answer"] for x in a["answers"]]
        top = most_common_answers(gts, 1)[0]
        # the most common answer of ten scores at least what its count allows; a foreign word scores 0
        count = sum(normalize_answer(g) == normalize_answer(top) for g in gts)
        assert vqa_accuracy(top, gts) == pytest.approx(expected_accuracy(count))
        assert vqa_accuracy("zzzz qqqq", gts) == 0.0

"""Grades and scores: the fast paths of the scoring server agree with the plain formulas."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from models.scoring_model import GradeCutoffs, score_steps

probability = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(bounds=st.lists(probability, min_size=3, max_size=3, unique=True).map(sorted), p=probability)
def test_grade_of_one_probability_equals_grade_of_many(bounds: list[float], p: float) -> None:
    c, b, a = bounds
    cutoffs = GradeCutoffs(a=a, b=b, c=c, qualified=b)
    near = [p, a, b, c, math.nextafter(a, 0), math.nextafter(b, 0), math.nextafter(c, 0)]
    assert [cutoffs.grade_of(x) for x in near] == cutoffs.grade(np.array(near)).tolist()


def test_a_probability_on_a_bound_gets_that_grade() -> None:
    cutoffs = GradeCutoffs(a=0.5, b=0.2, c=0.05, qualified=0.2)
    assert [cutoffs.grade_of(x) for x in (0.5, 0.2, 0.05, 0.049, 0.0, 1.0)] == ["A", "B", "C", "D", "D", "A"]


@given(
    reference=st.lists(probability, min_size=1, max_size=300).map(sorted),
    p=st.lists(probability, min_size=1, max_size=20),
)
def test_score_from_steps_equals_the_share_of_the_reference_below(reference: list[float], p: list[float]) -> None:
    ref = np.array(reference)
    probe = np.array(p + reference + [math.nextafter(x, 0) for x in reference])  # on and just below each value
    share = np.searchsorted(ref, probe, side="right") / len(ref)
    assert np.searchsorted(score_steps(ref), probe, side="right").tolist() == np.rint(share * 100).astype(int).tolist()

"""Grades and the qualified cut-off: lower probability bounds, as the server applies them (numpy only, so
that the stores can use them without loading the model's libraries)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal

import numpy as np

Grade = Literal["A", "B", "C", "D"]
_GRADE_ORDER: tuple[Grade, ...] = ("D", "C", "B", "A")  # below C, then at or above C, B, A
_GRADES_UP = np.array(_GRADE_ORDER)


@dataclass(frozen=True)
class GradeCutoffs:
    """Lower probability bounds of grades A, B and C (D is below C), and the qualified cut-off."""

    a: float
    b: float
    c: float
    qualified: float

    def grade(self, p: np.ndarray) -> np.ndarray:
        """Grades of many probabilities (a probability equal to a bound is at or above it)."""
        bounds = np.array([self.c, self.b, self.a])
        return _GRADES_UP[np.searchsorted(bounds, p, side="right")]

    def grade_of(self, p: float) -> Grade:
        """The grade of one probability, as :meth:`grade` gives it (the scoring server's few leads)."""
        return _GRADE_ORDER[bisect.bisect_right((self.c, self.b, self.a), p)]

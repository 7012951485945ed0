"""Leakage audit: lead attributes that look filled in after the outcome was known.

A CRM export holds each attribute's value at export time. A column the sales team fills in after
contact (a status, a quality grade, a loss reason, notes) describes the outcome rather than predicts it:
a model that uses it looks brilliant offline and is useless for a new lead. Such a column gives itself
away in one of two ways, and :func:`audit_leakage` checks every attribute for both, per lead (one row
per lead at its first scoring moment):

* **It separates too well.** Alone, it separates won from lost leads far better than the model's other
  inputs do.
* **Its filling depends on the outcome.** It is filled in mostly for won leads (a status set once the
  deal is won) or mostly for lost leads (a loss reason).

The audit warns; it never excludes a column on its own. The caller prints :meth:`LeakageAudit.lines`
(the suspects and the ``--exclude-columns`` line that removes them) and logs
:meth:`LeakageAudit.to_frame` with the training run.
"""

from __future__ import annotations

import csv
import io
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

Labels = Sequence[bool] | Sequence[int] | np.ndarray | pd.Series
AttributeKind = Literal["category", "number"]

ENCODING_SMOOTHING = 10.0
"""Pseudo-leads at the overall win rate added to every category when its win rate is learnt (m-estimate)."""

DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class LeakageCriteria:
    """The thresholds of the audit; :func:`audit_leakage` says what each one means and why it is set so.

    Attributes:
        min_auc: separation: an attribute's AUC alone must reach this ...
        auc_margin: ... and beat by this much the best AUC of every input that is not a suspect.
        min_fill_ratio: filling: one class's fill rate over the other's must reach this ...
        max_fill_p_value: ... and the difference must not be chance (two-sided Fisher exact test).
    """

    min_auc: float = 0.80
    auc_margin: float = 0.10
    min_fill_ratio: float = 1.75
    max_fill_p_value: float = 0.001


@dataclass(frozen=True)
class AttributeAudit:
    """What the audit found for one attribute column (every share is a share of leads).

    Attributes:
        column: the attribute's column name.
        kind: ``"category"`` (text or bool, scored by its out-of-sample win rate) or ``"number"`` (ranked).
        roc_auc: the attribute's ROC AUC alone, out of sample (0.5 = no separation, 1 = perfect; NaN when
            the scored leads are all of one class).
        fill_rate_won: share of won leads with a value.
        fill_rate_lost: share of lost leads with a value.
        fill_p_value: two-sided Fisher exact test of "has a value" against "won" (1.0 when untestable).
        reasons: why it is a suspect, in words; empty when it is not one.
    """

    column: str
    kind: AttributeKind
    roc_auc: float
    fill_rate_won: float
    fill_rate_lost: float
    fill_p_value: float
    reasons: tuple[str, ...] = ()

    @property
    def suspect(self) -> bool:
        return bool(self.reasons)

    @property
    def reason(self) -> str:
        """The reasons in one sentence ('' when not a suspect)."""
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class LeakageAudit:
    """The audit of every attribute of one training run.

    Attributes:
        attributes: one result per attribute column, in the column order given.
        leads: leads whose fill rates were counted (training and evaluation leads together).
        won_leads: won leads among them.
        method: how the AUCs were kept out of sample, in words.
        other_input_aucs: the AUC of each of the model's other inputs alone, as the caller gave them.
        criteria: the thresholds used.
    """

    attributes: tuple[AttributeAudit, ...]
    leads: int
    won_leads: int
    method: str
    other_input_aucs: Mapping[str, float]
    criteria: LeakageCriteria

    @property
    def suspects(self) -> tuple[AttributeAudit, ...]:
        return tuple(a for a in self.attributes if a.suspect)

    @property
    def exclude_line(self) -> str | None:
        """The ``--exclude-columns`` option that removes every suspect (None when there is none)."""
        names = [a.column for a in self.suspects]
        return exclude_columns_line(names) if names else None

    def lines(self) -> list[str]:
        """Human-readable summary for the CLI: one line per suspect, then the option that removes them."""
        if not self.suspects:
            return [f"leakage audit: no suspect among {len(self.attributes)} attribute(s) ({self.method})"]
        out = [
            f"leakage audit: {len(self.suspects)} of {len(self.attributes)} attribute(s) look filled in after the "
            f"outcome was known ({self.leads} leads, {self.won_leads} won; AUCs: {self.method}):"
        ]
        out += [f"  - {a.column}: {a.reason}" for a in self.suspects]
        out.append(f"  to leave them out, train again with: {self.exclude_line}")
        out.append("  (a warning only: nothing was excluded)")
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per attribute: the table to log with the training run."""
        columns = ["column", "kind", "roc_auc", "fill_rate_won", "fill_rate_lost", "fill_p_value", "suspect", "reason"]
        rows = [
            [a.column, a.kind, a.roc_auc, a.fill_rate_won, a.fill_rate_lost, a.fill_p_value, a.suspect, a.reason]
            for a in self.attributes
        ]
        return pd.DataFrame(rows, columns=columns)


def audit_leakage(
    attributes: pd.DataFrame,
    won: Labels,
    *,
    evaluation: tuple[pd.DataFrame, Labels] | None = None,
    other_input_aucs: Mapping[str, float] | None = None,
    criteria: LeakageCriteria | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> LeakageAudit:
    """Check every attribute for the two signatures of a column filled in after the outcome was known.

    One row per lead (e.g. each training lead at its first scoring moment); every share and AUC is per
    lead. The AUCs are those of :func:`single_input_aucs`.

    **(a) Separation.** A suspect's AUC alone is at least ``min_auc`` (0.80) *and* at least
    ``auc_margin`` (0.10) above the best input that is not a suspect: the model's other inputs
    (``other_input_aucs``, e.g. each touch feature alone, when the caller has them) and the other
    attributes that are not suspects. Comparing with non-suspects only means that two leaky columns do not
    hide each other (a status and its copy, both near 0.95) and a strong leak does not hide a weaker one,
    while an honest attribute is still compared with every honest input. Why these numbers: a single
    honest attribute rarely reaches 0.80 alone in lead scoring (demo data: every attribute 0.53-0.66; the
    real X Education export: every column but the sales-assigned ones at most 0.72), while a
    status set by sales does (``Tags`` there: 0.92). A margin of 0.10 is several standard errors of an
    AUC even at 100 wins (about 0.03), so it is not noise; it is what "far better than the model's other
    inputs" means.

    **(b) Filled in mostly for one class.** A suspect has a value for at least ``min_fill_ratio`` (1.75)
    times as large a share of one class as of the other (won over lost, or lost over won), and the
    difference is not chance (two-sided Fisher exact test, p < ``max_fill_p_value``, 0.001). A ratio of
    shares is a likelihood ratio, so it means the same at a 3% or a 40% win rate, where "most filled rows
    are won" would not. A ratio of 1.75 implies the column is missing for at least 43% of the leads of the
    less-filled class, so "often missing" holds by construction: a column filled for nearly every lead
    never qualifies. A status set only for won leads has an infinite ratio; a loss reason, the inverse.
    Why 1.75: on the real export, the form fields customers fill in with gaps (occupation, motivation,
    specialisation, city) have ratios of 1.12-1.52 and the fields sales assigns (``Lead Quality``,
    ``Lead Profile``) 2.09 and 2.70; 1.75 is about halfway (geometrically) between the two groups. It is
    tuned on one export, which is one more reason to warn rather than exclude.

    What it cannot see: a leak whose values are unique per lead (free text typed after the call) and that
    is filled alike for both classes; a leaky number that is not monotone in the outcome; a snapshot taken
    at export time (``Last Activity``) that separates no better than honest inputs do. Read the data
    dictionary too.

    Args:
        attributes: the raw attribute values, one row per lead (no id, time or label column).
        won: 1/True for a won lead, 0/False otherwise, one per row of ``attributes``.
        evaluation: optional (attributes, won) of *other* leads with the same columns (e.g. the calibration
            window): win rates learnt on ``attributes`` are scored there; without it, out of fold.
        other_input_aucs: the AUC of each of the model's other inputs alone (name -> AUC), on the same
            leads, e.g. from :func:`single_input_aucs` on the touch features.
        criteria: the thresholds; :class:`LeakageCriteria` defaults when None.
        folds: folds of the out-of-fold encoding (fewer when a class has fewer leads).
        seed: seed of the fold assignment.

    Returns:
        Per attribute: AUC alone, fill rates among won and lost leads, and why it is a suspect.

    Raises:
        ValueError: labels that are not 0/1, a label count that differs from the rows, or an evaluation
            set that lacks a column.
    """
    criteria = criteria or LeakageCriteria()
    others = dict(other_input_aucs or {})
    aucs, method = _aucs_and_method(attributes, won, evaluation, folds, seed)
    y = _labels(won, len(attributes), "won")
    frames = [attributes]
    if evaluation is not None:
        frames.append(evaluation[0][list(attributes.columns)])
        y = np.concatenate([y, _labels(evaluation[1], len(evaluation[0]), "evaluation won")])
    measured = {}
    for column in attributes.columns:
        filled = np.concatenate([frame[column].notna().to_numpy() for frame in frames])
        measured[str(column)] = _fill_rates(filled, y)
    fill_reasons = {name: _fill_reason(*rates, criteria) for name, rates in measured.items()}
    fill_suspects = {name for name, reason in fill_reasons.items() if reason}
    separation = _separation_reasons(aucs, fill_suspects, others, criteria)
    results = []
    for column in attributes.columns:
        name = str(column)
        reasons = tuple(r for r in (separation.get(name, ""), fill_reasons[name]) if r)
        results.append(AttributeAudit(name, _kind(attributes[column]), aucs[name], *measured[name], reasons))
    return LeakageAudit(
        attributes=tuple(results),
        leads=len(y),
        won_leads=int(y.sum()),
        method=method,
        other_input_aucs=others,
        criteria=criteria,
    )


def single_input_aucs(
    inputs: pd.DataFrame,
    won: Labels,
    *,
    evaluation: tuple[pd.DataFrame, Labels] | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> dict[str, float]:
    """ROC AUC of each column alone, out of sample: how well it separates won from lost leads by itself.

    A category (text, bool; missing is a category of its own) scores a lead by the win rate of its
    category learnt on *other* leads, with ``ENCODING_SMOOTHING`` pseudo-leads at the overall rate (an
    m-estimate; unseen categories get the overall rate): learnt on ``inputs`` and scored on
    ``evaluation`` when given, otherwise out of fold (seeded stratified K-fold, AUC over the pooled
    held-out scores). In-sample encoding would give a column of unique values (an id, free text) an AUC
    of 1; out of sample it gets 0.5, as it should. A number is ranked as it is (rank AUC, the
    Mann-Whitney statistic), with missing as one value placed below or above every number; the direction
    and the placement are the two choices of four that separate best, an optimism that is negligible at
    the hundreds of leads training needs. It is scored on ``evaluation`` when given, else on all leads.

    Args:
        inputs: one row per lead, one column per input.
        won: 1/True for a won lead, 0/False otherwise.
        evaluation: optional (inputs, won) of other leads to score on.
        folds: folds of the out-of-fold encoding (fewer when a class has fewer leads).
        seed: seed of the fold assignment.

    Returns:
        Column name -> AUC (NaN when the scored leads are all of one class or there are too few for folds).
    """
    return _aucs_and_method(inputs, won, evaluation, folds, seed)[0]


_SHELL_SAFE_IN_DOUBLE_QUOTES = re.compile(r'^[^"$`\\!]*$')


def exclude_columns_line(columns: Sequence[str]) -> str:
    """The ``--exclude-columns`` option that leaves ``columns`` out, quoted for a POSIX shell.

    The CLI reads the option's value as one CSV record (names separated by commas, a name holding a comma
    or a quote in double quotes) and strips spaces from each name; so the names are written as a CSV
    record, and that record is quoted for the shell.

    Args:
        columns: the column names, in the order to list them (a repeated name is listed once).

    Returns:
        e.g. ``--exclude-columns "Tags,Lead Quality"``; single-quoted when the record holds a character a
        shell expands inside double quotes (``$``, a backquote, a backslash, ``"`` or ``!``), e.g.
        ``--exclude-columns 'Tags,"City, State"'``.

    Raises:
        ValueError: no column, or an empty name or one with spaces at either end (the CLI strips them).
    """
    if not columns:
        raise ValueError("no column to exclude")
    for name in columns:
        if not name.strip() or name != name.strip():
            raise ValueError(
                f"column {name!r} cannot be written in --exclude-columns, whose names are stripped of spaces; "
                "rename it in the export"
            )
    record = io.StringIO()
    csv.writer(record, lineterminator="").writerow(list(dict.fromkeys(columns)))
    value = record.getvalue()
    quoted = f'"{value}"' if _SHELL_SAFE_IN_DOUBLE_QUOTES.match(value) else shlex.quote(value)
    return f"--exclude-columns {quoted}"


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------
def _labels(won: Labels, rows: int, name: str) -> np.ndarray:
    y = np.asarray(won)
    if y.ndim != 1 or len(y) != rows:
        raise ValueError(f"{name}: expected one label per row ({rows}), got shape {y.shape}")
    try:
        as_float = y.astype(float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: labels must be 0/1 or booleans") from err
    if not np.isin(as_float, (0.0, 1.0)).all():
        raise ValueError(f"{name}: labels must be 0/1 or booleans")
    return as_float.astype(np.int64)


def _kind(values: pd.Series) -> AttributeKind:
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return "category"
    return "number"


def _aucs_and_method(
    inputs: pd.DataFrame,
    won: Labels,
    evaluation: tuple[pd.DataFrame, Labels] | None,
    folds: int,
    seed: int,
) -> tuple[dict[str, float], str]:
    y = _labels(won, len(inputs), "won")
    if evaluation is not None:
        eval_frame, eval_won = evaluation
        missing = [str(c) for c in inputs.columns if c not in eval_frame.columns]
        if missing:
            raise ValueError(f"evaluation set lacks column(s): {', '.join(missing)}")
        y_eval = _labels(eval_won, len(eval_frame), "evaluation won")
        aucs = {
            str(c): _category_auc_on(inputs[c], y, eval_frame[c], y_eval)
            if _kind(inputs[c]) == "category"
            else _number_auc(eval_frame[c], y_eval)
            for c in inputs.columns
        }
        return aucs, f"learnt on {len(inputs)} leads, scored on {len(eval_frame)} other leads"
    fold_of, used = _fold_assignment(y, folds, seed)
    aucs = {
        str(c): _category_auc_out_of_fold(inputs[c], y, fold_of)
        if _kind(inputs[c]) == "category"
        else _number_auc(inputs[c], y)
        for c in inputs.columns
    }
    method = f"{used}-fold out of fold, seed {seed}" if used else "too few leads of a class for out-of-fold AUCs"
    return aucs, method


def _fold_assignment(y: np.ndarray, folds: int, seed: int) -> tuple[np.ndarray | None, int]:
    """Fold number per row (stratified, seeded), fewer folds when a class is small; None below 2 folds."""
    used = min(folds, int(y.sum()), int(len(y) - y.sum()))
    if used < 2:
        return None, 0
    fold_of = np.empty(len(y), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=used, shuffle=True, random_state=seed)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(y)), y)):
        fold_of[held_out] = k
    return fold_of, used


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


def _category_codes(values: pd.Series) -> np.ndarray:
    """Each value as text, missing as a category of its own."""
    return np.array(["\x00missing" if pd.isna(v) else f"={v}" for v in values.astype(object)], dtype=object)


def _encode(train_codes: np.ndarray, train_y: np.ndarray, codes: np.ndarray, prior: float) -> np.ndarray:
    """Smoothed win rate of each category, learnt on the training rows; unseen categories get the prior."""
    grouped = pd.DataFrame({"code": train_codes, "y": train_y}).groupby("code")["y"].agg(["sum", "count"])
    rates = (grouped["sum"] + ENCODING_SMOOTHING * prior) / (grouped["count"] + ENCODING_SMOOTHING)
    return pd.Series(codes).map(rates).fillna(prior).to_numpy(dtype=float)


def _category_auc_on(values: pd.Series, y: np.ndarray, eval_values: pd.Series, y_eval: np.ndarray) -> float:
    if len(y) == 0:
        return float("nan")
    return _auc(y_eval, _encode(_category_codes(values), y, _category_codes(eval_values), float(y.mean())))


def _category_auc_out_of_fold(values: pd.Series, y: np.ndarray, fold_of: np.ndarray | None) -> float:
    if fold_of is None:
        return float("nan")
    codes = _category_codes(values)
    # One prior for every fold: a per-fold prior would rank held-out leads by their fold's win count (a fold
    # with more held-out wins learns a lower prior), which pushes a column of unique values below 0.5.
    prior = float(y.mean())
    score = np.empty(len(y), dtype=float)
    for k in np.unique(fold_of):
        held_out = fold_of == k
        score[held_out] = _encode(codes[~held_out], y[~held_out], codes[held_out], prior)
    return _auc(y, score)


def _number_auc(values: pd.Series, y: np.ndarray) -> float:
    """Rank AUC, direction-free, with missing as one value below or above every number (the better)."""
    if len(np.unique(y)) < 2:
        return float("nan")
    x = values.to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(x)
    if missing.all():
        return 0.5
    low, high = float(np.nanmin(x)) - 1.0, float(np.nanmax(x)) + 1.0
    best = 0.0
    for placed in (low, high):
        auc = _auc(y, np.where(missing, placed, x))
        best = max(best, auc, 1.0 - auc)
    return best


def _fill_rates(filled: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Share of won and of lost leads with a value, and the Fisher exact p-value of the difference."""
    won, lost = y == 1, y == 0
    fill_won = float(filled[won].mean()) if won.any() else float("nan")
    fill_lost = float(filled[lost].mean()) if lost.any() else float("nan")
    testable = bool(won.any() and lost.any() and 0 < filled.sum() < len(filled))
    if not testable:
        return fill_won, fill_lost, 1.0
    table = [
        [int(filled[won].sum()), int((~filled[won]).sum())],
        [int(filled[lost].sum()), int((~filled[lost]).sum())],
    ]
    return fill_won, fill_lost, float(fisher_exact(table).pvalue)


def _fill_reason(fill_won: float, fill_lost: float, p_value: float, criteria: LeakageCriteria) -> str:
    if math.isnan(fill_won) or math.isnan(fill_lost) or p_value >= criteria.max_fill_p_value:
        return ""
    for more, less, high, low in (("won", "lost", fill_won, fill_lost), ("lost", "won", fill_lost, fill_won)):
        ratio = math.inf if low == 0 else high / low
        if high > 0 and ratio >= criteria.min_fill_ratio:
            how = f"only {more} leads have one" if low == 0 else f"{ratio:.1f} times as often"
            return (
                f"filled in mostly for {more} leads (a value for {high:.0%} of {more} and {low:.0%} of {less} "
                f"leads: {how})"
            )
    return ""


def _separation_reasons(
    aucs: Mapping[str, float],
    fill_suspects: set[str],
    other_input_aucs: Mapping[str, float],
    criteria: LeakageCriteria,
) -> dict[str, str]:
    """Attributes whose AUC reaches ``min_auc`` and beats every input that is not a suspect by ``auc_margin``.

    Starts from every attribute at or above ``min_auc`` and lets go, weakest first, of each that does not
    beat the best non-suspect by the margin; one let go becomes a reference for the rest.
    """
    valid = {name: auc for name, auc in aucs.items() if not math.isnan(auc)}
    candidates = sorted((n for n, a in valid.items() if a >= criteria.min_auc), key=lambda n: valid[n])
    references = [(a, n) for n, a in valid.items() if n not in candidates and n not in fill_suspects]
    references += [(a, n) for n, a in other_input_aucs.items() if not math.isnan(a)]
    while candidates:
        best = max(references, default=(0.5, ""))[0]
        if valid[candidates[0]] >= best + criteria.auc_margin:
            break
        weakest = candidates.pop(0)
        if weakest not in fill_suspects:
            references.append((valid[weakest], weakest))
    if not references:
        return {
            n: f"alone it separates won from lost (AUC {valid[n]:.3f}) and no other input compares" for n in candidates
        }
    best_auc, best_name = max(references)
    return {
        n: (
            f"alone it separates won from lost far better than the other inputs: AUC {valid[n]:.3f} against "
            f"{best_auc:.3f} for the best input that is not a suspect ({best_name})"
        )
        for n in candidates
    }

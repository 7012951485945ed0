"""The leakage audit flags columns filled in after the outcome, and only those, on data worked out by hand."""

from __future__ import annotations

import csv
import shlex

import numpy as np
import pandas as pd
import pytest

from training.leakage import AttributeAudit, LeakageAudit, audit_leakage, exclude_columns_line, single_input_aucs

# 20 leads, 6 won (the first six). By hand, per lead:
#   company_size  large for 4 won + 6 lost, small for 2 won + 8 lost (weakly predictive, always filled)
#   lead_status   "Qualified" for 4 of the 6 won leads, missing for everyone else (set by sales once won)
#   owner_notes   "signed" for every won lead, "no answer" for every lost lead (separates perfectly)
WON = [1] * 6 + [0] * 14


def make_leads() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "company_size": ["large"] * 4 + ["small"] * 2 + ["large"] * 6 + ["small"] * 8,
            "lead_status": ["Qualified"] * 4 + [None] * 16,
            "owner_notes": ["signed"] * 6 + ["no answer"] * 14,
        }
    )


def by_column(audit: LeakageAudit) -> dict[str, AttributeAudit]:
    return {a.column: a for a in audit.attributes}


def cli_names(line: str) -> list[str]:
    """What the shell and the CLI make of the line: shell words, then one CSV record (leadscore/cli.py)."""
    words = shlex.split(line)
    assert words[0] == "--exclude-columns" and len(words) == 2
    return [c.strip() for row in csv.reader([words[1]], skipinitialspace=True) for c in row if c.strip()]


def test_aucs_on_an_evaluation_set_equal_the_hand_count() -> None:
    # Win rates learnt on one copy of the 20 leads, scored on another (6 won x 14 lost = 84 pairs).
    # company_size: large scores above small. Won-large vs lost-small: 4 x 8 = 32 pairs ranked right;
    #   ties (same size): 4 x 6 + 2 x 8 = 40, half credit; won-small vs lost-large: wrong. AUC = 52/84.
    # lead_status: Qualified (4/4 won) scores above missing (2/16 won). Won-Qualified vs every lost:
    #   4 x 14 = 56 right; won-missing vs lost (all missing): 2 x 14 = 28 ties. AUC = (56 + 14)/84 = 70/84.
    # owner_notes: every won above every lost. AUC = 1.
    leads = make_leads()
    aucs = single_input_aucs(leads, WON, evaluation=(make_leads(), WON))
    assert aucs == pytest.approx({"company_size": 52 / 84, "lead_status": 70 / 84, "owner_notes": 1.0})


def test_a_status_filled_only_for_won_leads_is_flagged() -> None:
    audit = audit_leakage(make_leads(), WON, evaluation=(make_leads(), WON))
    status = by_column(audit)["lead_status"]
    # 8 of the 12 won leads of both sets have a status, none of the 28 lost leads.
    assert (status.fill_rate_won, status.fill_rate_lost) == pytest.approx((8 / 12, 0.0))
    assert status.suspect
    assert any(r.startswith("filled in mostly for won leads") for r in status.reasons)


def test_a_status_filled_for_every_won_lead_is_flagged_out_of_fold_too() -> None:
    leads = make_leads().assign(lead_status=pd.Series(["Qualified"] * 6 + [None] * 14, dtype=object))
    status = by_column(audit_leakage(leads, WON))["lead_status"]
    assert (status.fill_rate_won, status.fill_rate_lost) == (1.0, 0.0)
    # Fisher exact test: the 6 filled leads are exactly the 6 won ones, 1 table in C(20,6) = 38,760.
    assert status.fill_p_value == pytest.approx(1 / 38760)
    assert "filled in mostly for won leads (a value for 100% of won and 0% of lost leads" in status.reason


def test_four_filled_leads_out_of_twenty_are_not_evidence_enough() -> None:
    # 4 of 6 won leads filled, 0 of 14 lost: p = C(6,4)/C(20,4) = 15/4845 = 0.0031, above 0.001.
    status = by_column(audit_leakage(make_leads(), WON))["lead_status"]
    assert (status.fill_rate_won, status.fill_rate_lost) == pytest.approx((4 / 6, 0.0))
    assert status.fill_p_value == pytest.approx(15 / 4845)
    assert not any("filled in" in r for r in status.reasons)


def test_a_loss_reason_filled_only_for_lost_leads_is_flagged() -> None:
    leads = pd.DataFrame({"loss_reason": [None] * 6 + ["budget", "timing", "competitor"] * 4 + [None] * 2})
    reason = by_column(audit_leakage(leads, WON))["loss_reason"]
    assert (reason.fill_rate_won, reason.fill_rate_lost) == pytest.approx((0.0, 12 / 14))
    assert "filled in mostly for lost leads" in reason.reason


def test_notes_that_alone_separate_won_from_lost_are_flagged() -> None:
    # Out of fold (5 stratified folds, one overall prior): a held-out won lead's "signed" was learnt on 4 or 5
    # other won leads, (w + 10 x 0.3)/(w + 10) >= 0.5; a held-out lost lead's "no answer" on 11 or 12 lost
    # leads, 3/(l + 10) <= 0.15. Every won lead scores above every lost lead: AUC 1.
    audit = audit_leakage(make_leads()[["owner_notes"]], WON, other_input_aucs={"touches": 0.7})
    notes = audit.attributes[0]
    assert notes.roc_auc == 1.0
    assert (notes.fill_rate_won, notes.fill_rate_lost) == (1.0, 1.0)  # filled for everyone: not the fill signature
    assert notes.reasons == (
        "alone it separates won from lost far better than the other inputs: AUC 1.000 against 0.700 for the best "
        "input that is not a suspect (touches)",
    )


def test_a_column_no_better_than_the_other_inputs_is_not_flagged_for_separation() -> None:
    audit = audit_leakage(make_leads()[["owner_notes"]], WON, other_input_aucs={"touches": 0.95})
    assert not audit.attributes[0].suspect  # 1.0 is not 0.10 above 0.95


def test_an_ordinary_weakly_predictive_column_is_not_flagged() -> None:
    audit = audit_leakage(make_leads(), WON, evaluation=(make_leads(), WON))
    size = by_column(audit)["company_size"]
    assert size.roc_auc == pytest.approx(52 / 84)
    assert (size.fill_rate_won, size.fill_rate_lost) == (1.0, 1.0)
    assert not size.suspect and size.reason == ""
    assert [a.column for a in audit.suspects] == ["lead_status", "owner_notes"]


def test_two_leaky_columns_do_not_hide_each_other() -> None:
    # owner_notes and its copy both have AUC 1; each is compared with company_size (52/84), not with the other.
    leads = make_leads().assign(notes_copy=lambda f: f["owner_notes"])
    audit = audit_leakage(leads, WON, evaluation=(leads, WON))
    assert {a.column for a in audit.suspects} == {"lead_status", "owner_notes", "notes_copy"}
    assert f"against {52 / 84:.3f} for the best input that is not a suspect (company_size)" in (
        by_column(audit)["notes_copy"].reason
    )


def test_a_column_filled_somewhat_more_often_for_won_leads_is_not_flagged() -> None:
    # 200 leads: filled for 50 of 60 won (83%) and 80 of 140 lost (57%), the same two values in both classes.
    # Not chance (Fisher p = 0.00034), but 1.46 times as often, under 1.75: a form field some leads skip.
    occupation = ["employed", "student"] * 25 + [None] * 10 + ["employed", "student"] * 40 + [None] * 60
    audit = audit_leakage(pd.DataFrame({"occupation": occupation}), [1] * 60 + [0] * 140)
    result = audit.attributes[0]
    assert (result.fill_rate_won, result.fill_rate_lost) == pytest.approx((50 / 60, 80 / 140))
    assert result.fill_p_value < 0.001
    assert not result.suspect


def test_unique_values_get_no_credit_out_of_sample() -> None:
    # An id or free text: every held-out value is unseen, so every lead gets the same overall rate (AUC 0.5).
    # Learnt and scored on the same leads it would separate perfectly.
    leads = pd.DataFrame({"free_text": [f"note {i}" for i in range(20)]})
    assert single_input_aucs(leads, WON) == {"free_text": 0.5}


def test_numbers_are_ranked_with_missing_as_a_value_of_its_own() -> None:
    # Won leads 5..10 visits, lost leads 0..4 visits or missing. Missing placed below every number: every won
    # lead ranks above every lost lead (AUC 1); placed above, the 6 missing lost leads outrank all won ones.
    visits = [5.0, 6, 7, 8, 9, 10] + [0.0, 1, 2, 3, 4, 0, 1, 2] + [None] * 6
    aucs = single_input_aucs(pd.DataFrame({"visits": visits}), WON)
    assert aucs == {"visits": 1.0}


def test_the_exclude_line_quotes_names_with_spaces_for_the_shell() -> None:
    line = exclude_columns_line(["Tags", "Lead Quality"])
    assert line == '--exclude-columns "Tags,Lead Quality"'
    assert cli_names(line) == ["Tags", "Lead Quality"]


@pytest.mark.parametrize(
    ("names", "line"),
    [
        (["City, State", "Tags"], """--exclude-columns '"City, State",Tags'"""),
        (["Cost $"], "--exclude-columns 'Cost $'"),
        (['Score "v2"'], '--exclude-columns \'"Score ""v2"""\''),
        (["it's"], '--exclude-columns "it\'s"'),
    ],
)
def test_the_exclude_line_survives_the_shell_and_the_cli(names: list[str], line: str) -> None:
    assert exclude_columns_line(names) == line
    assert cli_names(line) == names


def test_a_name_the_cli_would_strip_cannot_be_excluded() -> None:
    with pytest.raises(ValueError, match="stripped"):
        exclude_columns_line(["Tags", " padded "])
    with pytest.raises(ValueError, match="no column"):
        exclude_columns_line([])


def test_the_audit_warns_with_the_line_that_removes_the_suspects() -> None:
    leads = make_leads().rename(columns={"lead_status": "Lead Status"})
    audit = audit_leakage(leads, WON, evaluation=(leads, WON))
    assert audit.exclude_line == '--exclude-columns "Lead Status,owner_notes"'
    text = "\n".join(audit.lines())
    assert "\n  - Lead Status: " in text and "\n  - owner_notes: " in text and "\n  - company_size" not in text
    assert audit.exclude_line in text and "nothing was excluded" in text
    table = audit.to_frame()
    assert table["suspect"].tolist() == [False, True, True]
    assert (audit.leads, audit.won_leads) == (40, 12)


def test_nothing_to_warn_about_gives_no_exclude_line() -> None:
    audit = audit_leakage(make_leads()[["company_size"]], WON)
    assert audit.suspects == () and audit.exclude_line is None
    assert audit.lines() == [f"leakage audit: no suspect among 1 attribute(s) ({audit.method})"]


def test_labels_must_be_one_per_lead_and_zero_or_one() -> None:
    with pytest.raises(ValueError, match="one label per row"):
        audit_leakage(make_leads(), WON[:-1])
    with pytest.raises(ValueError, match="0/1"):
        audit_leakage(make_leads(), np.array(WON) * 2)
    with pytest.raises(ValueError, match="lacks column"):
        audit_leakage(make_leads(), WON, evaluation=(make_leads()[["owner_notes"]], WON))


def test_the_training_audit_counts_a_lead_as_won_by_its_moments_before_sampling() -> None:
    """Six leads with two train moments each; lead b's won moment was sampled out (the Dask engine's class
    sampling). With the carried per-lead label b is a won lead of the audit, as the local engine counts it."""
    from training.pipeline import LEAD_WON, Split, audit_attributes

    train = pd.DataFrame(
        {
            "lead_id": ["a", "a", "b", "c", "c", "d", "d", "e", "e", "f", "f"],
            "label": [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0],  # b's second (won) moment is not here
            "source": ["x"] * 11,
        }
    )
    calibration = pd.DataFrame({"lead_id": ["g", "h", "i", "j"], "label": [1, 0, 1, 0], "source": ["x"] * 4})
    examples = pd.concat([train, calibration], ignore_index=True)
    split = Split("time", np.arange(11), np.arange(11, 15), np.arange(0), windows={}, weight=np.ones(15))
    as_sampled = audit_attributes(examples, split, ["lead_id", "created_at", "source"], seed=0)
    # leads and won leads of both windows: train a and d, calibration g and i
    assert (as_sampled.leads, as_sampled.won_leads) == (10, 4)
    examples[LEAD_WON] = examples.groupby("lead_id")["label"].transform("max")
    examples.loc[examples["lead_id"] == "b", LEAD_WON] = 1
    carried = audit_attributes(examples, split, ["lead_id", "created_at", "source"], seed=0)
    assert (carried.leads, carried.won_leads) == (10, 5)  # b too

"""Behavioural tests of the trained model: direction and invariance, from raw touches."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from features import LeadRecord, TouchRecord, build_features_from_records
from tests.conftest import TrainedWorld
from tests.factories import records_from_frames
from training.data import load_crm_data


@pytest.fixture(scope="module")
def sample_leads(trained: TrainedWorld) -> tuple[list[LeadRecord], object]:
    data = load_crm_data(trained.data_dir)
    as_of = (data.end_time - pd.Timedelta(days=30)).to_pydatetime()
    leads = data.leads[data.leads.created_at <= as_of].sample(300, random_state=0)
    return records_from_frames(leads, data.touchpoints), as_of


def probabilities(trained: TrainedWorld, leads: list[LeadRecord], as_of) -> np.ndarray:
    model = trained.result.model
    return model.predict_proba(build_features_from_records(leads, as_of, model.spec).astype(np.float64))


@pytest.mark.parametrize("touch_type", ["demo_request", "proposal"])
@pytest.mark.parametrize("days_ago", [0, 3, 20, 45])
def test_a_demo_request_or_proposal_never_lowers_the_probability(trained, sample_leads, touch_type, days_ago) -> None:
    leads, as_of = sample_leads
    # Leads that already had a touch before the new one, so "first touch" stays what it was.
    leads = [
        lead
        for lead in leads
        if lead.touchpoints and min(t.occurred_at for t in lead.touchpoints) < as_of - timedelta(days=days_ago)
    ]
    when = as_of - timedelta(days=days_ago)
    more = [replace(lead, touchpoints=[*lead.touchpoints, TouchRecord(when, touch_type, "web")]) for lead in leads]
    before, after = probabilities(trained, leads, as_of), probabilities(trained, more, as_of)
    assert len(leads) > 50
    assert (after >= before - 1e-12).all()
    assert (after > before).any()  # and it does matter somewhere


def test_changing_lead_id_changes_nothing(trained, sample_leads) -> None:
    leads, as_of = sample_leads
    renamed = [replace(lead, lead_id=f"other-{i}") for i, lead in enumerate(leads)]
    np.testing.assert_array_equal(probabilities(trained, leads, as_of), probabilities(trained, renamed, as_of))


def test_reasons_read_like_sentences_and_sum_to_the_margin(trained, sample_leads) -> None:
    leads, as_of = sample_leads
    model = trained.result.model
    X = build_features_from_records(leads, as_of, model.spec).astype(np.float64)
    explained = model.explain(X, [lead.attributes for lead in leads])
    contrib = model.contributions(X)
    np.testing.assert_allclose(contrib.sum(axis=1), model.margin(X), rtol=1e-6, atol=1e-6)
    for e in explained:
        assert 0 <= e.fit <= 100 and 0 <= e.engagement <= 100
        positives = [r for r in e.reasons if r.impact > 0]
        negatives = [r for r in e.reasons if r.impact < 0]
        assert len(positives) <= 3 and len(negatives) <= 3
        for r in e.reasons:
            assert r.description[0].isupper() or r.description[0].isdigit(), r.description
            assert "_" not in r.description, r.description  # no raw feature names
    requested = [i for i, lead in enumerate(leads) if any(t.touch_type == "demo_request" for t in lead.touchpoints)]
    texts = [r.description for i in requested for r in explained[i].reasons]
    assert any(t.startswith("Requested a demo") for t in texts)

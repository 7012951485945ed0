"""Concurrent single-lead requests scored together get exactly the answers they would get alone."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from models.registry import LoadedModel
from serving.coalescer import ScoreCoalescer
from serving.errors import InvalidLeadData
from serving.model_source import Serving
from serving.schemas import LeadIn, ScoreOut
from serving.scoring import Threshold, score_leads
from tests.conftest import TrainedWorld

AS_OF = datetime(2026, 5, 1, tzinfo=UTC)
TYPES = ["web_visit", "email_open", "pricing_page", "webinar", "demo_request", "call", "meeting"]


def lead(i: int, **overrides: object) -> LeadIn:
    start = AS_OF - timedelta(days=20 + i)
    body = {
        "lead_id": f"c-{i}",
        "created_at": start.isoformat(),
        "attributes": {"lead_source": ["referral", "paid_search", "webinar"][i % 3], "industry": "software"},
        "touchpoints": [
            {"occurred_at": (start + timedelta(days=k, hours=i)).isoformat(), "touch_type": TYPES[(i + k) % 7]}
            for k in range(i % 12)
        ],
        "as_of": AS_OF.isoformat(),
        **overrides,
    }
    return msgspec.json.decode(json.dumps(body), type=LeadIn)


class Recorder:
    """Real scoring with the trained model, remembering how many leads each call scored."""

    def __init__(self, trained: TrainedWorld) -> None:
        model = trained.result.model
        self.serving = Serving(LoadedModel(model, "leadscore", "1", None, Path(".")), AS_OF)
        self.threshold = Threshold(model.default_cutoffs, 0)
        self.calls: list[int] = []
        self.gathered: list[int] = []

    def score(self, serving: Serving, leads: list[LeadIn], explain: bool) -> list[ScoreOut]:
        self.calls.append(len(leads))
        return score_leads(serving, leads, self.threshold, AS_OF, timedelta(days=1), explain, batch=False)

    def alone(self, item: LeadIn, explain: bool = False) -> ScoreOut:
        return self.score(self.serving, [item], explain)[0]

    def coalescer(self, probe_every: int = 16) -> ScoreCoalescer:
        return ScoreCoalescer(self.score, self.gathered.append, probe_every)


@pytest.fixture()
def recorder(trained: TrainedWorld) -> Recorder:
    return Recorder(trained)


def test_requests_waiting_together_are_scored_in_one_call_with_their_own_answers(recorder: Recorder) -> None:
    leads = [lead(i) for i in range(8)]
    expected = [recorder.alone(x) for x in leads]
    recorder.calls.clear()
    coalescer = recorder.coalescer(probe_every=1)  # always try to gather, as under load

    async def together() -> list[ScoreOut]:
        return await asyncio.gather(*(coalescer.score(recorder.serving, x, False) for x in leads))

    answers = asyncio.run(together())
    assert recorder.calls == [8] and recorder.gathered == [8]  # one call for all eight
    assert answers == expected
    assert len({a.probability for a in answers}) > 1  # different leads, different answers, in their order


def test_a_bad_lead_among_waiting_ones_gets_its_own_error_and_the_others_their_answers(recorder: Recorder) -> None:
    leads = [lead(i) for i in range(5)]
    leads[2] = lead(2, created_at="1960-01-01T00:00:00Z")
    coalescer = recorder.coalescer(probe_every=1)

    async def together() -> list[ScoreOut | BaseException]:
        calls = (coalescer.score(recorder.serving, x, False) for x in leads)
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(together())
    error = answers[2]
    assert isinstance(error, InvalidLeadData) and error.field == ["body", "created_at"]
    assert [answers[i] for i in (0, 1, 3, 4)] == [recorder.alone(leads[i]) for i in (0, 1, 3, 4)]


def test_explained_and_plain_requests_waiting_together_get_what_they_asked(recorder: Recorder) -> None:
    leads = [lead(i) for i in range(6)]
    coalescer = recorder.coalescer(probe_every=1)

    async def together() -> list[ScoreOut]:
        return await asyncio.gather(*(coalescer.score(recorder.serving, x, i % 2 == 0) for i, x in enumerate(leads)))

    answers = asyncio.run(together())
    assert [bool(a.reasons) for a in answers] == [True, False] * 3
    assert answers == [recorder.alone(x, i % 2 == 0) for i, x in enumerate(leads)]


def test_a_lone_request_is_scored_directly_and_gathering_is_tried_again_now_and_then(recorder: Recorder) -> None:
    coalescer = recorder.coalescer()

    async def one_by_one() -> list[ScoreOut]:
        return [await coalescer.score(recorder.serving, lead(i), False) for i in range(40)]

    answers = asyncio.run(one_by_one())
    assert [a.lead_id for a in answers] == [f"c-{i}" for i in range(40)]
    assert recorder.gathered == [1, 1]  # tried at the 16th and 32nd request, found nobody waiting
    assert recorder.calls == [1] * 40


def test_gathering_goes_on_while_it_finds_company_and_stops_when_it_does_not(recorder: Recorder) -> None:
    coalescer = recorder.coalescer(probe_every=16)

    async def load() -> None:
        for i in range(15):  # alone: scored directly
            await coalescer.score(recorder.serving, lead(i), False)
        for _ in range(2):  # eight at once, twice: the 16th request tries gathering, and it goes on
            await asyncio.gather(*(coalescer.score(recorder.serving, lead(i), False) for i in range(8)))
        await coalescer.score(recorder.serving, lead(0), False)  # alone again: gathered, found alone
        await coalescer.score(recorder.serving, lead(1), False)  # so scored directly

    asyncio.run(load())
    assert recorder.gathered == [8, 8, 1]
    assert recorder.calls == [1] * 15 + [8, 8, 1, 1]

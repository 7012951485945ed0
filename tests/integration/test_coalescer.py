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

    def coalescer(self) -> ScoreCoalescer:
        return ScoreCoalescer(self.score, self.gathered.append)


@pytest.fixture()
def recorder(trained: TrainedWorld) -> Recorder:
    return Recorder(trained)


async def one_by_one(coalescer: ScoreCoalescer, serving: Serving, leads: list[LeadIn]) -> list[ScoreOut]:
    """Requests that reach the loop in turns of their own, as from one client after another."""
    answers = []
    for item in leads:
        answers.append(await coalescer.score(serving, item, False))
        await asyncio.sleep(0)  # the next request comes in a later turn of the event loop
    return answers


def test_requests_waiting_together_are_scored_in_one_call_with_their_own_answers(recorder: Recorder) -> None:
    leads = [lead(i) for i in range(8)]
    expected = [recorder.alone(x) for x in leads]
    recorder.calls.clear()
    coalescer = recorder.coalescer()

    async def twice_eight_at_once() -> list[list[ScoreOut]]:
        return [await asyncio.gather(*(coalescer.score(recorder.serving, x, False) for x in leads)) for _ in range(2)]

    first, second = asyncio.run(twice_eight_at_once())
    # The first is scored at once; the second in the same turn shows requests queueing, so the other seven
    # are gathered into one call; the next eight find the coalescer gathering: one call for all eight.
    assert recorder.calls == [1, 7, 8] and recorder.gathered == [7, 8]
    assert first == expected and second == expected
    assert len({a.probability for a in first}) > 1  # different leads, different answers, in their order


def test_a_bad_lead_among_waiting_ones_gets_its_own_error_and_the_others_their_answers(recorder: Recorder) -> None:
    leads = [lead(i) for i in range(6)]
    leads[2] = lead(2, created_at="1960-01-01T00:00:00Z")
    coalescer = recorder.coalescer()

    async def together() -> list[ScoreOut | BaseException]:
        calls = (coalescer.score(recorder.serving, x, False) for x in leads)
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(together())
    error = answers[2]
    assert isinstance(error, InvalidLeadData) and error.field == ["body", "created_at"]
    assert recorder.gathered == [5]
    assert [answers[i] for i in (0, 1, 3, 4, 5)] == [recorder.alone(leads[i]) for i in (0, 1, 3, 4, 5)]


def test_explained_and_plain_requests_waiting_together_get_what_they_asked(recorder: Recorder) -> None:
    leads = [lead(i) for i in range(6)]
    coalescer = recorder.coalescer()

    async def together() -> list[ScoreOut]:
        return await asyncio.gather(*(coalescer.score(recorder.serving, x, i % 2 == 0) for i, x in enumerate(leads)))

    answers = asyncio.run(together())
    assert [bool(a.reasons) for a in answers] == [True, False] * 3
    assert answers == [recorder.alone(x, i % 2 == 0) for i, x in enumerate(leads)]
    assert recorder.gathered == [5]


def test_requests_one_by_one_are_scored_at_once(recorder: Recorder) -> None:
    answers = asyncio.run(one_by_one(recorder.coalescer(), recorder.serving, [lead(i) for i in range(20)]))
    assert [a.lead_id for a in answers] == [f"c-{i}" for i in range(20)]
    assert recorder.gathered == [] and recorder.calls == [1] * 20


def test_gathering_goes_on_while_it_finds_company_and_stops_when_it_does_not(recorder: Recorder) -> None:
    coalescer = recorder.coalescer()

    async def load() -> None:
        await one_by_one(coalescer, recorder.serving, [lead(i) for i in range(3)])
        for _ in range(2):
            await asyncio.gather(*(coalescer.score(recorder.serving, lead(i), False) for i in range(8)))
        await one_by_one(coalescer, recorder.serving, [lead(0), lead(1)])  # gathered but alone; then at once

    asyncio.run(load())
    assert recorder.gathered == [7, 8, 1]
    assert recorder.calls == [1] * 3 + [1, 7, 8, 1, 1]

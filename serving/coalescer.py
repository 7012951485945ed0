"""Concurrent single-lead requests scored together: one model call for every lead waiting at that moment.

Under concurrent load, requests queue in the event loop while one is being scored. Scoring a handful of
leads in one call costs little more than scoring one (most of a lone lead's cost is the fixed cost of the
call: array set-up, the compiled feature call, LightGBM), so :class:`ScoreCoalescer` lets every request
that reaches the loop in the same turn join one call. A lone request would only pay for the extra turn of
the event loop (~20 us), so it is scored at once, unless another request was already scored in the same
turn of the loop (requests are queueing): then the coalescer starts gathering, and goes on while its calls
find company. Each request still gets its own answer or its own error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from serving.model_source import Serving
from serving.schemas import LeadIn, ScoreOut

log = logging.getLogger("leadscore.serving")

ScoreMany = Callable[[Serving, list[LeadIn], bool], list[ScoreOut]]


@dataclass
class _Waiting:
    serving: Serving
    lead: LeadIn
    explain: bool
    answer: asyncio.Future[ScoreOut]


class ScoreCoalescer:
    """Scores single-lead requests, together when several wait at once.

    Args:
        score: scores leads with a served model, in order (``explain``: with fit, engagement and reasons);
            raises for bad input.
        observe: told the number of requests each gathered call scored.
    """

    def __init__(self, score: ScoreMany, observe: Callable[[int], None]) -> None:
        self._score = score
        self._observe = observe
        self._waiting: list[_Waiting] = []
        self._gathering = False
        self._scored_this_turn = False

    async def score(self, serving: Serving, lead: LeadIn, explain: bool) -> ScoreOut:
        """The answer for one lead (raises what scoring it alone would raise)."""
        loop = asyncio.get_running_loop()
        if not self._waiting and not self._gathering:
            if not self._scored_this_turn:  # alone so far in this turn of the loop: score it now
                self._scored_this_turn = True
                loop.call_soon(self._end_turn)
                return self._score(serving, [lead], explain)[0]
            self._gathering = True  # a second request in the same turn: they are queueing
        answer: asyncio.Future[ScoreOut] = loop.create_future()
        self._waiting.append(_Waiting(serving, lead, explain, answer))
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)  # after every request already in this turn of the loop has joined
        return await answer

    def _end_turn(self) -> None:
        self._scored_this_turn = False

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        self._gathering = len(waiting) > 1  # found alone: back to scoring at once
        self._observe(len(waiting))
        groups: dict[tuple[int, bool], list[_Waiting]] = {}
        for w in waiting:
            groups.setdefault((id(w.serving), w.explain), []).append(w)
        for group in groups.values():
            try:
                self._answer(group)
            except Exception as exc:  # never leave a request waiting
                log.exception("scoring %d gathered requests failed", len(group))
                for w in group:
                    if not w.answer.done():
                        w.answer.set_exception(exc)

    def _answer(self, group: list[_Waiting]) -> None:
        first = group[0]
        try:
            results = self._score(first.serving, [w.lead for w in group], first.explain)
        except Exception as exc:
            if len(group) > 1:  # one bad lead must not fail the others: each alone gets its own answer or error
                for w in group:
                    self._answer([w])
            elif not first.answer.done():
                first.answer.set_exception(exc)
            return
        for w, result in zip(group, results, strict=True):
            if not w.answer.done():  # a cancelled request needs no answer
                w.answer.set_result(result)

"""A 422 that lists offending fields names the first one as its detail and keeps the rest in order."""

from __future__ import annotations

from serving.errors import InvalidLeadData


def test_listing_keeps_every_problem_in_order() -> None:
    error = InvalidLeadData.listing([(["body", "a"], "bad a"), (["body", "b"], "bad b"), (["body", "c"], "bad c")])
    assert (error.field, error.detail) == (["body", "a"], "bad a")
    assert error.more == [(["body", "b"], "bad b"), (["body", "c"], "bad c")]


def test_an_empty_listing_is_still_an_error_at_the_body() -> None:
    error = InvalidLeadData.listing([])
    assert error.status_code == 422 and error.field == ["body"] and error.more == []

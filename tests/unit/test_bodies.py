"""Reading a scoring body straight from the ASGI channel, as ``Request.body()`` would."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from starlette.requests import ClientDisconnect, Request

from serving.bodies import read_body

Message = dict[str, object]


def channel(messages: list[Message]) -> Callable[[], Awaitable[Message]]:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


def starlette_body(messages: list[Message]) -> bytes:
    request = Request({"type": "http", "method": "POST", "headers": []}, channel(messages))
    return asyncio.run(request.body())


@pytest.mark.parametrize(
    "messages",
    [
        [{"type": "http.request", "body": b'{"lead_id": "a"}', "more_body": False}],
        [{"type": "http.request", "body": b"", "more_body": False}],
        [{"type": "http.request"}],  # no body key at all: an empty body
        [
            {"type": "http.request", "body": b'{"lead_', "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": b'id": "a"}', "more_body": False},
        ],
    ],
)
def test_the_body_is_what_starlette_reads(messages: list[Message]) -> None:
    assert asyncio.run(read_body(channel(messages))) == starlette_body(messages)


def test_a_client_gone_mid_body_is_a_disconnect() -> None:
    messages: list[Message] = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    with pytest.raises(ClientDisconnect):
        asyncio.run(read_body(channel(messages)))

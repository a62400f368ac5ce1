"""The one Content-Length parser and bounded body reader of the gateway and the backend."""

from __future__ import annotations

import pytest
from starlette.types import Message

from shared.asgi_body import content_length, read_body, replaying
from shared.errors import rate_limited


@pytest.mark.parametrize("value", [b"0", b"17", "17", b"000123"])
def test_a_length_is_ascii_digits(value: bytes | str) -> None:
    assert content_length(value) == int(value)


# Latin-1 header bytes: '²' and '³' pass str.isdigit() and fail int(); Arabic-Indic 3 reads as 3.
@pytest.mark.parametrize(
    "value",
    [None, b"", b"\xb2", b"1\xb3", "\u0663", "\u0663".encode(), b"+2", b"-1", b"2 ", b"1,2"],
)
def test_anything_else_is_no_length(value: bytes | str | None) -> None:
    assert content_length(value) is None


def _chunks(*bodies: bytes) -> list[Message]:
    return [
        {"type": "http.request", "body": b, "more_body": i < len(bodies) - 1}
        for i, b in enumerate(bodies)
    ]


async def test_a_body_is_read_whole_and_replayed_as_it_came() -> None:
    sent = _chunks(b"ab", b"cd", b"e")
    queue = list(sent)

    async def receive() -> Message:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    read = await read_body(receive, 5)
    assert (read.body, read.too_large) == (b"abcde", False)
    replay = replaying(read.received, receive)
    assert [await replay() for _ in range(4)] == [*sent, {"type": "http.disconnect"}]


async def test_reading_stops_at_the_first_byte_over_the_limit_or_when_the_client_leaves() -> None:
    queue = _chunks(b"abc", b"def", b"never read")

    async def receive() -> Message:
        return queue.pop(0)

    read = await read_body(receive, 5)
    assert (read.body, read.too_large, len(read.received)) == (None, True, 2)

    async def gone() -> Message:
        return {"type": "http.disconnect"}

    left = await read_body(gone, 5)
    assert (left.body, left.too_large) == (None, False)


def test_rate_limited_says_when_to_retry_in_the_message_and_details() -> None:
    error = rate_limited("too many calls", 0.12341, "per_user_limit")
    assert error.details == {"retry_after_seconds": 0.124, "reason": "per_user_limit"}
    assert error.message == "too many calls; retry after 0.124 s"
    whole = rate_limited("too many failed logins", 64)
    assert whole.details == {"retry_after_seconds": 64} and "retry after 64 s" in whole.message
    assert type(whole.details["retry_after_seconds"]) is int  # Retry-After takes whole seconds

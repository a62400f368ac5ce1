"""What one call made the read model load, noted where the load happens and read by the gateway.

The gateway's limits charge a call by its cost, not one token a call: a cached hit costs its
admission only, a page loaded from a replica costs more, by the bytes it carried. The read
model notes each load here; the gateway opens a meter around each call (gateway.ratelimit).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class CallMeter:
    loads: int = 0  # reads that went to the database (cache misses, or the cache off)
    loaded_bytes: int = 0  # their encoded size, where the cache encoded them


_meter: ContextVar[CallMeter | None] = ContextVar("taskgate_call_meter", default=None)


def note_load(encoded_bytes: int) -> None:
    """Note one database read for the running call, if a meter is open."""
    meter = _meter.get()
    if meter is not None:
        meter.loads += 1
        meter.loaded_bytes += encoded_bytes


@contextmanager
def metering() -> Iterator[CallMeter]:
    """A meter for the call run inside; loads in tasks it starts are noted in it too."""
    meter = CallMeter()
    bound = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(bound)

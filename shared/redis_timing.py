"""How long taskgate waits on one Redis operation, and how long it keeps away after a fault:
one home for the read cache, the read marks and the rate-limit buckets."""

from __future__ import annotations

# A healthy Redis on the same network answers in about a millisecond.
REDIS_OP_TIMEOUT_SECONDS = 0.5
# After a fault, the store is skipped this long, so a hung Redis costs one timeout, not one
# per operation per call.
FAULT_BACKOFF_SECONDS = 2.0

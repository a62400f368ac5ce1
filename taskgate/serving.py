"""How `taskgate gateway` and `taskgate backend` serve HTTP: on which event loop, and with their
start-up heap frozen.

Both remove the tail latency under many connections (tests/bench/TAIL.md); the backend meets
the same burst of new connections when a gateway's pool opens.
"""

from __future__ import annotations

import gc

# uvicorn's "auto" picks uvloop. Its libuv accepts one connection per loop iteration (libuv 1.45,
# "don't accept() connections in a loop"), and under load an iteration first runs every queued
# request: when N agents connect at once, the k-th is accepted after k-1 rounds of the others'
# calls (about 2 s for the 64th). asyncio's loop accepts every queued connection in one tick, and
# with httptools it serves as many calls a second here.
SERVING_LOOP = "asyncio"


def freeze_startup_heap() -> None:
    """Put what start-up built (modules, schemas, the app) in the GC's permanent generation.

    A full collection then walks only what was made since: about 70 ms → 7 ms per gen-2 pass on
    the gateway, a pause that every call in flight waited through.
    """
    gc.collect()
    gc.freeze()

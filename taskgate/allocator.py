"""Which memory allocator the gateway runs on, and how it hands free memory back.

After a connection flood, CPython's own small-object allocator (pymalloc) keeps most of what the
flood took: it returns a 1 MiB arena only once every block in it is free, and the calls served
during a flood leave a few long-lived objects (cache entries, timers) in nearly every arena it
opened. Measured on the attacks bench (`_debugmallocstats` in the gateway): live blocks back to
60 MB, arenas 60 -> 94, none ever reclaimed, 15-28 MB of RSS held.

With `PYTHONMALLOC=malloc` every object comes from malloc, which can give back any free page.
glibc's malloc costs 10-20% more CPU a call on the gateway's hot path (three same-run A/Bs,
tuned or not); jemalloc costs nothing measurable (the same A/B). So the gateway runs on jemalloc
when the machine has it (Debian: libjemalloc2), and on pymalloc otherwise.

Both must be in the environment when the interpreter starts: whatever launches a gateway takes
`gateway_allocator_env()` (taskgate.devstack), or sets the same two variables (the Dockerfile,
compose.yaml and deploy/k8s/gateway.yaml; docs/deploying.md).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

# Where the image links Debian's library for its architecture (Dockerfile), which compose.yaml and
# deploy/k8s/gateway.yaml preload.
JEMALLOC_IMAGE_PATH = "/usr/local/lib/libjemalloc.so.2"
# Where a machine may have it: the image's link, then Debian's libjemalloc2 per architecture.
JEMALLOC_PATHS = (
    JEMALLOC_IMAGE_PATH,
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
)
# jemalloc's "all arenas" index (MALLCTL_ARENAS_ALL) in mallctl names.
JEMALLOC_ALL_ARENAS = 4096


def jemalloc_path() -> str | None:
    """The machine's jemalloc library, or None."""
    return next((path for path in JEMALLOC_PATHS if Path(path).is_file()), None)


def gateway_allocator_env() -> dict[str, str]:
    """The environment a gateway process starts with to run on jemalloc; {} (pymalloc) when the
    machine has no jemalloc. glibc's malloc is never chosen: it gives memory back, at 10-20% a
    call."""
    path = jemalloc_path()
    if path is None:
        return {}
    return {"LD_PRELOAD": path, "PYTHONMALLOC": "malloc"}


def heap_release() -> Callable[[], object] | None:
    """What hands the allocator's free pages back to the system now: jemalloc's purge of every
    arena when it is this process's malloc, else glibc's malloc_trim; None elsewhere. Neither
    returns pymalloc's arenas (see the module's docstring)."""
    try:
        process = ctypes.CDLL(None)
    except OSError:
        return None
    mallctl = getattr(process, "mallctl", None)
    if mallctl is not None:
        mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        mallctl.argtypes += [ctypes.c_size_t]
        name = f"arena.{JEMALLOC_ALL_ARENAS}.purge".encode()
        return lambda: mallctl(name, None, None, None, 0)
    trim = getattr(process, "malloc_trim", None)
    if trim is not None:
        return lambda: trim(0)
    return None

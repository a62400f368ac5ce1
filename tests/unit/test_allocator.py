"""taskgate.allocator: a gateway starts on jemalloc where the machine has it, and what the release
after a flood calls hands free pages back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from taskgate.allocator import gateway_allocator_env, jemalloc_path

GIVE_BACK = """
import gc, os
from taskgate.allocator import heap_release
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
held = [bytes(200) for _ in range(400_000)]  # small objects: the allocator's, not mmap's
peak = rss()
del held
gc.collect()
heap_release()()
print(peak - rss())
"""


def test_a_gateway_starts_on_jemalloc_when_the_machine_has_it() -> None:
    path = jemalloc_path()
    assert path is not None, "libjemalloc2 is not installed (.ci/run installs it)"
    assert gateway_allocator_env() == {"LD_PRELOAD": path, "PYTHONMALLOC": "malloc"}
    assert Path(path).is_file()


def test_the_release_hands_a_freed_heap_back_on_jemalloc() -> None:
    env = {**os.environ, **gateway_allocator_env()}
    given_back = subprocess.run(
        [sys.executable, "-c", GIVE_BACK], env=env, capture_output=True, text=True, check=True
    ).stdout
    # About 90 MB were held; most comes back at once (jemalloc alone would wait out its decay).
    assert int(given_back) > 50 * 2**20, given_back

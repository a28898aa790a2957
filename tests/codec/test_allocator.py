"""glibc keeps large blocks for the loops that allocate them every step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rdcodec.codec import allocator

# Makes and frees a 64 MiB tensor again and again (as refinement steps do with g_s's
# activations), and reports the minor page faults of the last 20 times.
_LOOP = """
import json, resource, sys
import torch
from rdcodec.codec import allocator
took = allocator.keep_large_blocks() if sys.argv[1] == "on" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # the heap settles
    torch.ones(16 << 20)
before = faults()
for _ in range(20):
    torch.ones(16 << 20)
print(json.dumps({"took": took, "faults": faults() - before}))
"""

glibc = pytest.mark.skipif(not allocator.on_glibc(), reason="glibc only")


def _run(mode: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", _LOOP, mode],
        capture_output=True,
        text=True,
        env={**environ, **env},
        check=True,
    )
    return json.loads(result.stdout)


@glibc
def test_large_blocks_stay_in_the_heap():
    off, on = _run("off"), _run("on")
    assert on["took"] is True
    # 20 x 64 MiB is 327,680 fresh 4 KiB pages when each block is mapped anew.
    assert off["faults"] > 100_000 and on["faults"] < off["faults"] / 10


@glibc
def test_the_users_own_settings_are_kept():
    assert _run("on", MALLOC_TRIM_THRESHOLD_="0")["took"] is False

"""numpy's huge-page advice is off for a command and back as it was after it, also after an
error (:mod:`sd_depth_texture.core.memory`)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from sd_depth_texture.core import memory


def test_huge_page_advice_is_off_inside_and_restored_after() -> None:
    switch = memory._madvise_switch()
    if switch is None:
        pytest.skip("this numpy has no huge-page switch")
    before = switch(True)
    try:
        with memory.without_huge_pages():
            assert switch(False) is False  # setting it returns what it was: off
        assert switch(True) is True  # on again
        with pytest.raises(RuntimeError), memory.without_huge_pages():
            raise RuntimeError("a failing command")
        assert switch(True) is True
    finally:
        switch(before)


# Run in a fresh interpreter: glibc's thresholds are process-wide and adapt to every block
# freed before, so earlier tests in this process (models, Blender) decide what a first
# allocation costs here.
_MEASURE = """
import json, resource
import numpy as np
from sd_depth_texture.core import memory

def faults_touching(size):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(size, dtype=np.uint8)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

size = 64 << 20
with memory.without_huge_pages():  # 4 kB pages, so the faults count them
    before = [faults_touching(size) for _ in range(2)]
    with memory.keeping_freed_memory():
        faults_touching(size)
        inside = faults_touching(size)
    after = [faults_touching(size) for _ in range(2)]
print(json.dumps({"before": before, "inside": inside, "after": after}))
"""


@pytest.mark.skipif(memory._mallopt() is None, reason="glibc's mallopt only")
def test_freed_memory_is_reused_inside_a_command_and_returned_after_it() -> None:
    """Outside a command a 64 MB array is a fresh mapping each time, every page faulted in;
    inside one, the second array reuses the first one's pages; after it, the kept memory goes
    back to the system once the next large block is freed, and later ones are fresh again."""
    pages = (64 << 20) // resource.getpagesize()
    root = Path(__file__).resolve().parents[2]
    measured = subprocess.run(
        [sys.executable, "-c", _MEASURE], cwd=root, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    faults = json.loads(measured.stdout.strip().splitlines()[-1])
    before, inside, after = faults["before"], faults["inside"], faults["after"]
    assert min(before) > pages // 2
    assert inside < pages // 10
    assert after[-1] > pages // 2

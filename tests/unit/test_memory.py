"""numpy's huge-page advice is off for a command and back as it was after it, also after an
error (:mod:`sd_depth_texture.core.memory`)."""

from __future__ import annotations

import resource

import numpy as np
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


def _faults_touching(size: int) -> int:
    """Page faults for making and freeing an array of ``size`` bytes, every page touched."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(size, dtype=np.uint8)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(memory._mallopt() is None, reason="glibc's mallopt only")
def test_freed_memory_is_reused_inside_a_command_and_returned_after_it() -> None:
    """Outside a command a 64 MB array is a fresh mapping each time, every page faulted in;
    inside one, the second array reuses the first one's pages; after it, the kept memory goes
    back to the system once the next large block is freed, and later ones are fresh again."""
    size, pages = 64 << 20, (64 << 20) // resource.getpagesize()
    with memory.without_huge_pages():  # 4 kB pages, so the faults count them
        before = [_faults_touching(size) for _ in range(2)]
        with memory.keeping_freed_memory():
            _faults_touching(size)
            inside = _faults_touching(size)
        after = [_faults_touching(size) for _ in range(2)]
    assert min(before) > pages // 2
    assert inside < pages // 10
    assert after[-1] > pages // 2

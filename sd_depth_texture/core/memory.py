"""Fresh memory for a command's arrays without transparent huge pages (no bpy).

numpy asks the kernel for huge pages (``madvise(MADV_HUGEPAGE)``) on every array of 4 MB and
more. Where the kernel's THP ``defrag`` setting is ``madvise`` (Ubuntu's and Debian's
default), each first touch of such an array may stop to compact memory for a 2 MB page. A
command in a fresh Blender process touches nearly all its arrays for the first time: measured
on the 1M-triangle benchmark (``benchmarks/bench_cli.py``, 2 cores), its first run took
1.1-2.3 s longer with them (the UV layout 0.8-1.6 s instead of 0.4-0.8 s, the mesh read and
the Z-buffer about twice as long); warm runs, which reuse freed memory, do not change.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import numpy as np

log = logging.getLogger(__name__)


def _madvise_switch() -> Callable[[bool], bool] | None:
    """numpy's switch for its huge-page advice (sets it, returns what it was), if it has one."""
    for module in ("_core", "core"):  # numpy 2 moved it; numpy 1 keeps it under ``core``
        multiarray = getattr(getattr(np, module, None), "multiarray", None)
        switch = getattr(multiarray, "_set_madvise_hugepage", None)
        if switch is not None:
            return switch
    return None


@contextlib.contextmanager
def without_huge_pages() -> Iterator[None]:
    """numpy's huge-page advice off for the block, and back as it was after it.

    Process-wide while it lasts: for one command of the command line (one thread), not for a
    panel run beside Blender's own threads.
    """
    switch = _madvise_switch()
    if switch is None:
        yield
        return
    previous = switch(False)
    try:
        yield
    finally:
        switch(previous)

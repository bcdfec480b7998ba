"""Memory for one command's arrays: no transparent huge pages, freed memory reused (no bpy).

numpy asks the kernel for huge pages (``madvise(MADV_HUGEPAGE)``) on every array of 4 MB and
more. Where the kernel's THP ``defrag`` setting is ``madvise`` (Ubuntu's and Debian's
default), each first touch of such an array may stop to compact memory for a 2 MB page. A
command in a fresh Blender process touches nearly all its arrays for the first time: measured
on the 1M-triangle benchmark (``benchmarks/bench_cli.py``, 2 cores), its first run took
1.1-2.3 s longer with them (the UV layout 0.8-1.6 s instead of 0.4-0.8 s, the mesh read and
the Z-buffer about twice as long); warm runs, which reuse freed memory, do not change.

glibc's allocator hands every block over 128 kB to 32 MB (its adaptive threshold) straight
back to the system when numpy frees it, so the next array of that size faults its pages in
again: the UV layout of a 1M-triangle mesh faulted 84,000 pages (330 MB, 0.18 s of system
time) on every computation, a Z-buffer 44,000. While a command runs, large blocks come from
the heap and freed ones stay there for the next array (:func:`keeping_freed_memory`); after it,
the thresholds are where glibc's adaptive ones end up once a block of 32 MB has been freed (as
every such command frees), and memory above them is returned to the system as usual.
Elsewhere than glibc, nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
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


# mallopt's parameters (glibc's malloc.h), and the highest thresholds glibc's adaptive ones take
# (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit, and twice that for trimming).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_ADAPTIVE_MMAP_MAX = 32 * 1024 * 1024
_KEEP_BELOW = 1 << 30  # blocks up to 1 GB come from the heap while a command runs


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, where this process runs on glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # another C library (musl): leave it be
        return None
    function.argtypes, function.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return function


@contextlib.contextmanager
def keeping_freed_memory() -> Iterator[None]:
    """Large blocks from the heap, and freed memory kept there for reuse, for the block; after
    it, the thresholds glibc's adaptive ones reach (see the module), so what is free above them
    goes back to the system as usual.

    Process-wide while it lasts: for one command of the command line, as
    :func:`without_huge_pages`.
    """
    mallopt = _mallopt()
    if mallopt is None or not mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW):
        yield
        return
    mallopt(_M_TRIM_THRESHOLD, 2 * _KEEP_BELOW)
    try:
        yield
    finally:
        mallopt(_M_TRIM_THRESHOLD, 2 * _ADAPTIVE_MMAP_MAX)
        mallopt(_M_MMAP_THRESHOLD, _ADAPTIVE_MMAP_MAX)


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

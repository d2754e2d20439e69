"""Keep the memory of freed tensors in the process (glibc's ``malloc``), as TensorFlow's allocator does.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and returns it to the system on ``free``. A training step that builds tensors
of hundreds of MiB (the DVAE decoder on 80,000 rows) then pays a page fault for every
4 KiB page of every such tensor, every step: 550,000 faults and 1.2 s of system time
in a 4.4 s DVAE RLOO(800) step, measured. With mmap off and the heap never trimmed,
freed blocks are reused and the faults are gone (DVAE RLOO(800) and GS(800) steps
0.74 and 0.66 of their time, ``docs/performance.md``); the process keeps its peak
memory instead of giving it back between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Tell glibc's ``malloc`` to serve large blocks from its heap and never trim it.

    Returns:
        whether the setting took (``False`` off Linux or without glibc: nothing is changed).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))

"""glibc's malloc, tuned for a process that reads large request bodies.

gunicorn reads a body with recv() calls of up to 1 MiB. glibc serves an allocation of
128 KiB or more with a fresh mmap until freeing such a mapping raises its threshold (its
"dynamic threshold"); until then each recv buffer is mapped and page-faulted in anew. A
worker's CPU for a large body thus depended on what it had done before: a refused 56 MiB
body cost 34 ms or 117 ms (bench/hostile.py), and an upload's share alike. Thresholds
fixed above 1 MiB take the history out: such buffers come from the heap and are reused.
"""

from __future__ import annotations

import ctypes

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_BYTES = 2 * 2**20
# Free memory at the top of a heap beyond this goes back to the system (glibc's dynamic
# rule keeps twice the mmap threshold).
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES


def tune_for_large_reads() -> None:
    """Fix malloc's thresholds in this process; nothing where the C library has no
    mallopt (not glibc)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)

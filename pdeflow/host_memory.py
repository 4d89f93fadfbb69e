"""The C allocator, set so that XLA:CPU's per-call buffers reuse memory instead of faulting fresh pages in.

XLA:CPU allocates a compiled call's temporaries (tens to hundreds of MB for a fit step) with ``malloc`` at the
start of every call and frees them at its end. glibc serves a request above its mmap threshold (which adapts, up
to 32 MiB) with a fresh ``mmap`` and hands it back to the kernel on ``free``, so every call touches each page of
those buffers for the first time: on a 2-core AMD EPYC, 41,000 page faults and 80 ms of kernel time in each
0.31 s step of `benchmarks.fit_throughput`. `keep_freed_memory` raises glibc's mmap and trim thresholds to
2 GiB: those buffers then come from the heap and stay there for the next call (the same step: 100 faults,
0.25 s, the same numbers to the bit). The process's resident memory then stays at its peak instead of shrinking
between calls.

`import pdeflow` calls it once, and `dispatch_in_calling_thread`: requests made from XLA's worker threads come
from per-thread heaps of at most 64 MiB, so a larger buffer allocated there would still be mapped afresh each call
(glibc has no setting for that), and a computation dispatched in the calling thread allocates from the main heap.
``PDEFLOW_MALLOC=system`` in the environment leaves glibc's defaults and JAX's asynchronous dispatch.
"""

from __future__ import annotations

import ctypes
import functools
import os

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: the largest it accepts
ENVIRONMENT_VARIABLE = "PDEFLOW_MALLOC"
_kept = False  # whether keep_freed_memory has set glibc in this process


def keep_freed_memory(threshold_bytes: int = THRESHOLD_BYTES) -> bool:
    """Serve allocations below ``threshold_bytes`` from glibc's heap and keep freed memory there (``mallopt``
    of ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD``). Returns whether it was applied: False where the C library
    is not glibc (macOS, musl) or ``PDEFLOW_MALLOC=system`` is set."""
    global _kept
    if os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() == "system":
        return False
    libc = _glibc()
    if libc is None:
        return False
    _kept = bool(libc.mallopt(M_MMAP_THRESHOLD, threshold_bytes)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                         threshold_bytes))
    return _kept


def dispatch_in_calling_thread() -> bool:
    """Run XLA:CPU's computations in the thread that calls them (``jax_cpu_enable_async_dispatch = False``), so
    their temporaries come from the main heap that `keep_freed_memory` keeps: a call dispatched asynchronously runs
    on one of XLA's worker threads, whose heaps hold at most 64 MiB, and a larger buffer there is mapped afresh every
    call (the faithful preset's coarse step: 890,000 faults in 8 steps and 0.47 s a step; 340,000 and 0.43–0.44 s
    in the calling thread). JAX reads the setting when it makes its CPU client, so it acts only if no computation
    has run yet. Returns whether it was set (False with ``PDEFLOW_MALLOC=system`` or where `keep_freed_memory` does
    not apply)."""
    if not _kept:
        return False
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return True


def setting() -> str:
    """The allocator in words, for a benchmark's label: ``"glibc, freed memory kept"``, ``"glibc defaults"`` or
    ``"not glibc"``."""
    if _glibc() is None:
        return "not glibc"
    return "glibc, freed memory kept" if _kept else "glibc defaults"


@functools.cache
def _glibc():
    """The process's C library if it is glibc (its symbols have ``mallopt`` and ``gnu_get_libc_version``), else
    None. Looked up among the symbols the process has loaded (no ``ldconfig`` run)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    except (OSError, AttributeError):
        return None
    return libc

"""glibc's allocator keeps freed memory for the next call (`pdeflow.host_memory`): a buffer allocated, written
and freed again and again is faulted in once, not every time, and JAX runs CPU computations in the calling thread;
``PDEFLOW_MALLOC=system`` leaves glibc and JAX as they were."""

import os
import subprocess
import sys

import pytest

from pdeflow import host_memory

# 40 rounds of malloc, memset and free of 48 MiB, above glibc's largest default mmap threshold (32 MiB):
# prints the minor page faults of the rounds after the first, whether importing pdeflow set the allocator (the label
# benchmarks record) and whether JAX still dispatches CPU computations asynchronously
ROUNDS = """
import ctypes, resource
import pdeflow
from pdeflow import host_memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
size = 48 << 20
def one_round():
    p = libc.malloc(size)
    libc.memset(p, 1, size)
    libc.free(p)
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    one_round()
import jax
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, host_memory.setting() == "glibc, freed memory kept",
      jax.config.values["jax_cpu_enable_async_dispatch"])
"""


def _faults(environment: dict) -> tuple[int, bool, bool]:
    out = subprocess.run([sys.executable, "-c", ROUNDS], env={**os.environ, **environment}, capture_output=True,
                         text=True, timeout=300, check=True).stdout.split()
    return int(out[0]), out[1] == "True", out[2] == "True"


@pytest.mark.skipif(host_memory._glibc() is None, reason="the C library is not glibc")
def test_freed_buffers_are_reused_instead_of_faulted_in_afresh_and_computations_run_in_the_calling_thread():
    kept, applied, asynchronous = _faults({"PDEFLOW_MALLOC": ""})
    system, applied_system, asynchronous_system = _faults({"PDEFLOW_MALLOC": "system"})
    assert applied and not applied_system
    # computations run in the calling thread, whose heap is the one kept; JAX's default otherwise
    assert not asynchronous and asynchronous_system
    assert system >= 40, system  # glibc's own settings: every round maps the buffer afresh (pages, or huge pages)
    assert kept < system // 20, (kept, system)

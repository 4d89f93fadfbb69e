"""Test-session settings.

XLA's persistent compilation cache, one temporary folder for the whole run: the two pytest-xdist workers and the
subprocesses that tests start (the CLI, the multi-process fits) inherit it through the environment, so that a
program that another test has compiled already (the same HLO, compile options and XLA flags: JAX's cache key) is
loaded instead of compiled again. It changes no result: a loaded executable is the one the compiler wrote. The
folder is removed when the run ends; a cache folder named in the environment (``JAX_COMPILATION_CACHE_DIR``) is
used as it is and kept.
"""

import os
import shutil
import tempfile

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def pytest_configure(config):
    # the controller (or the only process) sets the folder up before any test module imports jax; the workers
    # that pytest-xdist starts after this inherit the environment
    if hasattr(config, "workerinput") or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    folder = tempfile.mkdtemp(prefix="pdeflow-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # the tests' programs compile fast
    config.pdeflow_xla_cache = folder


def pytest_unconfigure(config):
    folder = getattr(config, "pdeflow_xla_cache", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# The tests compile several hundred small programs and run most of them for milliseconds, so compiling is most of
# the suite's time. LLVM's most expensive passes are skipped for them (XLA's own graph passes all still run); a
# tiny fit's parameters come out bit for bit those of a default build, and every assertion stays as written.
# (Turning LLVM's optimisation level down to 0 compiled faster still, but changed results by float round-off and
# crashed a worker: not used.) Subprocesses the tests start inherit the flag. PDEFLOW_TEST_FULL_OPTIMIZATION=1
# keeps XLA's defaults; `make run`, the CLI and the benchmarks never see this.
FAST_COMPILE_FLAGS = ("--xla_llvm_disable_expensive_passes=true",)
if os.environ.get("PDEFLOW_TEST_FULL_OPTIMIZATION", "0") in ("", "0"):
    _flags = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join([*_flags, *(f for f in FAST_COMPILE_FLAGS if f not in _flags)])

"""Several processes (hosts) fitting together, through JAX's own distributed runtime.

Every process runs the same command; `initialize` joins them (``jax.distributed.initialize``) before any
computation, after which `pdeflow.fitting.parallel.data_mesh` spans the devices of every process and a fit splits
its batch over all of them. The coordinator is process 0's ``host:port``.
"""

from __future__ import annotations

import os

import jax

ENVIRONMENT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def settings(coordinator: str | None = None, num_processes: int | None = None,
             process_id: int | None = None) -> dict | None:
    """The distributed settings from arguments, else from the environment variables ``ENVIRONMENT``;
    None when neither names a coordinator (a single-process run)."""
    coordinator = coordinator or os.environ.get(ENVIRONMENT[0])
    if not coordinator:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ValueError("num_processes/process_id need a coordinator address (host:port of process 0).")
        return None
    num_processes = num_processes if num_processes is not None else _int_env(ENVIRONMENT[1])
    process_id = process_id if process_id is not None else _int_env(ENVIRONMENT[2])
    if num_processes is None or process_id is None:
        raise ValueError(f"a coordinator ({coordinator}) needs num_processes and process_id too (flags, or the "
                         f"environment variables {ENVIRONMENT[1]} and {ENVIRONMENT[2]}).")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}); got {process_id}.")
    return {"coordinator_address": coordinator, "num_processes": num_processes, "process_id": process_id}


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Join the processes named by the arguments or the environment; returns whether it did (False for a
    single-process run). Must run before the first JAX computation."""
    chosen = settings(coordinator, num_processes, process_id)
    if chosen is None:
        return False
    jax.distributed.initialize(**chosen)
    return True


def is_primary() -> bool:
    """True on the process that writes outputs (process 0)."""
    return jax.process_index() == 0


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer; got {value!r}.") from None

"""Data parallelism with JAX's own runtime: a 1-D device mesh, batches sharded over it, parameters replicated.

The fit runs the same jit-compiled step on one device or many; XLA's SPMD partitioner inserts the
collectives (the adaptive solver's error norm and the gradient are reduced over the whole batch). On a CPU,
several host devices can be made with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (or
`use_host_devices` before JAX starts); on accelerators the real devices are used. Several processes (hosts)
fit together after `pdeflow.fitting.distributed.initialize`: every process holds the same data and builds the same
global arrays, each placing the pieces its own devices hold.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pdeflow.machine import jax_started
from pdeflow.models.trace import Trace

DATA_AXIS = "data"


def use_host_devices(count: int) -> None:
    """Ask XLA for ``count`` CPU devices. Must run before JAX initialises its backends (before the first
    array is made); raises ``RuntimeError`` if it is too late."""
    if count < 1:
        raise ValueError(f"need at least one host device; got {count}.")
    if jax_started():
        if jax.devices()[0].platform == "cpu" and jax.local_device_count() != count:
            raise RuntimeError(f"JAX already started with {jax.local_device_count()} CPU device(s); set "
                               f"XLA_FLAGS=--xla_force_host_platform_device_count={count} before starting Python.")
        return
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={count}"])


def data_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D mesh named ``"data"`` over the first ``num_devices`` devices (0: all of them, every host's)."""
    devices = jax.devices()
    count = len(devices) if num_devices == 0 else num_devices
    if not 1 <= count <= len(devices):
        raise ValueError(f"asked for {num_devices} devices but JAX sees {len(devices)} ({devices[0].platform}); "
                         "on a CPU set XLA_FLAGS=--xla_force_host_platform_device_count=N before starting.")
    return Mesh(np.asarray(devices[:count]), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def check_divisible(batch_size: int, mesh: Mesh) -> None:
    count = mesh.devices.size
    if batch_size % count:
        raise ValueError(f"batch_size {batch_size} is not a multiple of the {count} devices of the mesh; use a "
                         f"batch size divisible by {count} or fewer devices.")


def _global_array(value, sharding: NamedSharding):
    """A global array from a value every process holds in full: each process places the pieces its own
    devices hold (the same call on one host or many)."""
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicated(tree, mesh: Mesh):
    """Every leaf of ``tree`` copied to every device of ``mesh``."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda leaf: _global_array(leaf, sharding), tree)


def batch_sharded(array, mesh: Mesh, axis: int = 0):
    """``array`` split over ``mesh`` along its batch ``axis``."""
    spec = PartitionSpec(*([None] * axis), DATA_AXIS)
    return _global_array(array, NamedSharding(mesh, spec))


def to_host(array) -> np.ndarray:
    """The whole of a (possibly multi-process, batch-sharded) array as numpy, on every process."""
    if jax.process_count() > 1 and not getattr(array, "is_fully_addressable", True):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=True))
    return np.asarray(array)


def shard_trace(trace: Trace, mesh: Mesh) -> Trace:
    """A `Trace` with its batch axis (1 for hidden and attention, 0 for the mask) split over ``mesh``."""
    return Trace(batch_sharded(trace.hidden, mesh, 1), batch_sharded(trace.attention, mesh, 1),
                 batch_sharded(trace.mask, mesh, 0))

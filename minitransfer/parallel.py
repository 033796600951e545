"""Spreading training over devices with ``jax.sharding``, without touching the model.

A ``Mesh`` arranges the devices along one named axis, ``data``. A
``NamedSharding`` then says, for each array, how it is laid out on that mesh:

* ``data``: data parallelism. Each batch is split along its first axis over
  the devices (``P("data")``); parameters and optimizer state are replicated
  (``P()``). XLA inserts the all-reduce that averages gradients.
* ``fsdp``: fully sharded data parallelism. The batch is split as above, and
  every parameter (and its optimizer state) is split too, along its largest
  axis that divides evenly, so each device holds 1/n of the weights. XLA
  gathers a weight just before it is used and scatters its gradient after.

The jitted ``train_step`` is the same function in all cases: jit compiles it
for whatever shardings its inputs carry. On a TPU pod slice (several hosts),
``jax.distributed.initialize()`` connects the hosts first, and each host feeds
only its own slice of the global batch.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

STRATEGIES = ("none", "data", "fsdp")


def maybe_initialize_distributed() -> None:
    """Connect the hosts of a multi-host run (TPU pod slice). On a TPU VM
    ``jax.distributed.initialize()`` finds its peers by itself; elsewhere it
    reads JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID."""
    if os.environ.get("MINITRANSFER_MULTIHOST") == "1":
        jax.distributed.initialize()


def fsdp_spec(shape: tuple[int, ...], n: int) -> P:
    """Shard the largest axis that ``n`` divides; replicate small/odd arrays."""
    axes = sorted(range(len(shape)), key=lambda a: -shape[a])
    for a in axes:
        if shape[a] % n == 0 and shape[a] >= n:
            spec = [None] * len(shape)
            spec[a] = "data"
            return P(*spec)
    return P()


class Parallel:
    """Where arrays live for one of the strategies ``none``, ``data``, ``fsdp``."""

    def __init__(self, strategy: str = "none", devices=None):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown `parallel` {strategy!r}; expected one of {STRATEGIES}")
        self.strategy = strategy
        self.mesh = None
        if strategy != "none":
            devices = np.asarray(devices if devices is not None else jax.devices())
            self.mesh = Mesh(devices, ("data",))

    @property
    def n_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    def param_sharding(self, tree):
        """A sharding for every array of ``tree`` (parameters or optimizer state)."""
        if self.mesh is None:
            return None
        if self.strategy == "data":
            return jax.tree.map(lambda x: NamedSharding(self.mesh, P()), tree)
        return jax.tree.map(lambda x: NamedSharding(self.mesh, fsdp_spec(np.shape(x), self.n_devices)), tree)

    def place(self, tree):
        """Put parameters / optimizer state where the strategy wants them."""
        if self.mesh is None:
            return tree
        return jax.device_put(tree, self.param_sharding(tree))

    def place_batch(self, batch: dict) -> dict:
        """Split a global batch over the devices along its first axis."""
        if self.mesh is None:
            return batch
        for k, v in batch.items():
            if v.shape[0] % self.n_devices:
                raise ValueError(
                    f"the global batch of {v.shape[0]} examples ('{k}') does not divide evenly over "
                    f"{self.n_devices} devices; choose a `batch_size` that is a multiple of {self.n_devices}"
                )
        sharding = NamedSharding(self.mesh, P("data"))
        if jax.process_count() > 1:
            # each host holds only its own rows of the global batch
            i, hosts = jax.process_index(), jax.process_count()
            return {
                k: jax.make_array_from_process_local_data(sharding, np.asarray(v)[i::hosts]) for k, v in batch.items()
            }
        return jax.device_put(batch, sharding)

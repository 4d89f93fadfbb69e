"""Counting a Flax model's (or any pytree's) parameters."""

from __future__ import annotations

import jax


def parameter_count(params) -> int:
    """The number of scalars in the pytree ``params``."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def transformer_parameters(params: dict) -> dict:
    """``{"transformer": all parameters, "transformer_blocks": those of its blocks (``layer_*``)}`` of a Flax
    transformer's variables."""
    blocks = {k: v for k, v in params["params"].items() if k.startswith("layer_")}
    return {"transformer": parameter_count(params), "transformer_blocks": parameter_count(blocks)}

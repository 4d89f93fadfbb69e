"""Attention paths (Tiberi, Mignacco, Irie & Sompolinsky 2024): the theory's network, its output as a sum
over paths of one head per layer, path–path kernels, the Gaussian-process limit, the order parameter U found
by minimising the theory's action, and head scores read from U."""

from pdeflow.paths.decomposition import (
    all_paths,
    attentioned_inputs,
    gp_kernel,
    gp_order_parameter,
    path_coefficients,
    path_kernels,
    path_token_weights,
    total_kernel,
)
from pdeflow.paths.network import PathAttentionNet, PathNetConfig, readout_weights
from pdeflow.paths.theory import action, gp_predict, head_scores, kronecker_order_parameter, minimise_action

__all__ = ["PathAttentionNet", "PathNetConfig", "action", "all_paths", "attentioned_inputs", "gp_kernel",
           "gp_order_parameter", "gp_predict", "head_scores", "kronecker_order_parameter", "minimise_action",
           "path_coefficients", "path_kernels", "path_token_weights", "readout_weights", "total_kernel"]

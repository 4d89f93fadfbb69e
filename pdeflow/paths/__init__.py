"""Attention paths (Tiberi, Mignacco, Irie & Sompolinsky 2024): the theory's network, its output as a sum
over paths of one head per layer, path–path kernels, the Gaussian-process limit, the order parameter U found
by minimising the theory's action (in the project's Kronecker form or the authors' full hierarchy), head
scores read from U, and finite networks sampled from the weight posterior (or trained) and pruned."""

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
from pdeflow.paths.network import PathAttentionNet, PathNetConfig, readout_weights, with_bilinear_head
from pdeflow.paths.theory import (
    MAX_FULL_PATHS,
    ORDER_PARAMETER_FORMS,
    FullOrderParameter,
    OrderParameter,
    action,
    full_entropy,
    full_input_scale,
    gp_predict,
    head_scores,
    kronecker_order_parameter,
    minimise_action,
)
from pdeflow.paths.training import SamplerConfig, output_from_maps, prune_heads, sample_networks, value_parameters

__all__ = ["MAX_FULL_PATHS", "ORDER_PARAMETER_FORMS", "FullOrderParameter", "OrderParameter", "PathAttentionNet",
           "PathNetConfig", "SamplerConfig", "action", "all_paths", "attentioned_inputs", "full_entropy",
           "full_input_scale", "gp_kernel", "gp_order_parameter", "gp_predict", "head_scores",
           "kronecker_order_parameter", "minimise_action", "output_from_maps", "path_coefficients", "path_kernels",
           "path_token_weights", "prune_heads", "readout_weights", "sample_networks", "total_kernel",
           "value_parameters", "with_bilinear_head"]

"""The attention-PDE: grid Laplacians, the smooth time basis, the vector field and its diffrax solve."""

from pdeflow.pde.attention_pde import (
    TERMS,
    SurrogateConfig,
    attention_kernel,
    attention_log_maps,
    attention_logits,
    batch_vector_field,
    coefficients,
    init_surrogate,
    readout,
    trajectory,
    vector_field,
)
from pdeflow.pde.grid import chain_laplacian, laplacian_from_adjacency, patch_grid_laplacian
from pdeflow.pde.solve import SOLVERS, SolverConfig, SolverError, solve

__all__ = ["SOLVERS", "TERMS", "SolverConfig", "SolverError", "SurrogateConfig", "attention_kernel",
           "attention_log_maps", "attention_logits", "batch_vector_field", "chain_laplacian", "coefficients",
           "init_surrogate",
           "laplacian_from_adjacency", "patch_grid_laplacian", "readout", "solve", "trajectory", "vector_field"]

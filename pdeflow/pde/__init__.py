"""The attention-PDE: token geometries, the smooth time basis, the right-hand-side terms, the vector field and its
diffrax solve."""

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
from pdeflow.pde.geometry import ChainGeometry, PatchGridGeometry, TokenGeometry
from pdeflow.pde.grid import chain_laplacian, laplacian_from_adjacency, patch_grid_laplacian
from pdeflow.pde.solve import SOLVERS, SolverConfig, SolverError, solve
from pdeflow.pde.terms import REGISTRY, Term, TermInputs, TermParts, ablation_key, ablation_label, register_term

__all__ = ["REGISTRY", "SOLVERS", "TERMS", "ChainGeometry", "PatchGridGeometry", "SolverConfig", "SolverError",
           "SurrogateConfig", "Term", "TermInputs", "TermParts", "TokenGeometry", "ablation_key", "ablation_label",
           "attention_kernel", "attention_log_maps", "attention_logits", "batch_vector_field", "chain_laplacian",
           "coefficients", "init_surrogate", "laplacian_from_adjacency", "patch_grid_laplacian", "readout",
           "register_term", "solve", "trajectory", "vector_field"]

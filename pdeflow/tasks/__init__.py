"""Tasks with known structure, seeded and reproducible: the hidden-Markov-chain classification task of the
attention-path theory (with its hand-built switch-detecting head), digit-patch sequences, and sequence tasks
with long but sparse memory (fixed, adaptive, nested, smooth power-law or exponential-type, sparse
Boolean: parity, AND, majority)."""

from pdeflow.tasks.digit_sequences import digit_pair_task, digit_sequences
from pdeflow.tasks.markov_chains import MarkovChainTask, switch_detector
from pdeflow.tasks.sparse_memory import (
    BOOLEAN_TARGETS,
    READOUTS,
    AdaptiveMemory,
    FixedMemory,
    MemoryBatch,
    SmoothMemory,
    SparseBoolean,
    batches,
    heavy_tailed_memory,
    light_tailed_memory,
    memory_kernel,
    normalised_mse,
    sample,
    sign_error,
)

__all__ = ["BOOLEAN_TARGETS", "READOUTS", "AdaptiveMemory", "FixedMemory", "MarkovChainTask", "MemoryBatch",
           "SmoothMemory", "SparseBoolean", "batches", "digit_pair_task", "digit_sequences", "heavy_tailed_memory",
           "light_tailed_memory", "memory_kernel", "normalised_mse", "sample", "sign_error",
           "switch_detector"]

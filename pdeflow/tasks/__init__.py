"""Tasks with known structure, seeded and reproducible: the hidden-Markov-chain classification task of the
attention-path theory (with its hand-built switch-detecting head) and digit-patch sequences."""

from pdeflow.tasks.digit_sequences import digit_pair_task, digit_sequences
from pdeflow.tasks.markov_chains import MarkovChainTask, switch_detector

__all__ = ["MarkovChainTask", "digit_pair_task", "digit_sequences", "switch_detector"]

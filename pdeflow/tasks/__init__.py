"""Synthetic tasks with known structure, seeded and reproducible."""

from pdeflow.tasks.markov_chains import MarkovChainTask

__all__ = ["MarkovChainTask"]

"""Scripts that reproduce pdeflow's research results; each is ``python -m experiments.NAME --help``."""

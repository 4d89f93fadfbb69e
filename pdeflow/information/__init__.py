"""Information flow: entropies of distributions (Shannon, Rényi), attention entropy, the logit lens and entropy
profiles (also along generation), mutual-information estimators (binning, Kraskov–Stögbauer–Grassberger, Ross)."""

from pdeflow.information.entropy import attention_entropy, renyi_entropy, renyi_entropy_from_logits, shannon_entropy
from pdeflow.information.generation import GeneratedLens, generate_with_lens, windowed_profile
from pdeflow.information.lens import EntropyProfile, entropy_profile, lens_logits
from pdeflow.information.mutual_information import (
    binned_mutual_information,
    discrete_entropy,
    gaussian_mutual_information,
    ksg_mutual_information,
    mixed_ksg_mutual_information,
)

__all__ = ["EntropyProfile", "GeneratedLens", "attention_entropy", "binned_mutual_information", "discrete_entropy",
           "entropy_profile", "gaussian_mutual_information", "generate_with_lens", "ksg_mutual_information",
           "lens_logits", "mixed_ksg_mutual_information", "renyi_entropy", "renyi_entropy_from_logits",
           "shannon_entropy", "windowed_profile"]

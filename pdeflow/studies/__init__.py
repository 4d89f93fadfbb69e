"""Studies that combine models, measurements and classifiers into one result (each with a CLI command):
the entropy lens of language-model families (`pdeflow lens`) and the ViT's information plane (`pdeflow info`)."""

from pdeflow.studies.information_plane import InfoPlaneConfig, information_plane, layer_information
from pdeflow.studies.lens import LensConfig, lens_study

__all__ = ["InfoPlaneConfig", "LensConfig", "information_plane", "layer_information", "lens_study"]

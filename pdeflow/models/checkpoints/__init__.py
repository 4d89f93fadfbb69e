"""Users' own Hugging Face-format checkpoints (bert, roberta, distilbert, vit, gpt2), read from a folder on disk
(never downloaded) and traced like pdeflow's own models: `load_pretrained(folder) -> PretrainedModel`,
`read_shape(folder) -> CheckpointShape` (config.json alone)."""

from pdeflow.models.checkpoints.folder import SUPPORTED_MODEL_TYPES
from pdeflow.models.checkpoints.images import ImagePreprocessor
from pdeflow.models.checkpoints.loading import load_pretrained, read_shape
from pdeflow.models.checkpoints.model import CheckpointShape, PretrainedModel

__all__ = ["SUPPORTED_MODEL_TYPES", "CheckpointShape", "ImagePreprocessor", "PretrainedModel", "load_pretrained",
           "read_shape"]

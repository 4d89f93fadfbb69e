"""A ViT checkpoint's image preprocessing, read from its ``preprocessor_config.json``: resize to the model's
size (PIL, with the processor's resample filter), rescale (``× 1/255``) and normalise per channel, as Hugging
Face's ``ViTImageProcessor`` (PIL backend) does; keys the file leaves out take that processor's defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pdeflow.models.checkpoints.folder import read_json

IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)  # ViTImageProcessor's defaults
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
PROCESSOR_TYPES = ("ViTImageProcessor", "ViTImageProcessorFast", "ViTImageProcessorPil", "ViTFeatureExtractor")
BILINEAR = 2  # PIL.Image.Resampling.BILINEAR


@dataclasses.dataclass(frozen=True)
class ImagePreprocessor:
    """``(images) -> pixels (B, C, H, W) float32``.

    Attributes:
        size: ``(height, width)`` to resize to (when ``do_resize``).
        resample: the PIL resampling filter (an integer, e.g. 2 = bilinear, 3 = bicubic).
        rescale_factor: the factor pixel values are multiplied by (when ``do_rescale``), usually 1/255.
        image_mean, image_std: per-channel normalisation (when ``do_normalize``).
        num_channels: the model's input channels (3: images are converted to RGB; 1: to greyscale).
    """

    size: tuple[int, int]
    num_channels: int = 3
    resample: int = BILINEAR
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = IMAGENET_STANDARD_MEAN
    image_std: tuple[float, ...] = IMAGENET_STANDARD_STD

    def __call__(self, images: Sequence) -> np.ndarray:
        """``images``: a list of PIL images or ``(H, W, C)`` / ``(H, W)`` uint8 arrays -> ``(B, C, H, W)`` float32."""
        if isinstance(images, np.ndarray) and images.ndim == 4:  # (B, H, W, C) uint8
            images = list(images)
        if not isinstance(images, (list, tuple)) or not images:
            raise TypeError("pass a non-empty list of images (PIL images or HxWxC uint8 arrays), not "
                            f"{type(images).__name__}.")
        out = np.stack([self.one(image, i) for i, image in enumerate(images)])
        if out.shape[2:] != tuple(self.size):
            raise ValueError(f"the preprocessed images are {out.shape[2]}x{out.shape[3]} but the model takes "
                             f"{self.size[0]}x{self.size[1]}; resize them (do_resize in preprocessor_config.json).")
        return out

    def one(self, image, index: int = 0) -> np.ndarray:
        from PIL import Image

        mode = "RGB" if self.num_channels == 3 else "L"
        if isinstance(image, Image.Image):
            image = image.convert(mode) if image.mode != mode else image
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise ValueError(f"image {index}: arrays must be (H, W, C) or (H, W) uint8; got {image.dtype} "
                                 f"{image.shape}. Convert float images to uint8 0..255 (or pass PIL images).")
            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            if image.ndim == 3 and image.shape[-1] not in (3, 4):
                raise ValueError(f"image {index}: expected 1, 3 or 4 channels last (H, W, C); got {image.shape}.")
            image = Image.fromarray(image).convert(mode)
        else:
            raise TypeError(f"image {index} is a {type(image).__name__}; pass PIL images or uint8 numpy arrays.")
        if self.do_resize and image.size != (self.size[1], self.size[0]):
            image = image.resize((self.size[1], self.size[0]), resample=self.resample, reducing_gap=None)
        pixels = np.asarray(image)
        pixels = (pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0))
        if self.do_rescale:
            pixels = (pixels.astype(np.float64) * self.rescale_factor).astype(np.float32)
        pixels = pixels.astype(np.float32)
        if self.do_normalize:
            mean = np.asarray(self.image_mean, np.float32)[:, None, None]
            std = np.asarray(self.image_std, np.float32)[:, None, None]
            pixels = (pixels - mean) / std
        return pixels.astype(np.float32)


def read_preprocessor(folder: Path, image_size: tuple[int, int], num_channels: int) -> ImagePreprocessor:
    """The `ImagePreprocessor` of ``folder/preprocessor_config.json``. Like Hugging Face's
    ``AutoImageProcessor``, there is no fallback when the file is missing: it is an error."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: it says how images are resized, rescaled and normalised for this ViT, and "
            "Hugging Face has no fallback either. Save the model's image processor next to the weights "
            "(`ViTImageProcessor.from_pretrained(NAME).save_pretrained(DIR)`), or write one such as "
            f'{{"image_processor_type": "ViTImageProcessor", "size": {{"height": {image_size[0]}, "width": '
            f'{image_size[1]}}}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}}.')
    p = read_json(path, "image preprocessor")
    kind = p.get("image_processor_type", p.get("feature_extractor_type", "ViTImageProcessor"))
    if kind not in PROCESSOR_TYPES:
        raise ValueError(f"{path}: image_processor_type {kind!r} is not supported; pdeflow applies "
                         f"{', '.join(PROCESSOR_TYPES[:2])} (resize, rescale, normalise).")
    for key in ("do_center_crop", "do_pad", "do_reduce_labels"):
        if p.get(key):
            raise ValueError(f"{path}: {key}=true is not supported (pdeflow resizes, rescales and normalises "
                             "only); set it to false if the model was trained without it.")
    size = p.get("size", {"height": 224, "width": 224})
    if isinstance(size, int):
        size = {"height": size, "width": size}
    if not isinstance(size, dict) or set(size) != {"height", "width"}:
        raise ValueError(f"{path}: size must be {{\"height\": H, \"width\": W}}; got {size!r} (shortest_edge "
                         "resizing is not supported).")
    resample = p.get("resample", BILINEAR)
    if not isinstance(resample, int) or not 0 <= resample <= 5:
        raise ValueError(f"{path}: resample must be a PIL filter number 0..5; got {resample!r}.")
    channels = num_channels

    def per_channel(key, default):
        value = p.get(key, default)
        value = [value] * channels if isinstance(value, (int, float)) else value
        if not isinstance(value, list) or len(value) != channels:
            raise ValueError(f"{path}: {key} must be a number or a list of {channels} numbers; got {value!r}.")
        return tuple(float(v) for v in value)

    pre = ImagePreprocessor(size=(int(size["height"]), int(size["width"])), num_channels=num_channels,
                            resample=resample, do_resize=bool(p.get("do_resize", True)),
                            do_rescale=bool(p.get("do_rescale", True)),
                            rescale_factor=float(p.get("rescale_factor", 1 / 255)),
                            do_normalize=bool(p.get("do_normalize", True)),
                            image_mean=per_channel("image_mean", list(IMAGENET_STANDARD_MEAN)),
                            image_std=per_channel("image_std", list(IMAGENET_STANDARD_STD)))
    if pre.do_resize and pre.size != tuple(image_size):
        raise ValueError(f"{path} resizes images to {pre.size[0]}x{pre.size[1]} but config.json's ViT takes "
                         f"{image_size[0]}x{image_size[1]}; the two files do not belong together.")
    return pre

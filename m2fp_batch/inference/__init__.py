"""preprocess -> model -> postprocess, without Ray."""

from m2fp_batch.inference.loading import ModelInfo, ModelLoadError, load_model
from m2fp_batch.inference.parser import M2FPParser
from m2fp_batch.inference.preprocess import load_image
from m2fp_batch.inference.types import InstanceSet, ParseResult, Person

__all__ = [
    "InstanceSet",
    "M2FPParser",
    "ModelInfo",
    "ModelLoadError",
    "ParseResult",
    "Person",
    "load_image",
    "load_model",
]

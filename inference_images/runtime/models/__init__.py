"""Served models: the contract (``base``), the loaders and loaded set (``registry``), and the models."""

from inference_images.runtime.models.base import Model, Tensor, TensorSpec
from inference_images.runtime.models.registry import (
    LoaderRegistry,
    ModelEntry,
    ModelNotFoundError,
    ModelRepository,
    ModelSpec,
    ModelState,
    default_loaders,
)

__all__ = [
    "LoaderRegistry",
    "Model",
    "ModelEntry",
    "ModelNotFoundError",
    "ModelRepository",
    "ModelSpec",
    "ModelState",
    "Tensor",
    "TensorSpec",
    "default_loaders",
]

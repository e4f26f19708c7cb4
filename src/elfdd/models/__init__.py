"""Networks with the split contract, their registry and the shape adapters."""

from . import alexnet, convnet, lenet, mlp, resnet, torchvision_zoo, vgg  # noqa: F401  (registers the architectures)
from .adapters import FeatureAdapter, adapter_pair
from .anatomy import Anatomy, anatomy_of
from .hooks import forward_with_features
from .layers import running_stats_frozen
from .registry import (
    ModelSpec,
    create_model,
    get_spec,
    list_models,
    probe_model,
    register_model,
    split_points,
)
from .split import SplitNet

__all__ = [
    "Anatomy",
    "anatomy_of",
    "running_stats_frozen",
    "FeatureAdapter",
    "ModelSpec",
    "SplitNet",
    "adapter_pair",
    "create_model",
    "forward_with_features",
    "get_spec",
    "list_models",
    "probe_model",
    "register_model",
    "split_points",
]

"""The reference architectures against the DC/ELF definitions (networks.py of the ELF reference code, which takes
them from DatasetCondensation): layer sequence at the ELF cut, conv count, parameter count and front shape.

Everything on the right-hand side is written down from the reference's class definitions (cfg lists, layer
constructors, the ``*_Layered`` / ``*_L*`` cuts), not computed from elfdd's code: ``ConvNet`` (width 128, depth 3,
instance norm, avg-pool; first conv padding 3 on 1-channel 28x28), ``VGG11`` (cfg 64 M 128 M 256 256 M 512 512 M
512 512 M, cut after cfg[:8]), ``ResNet18`` (3x3 stem, BasicBlocks 2-2-2-2, cut between the two 512 blocks),
``AlexNet`` (5 convs, 3 max-pools, Linear(192*4*4)), ``LeNet`` (6/16 convs, 120-84), ``MLP`` (128-128).
Tokens: conv<out>, in (GroupNorm(C, C)), max / avg (2x2 pools), fc<out>; ReLU, flatten and identity pools are not
listed (the reference's ResNet applies ReLU and its pools functionally).
"""

from __future__ import annotations

import pytest
from torch import nn

from elfdd.models import create_model


def _block(c_in: int, c_out: int) -> str:
    shortcut = f" conv{c_out} in" if c_in != c_out else ""
    return f"conv{c_out} in conv{c_out} in{shortcut}"


RESNET18_FRONT = " ".join(
    [
        "conv64 in",
        _block(64, 64),
        _block(64, 64),
        _block(64, 128),
        _block(128, 128),
        _block(128, 256),
        _block(256, 256),
        _block(256, 512),
    ]
)

# name: (front tokens, rear tokens, convs, parameters at 1x28x28 / 10 classes, parameters at 3x32x32, front shape)
REFERENCE = {
    "convnet": (
        "conv128 in avg conv128 in avg conv128 in avg",
        "fc10",
        3,
        317_706,
        320_010,
        (128, 4, 4),
    ),
    "vgg11": (
        "conv64 in max conv128 in max conv256 in conv256 in max conv512 in",
        "conv512 in max conv512 in conv512 in max fc10",
        8,
        9_229_962,
        9_231_114,
        (512, 4, 4),
    ),
    "resnet18": (RESNET18_FRONT, _block(512, 512) + " fc10", 20, 11_172_810, 11_173_962, (512, 4, 4)),
    "alexnet": (
        "conv128 max conv192 max conv256 conv192 conv192 max",
        "fc10",
        5,
        1_865_802,
        1_872_202,
        (192, 4, 4),
    ),
    "lenet": ("conv6 max conv16 max", "fc120 fc84 fc10", 2, 61_706, 62_006, (16, 5, 5)),
    "mlp": ("fc128 fc128", "fc10", 0, 118_282, 411_146, (128,)),
}


def _token(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d):
        return f"conv{module.out_channels}"
    if isinstance(module, nn.Linear):
        return f"fc{module.out_features}"
    if isinstance(module, nn.GroupNorm):
        assert module.num_groups == module.num_channels  # instance norm as the reference writes it
        return "in"
    if isinstance(module, nn.MaxPool2d):
        return "max"
    if isinstance(module, nn.AvgPool2d) and module.kernel_size not in (1, (1, 1)):
        return "avg"
    return None


def _tokens(modules: list[nn.Module]) -> str:
    leaves = [m for stage in modules for m in stage.modules() if not list(m.children())]
    return " ".join(t for t in map(_token, leaves) if t)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_architecture_matches_the_reference(name):
    front_tokens, rear_tokens, convs, params_1ch, params_3ch, front_shape = REFERENCE[name]
    model = create_model(name, 1, 10, 28)
    stages = list(model.children())
    cut = list(dict(model.named_children())).index(model.default_split) + 1
    assert _tokens(stages[:cut]) == front_tokens
    assert _tokens(stages[cut:]) == rear_tokens
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == convs
    assert sum(p.numel() for p in model.parameters()) == params_1ch
    assert sum(p.numel() for p in create_model(name, 3, 10, 32).parameters()) == params_3ch
    assert model.feature_shape((1, 28, 28)) == front_shape
    assert create_model(name, 3, 10, 32).feature_shape((3, 32, 32)) == front_shape

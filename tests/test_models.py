"""Every registered architecture keeps the split contract; parametrised over the registry."""

from __future__ import annotations

import pytest
import torch

from elfdd.models import FeatureAdapter, adapter_pair, create_model, forward_with_features, list_models

MODELS = list_models()
INPUTS = [(1, 28), (3, 32)]


def test_registry_has_the_issue_architectures():
    assert {"convnet", "convnet_bn", "resnet18", "resnet18_bn", "vgg11", "vgg11_bn", "alexnet", "mlp"} <= set(
        MODELS
    )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("channels,size", INPUTS)
def test_forward_equals_rear_of_front_at_every_split(name, channels, size):
    torch.manual_seed(0)
    model = create_model(name, channels, 10, size).eval()
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (3, 10)
        for split in model.split_points:
            h = model.front(x, split)
            assert tuple(h.shape[1:]) == model.feature_shape((channels, size, size), split)
            torch.testing.assert_close(model.rear(h, split), logits)


@pytest.mark.parametrize("name", MODELS)
def test_features_by_module_name_equal_front(name):
    model = create_model(name, 1, 10, 28).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        logits, features = forward_with_features(model, x, model.split_points)
        for split in model.split_points:
            torch.testing.assert_close(features[split], model.front(x, split))
        torch.testing.assert_close(logits, model(x))
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("name", MODELS)
def test_adapters_map_student_features_to_the_convnet_teacher_and_back(name):
    student = create_model(name, 1, 10, 28)
    teacher_shape = create_model("convnet", 1, 10, 28).feature_shape((1, 28, 28))
    student_shape = student.feature_shape((1, 28, 28))
    adapters = adapter_pair(student_shape, teacher_shape)
    h = student.front(torch.randn(2, 1, 28, 28))
    assert tuple(adapters["to_teacher"](h).shape[1:]) == teacher_shape
    back = adapters["from_teacher"](torch.randn(2, *teacher_shape))
    assert tuple(back.shape[1:]) == student_shape
    assert student.rear(back).shape == (2, 10)


def test_elf_split_shapes_match_the_reference():
    assert create_model("convnet", 1, 10, 28).feature_shape((1, 28, 28)) == (128, 4, 4)
    assert create_model("resnet18", 1, 10, 28).feature_shape((1, 28, 28)) == (512, 4, 4)
    assert create_model("vgg11", 1, 10, 28).feature_shape((1, 28, 28)) == (512, 4, 4)
    assert create_model("resnet18", 3, 100, 32).feature_shape((3, 32, 32)) == (512, 4, 4)


def test_adapter_resizes_up_and_down():
    assert FeatureAdapter((64, 8, 8), (128, 4, 4))(torch.randn(2, 64, 8, 8)).shape == (2, 128, 4, 4)
    assert FeatureAdapter((64, 2, 2), (32, 4, 4))(torch.randn(2, 64, 2, 2)).shape == (2, 32, 4, 4)
    assert FeatureAdapter((128, 4, 4), (128, 4, 4)).is_identity


def test_unknown_split_and_kwargs_are_refused():
    model = create_model("convnet", 1, 10, 28)
    with pytest.raises(KeyError, match="unknown split point"):
        model.front(torch.randn(1, 1, 28, 28), "nope")
    with pytest.raises(KeyError, match="does not take"):
        create_model("convnet", 1, 10, 28, colour="red")
    with pytest.raises(KeyError, match="unknown architecture"):
        create_model("vit", 1, 10, 28)


def test_convnet_width_depth_norm():
    model = create_model("convnet", 1, 10, 28, width=32, depth=2, norm="batch")
    assert model.split_points == ("block1", "block2")
    assert model.feature_shape((1, 28, 28)) == (32, 8, 8)
    assert isinstance(model.block1[1], torch.nn.BatchNorm2d)
    assert isinstance(create_model("convnet", 1, 10, 28).block1[1], torch.nn.GroupNorm)


@pytest.mark.parametrize("name", MODELS)
def test_running_stats_frozen_leaves_batch_norm_statistics_alone(name):
    """The rear pass of ``students.rear_bn_stats: front``: train-mode batch norm still normalises with the batch's
    statistics, and the running ones (what the student is tested with) stay exactly as they were."""
    from elfdd.models import running_stats_frozen

    torch.manual_seed(0)
    model = create_model(name, 1, 10, 28).train()
    x = torch.randn(4, 1, 28, 28)
    model(x)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with running_stats_frozen(model):
        model(x * 3 + 1)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    model(x * 3 + 1)  # outside: the statistics move again (where the model has batch norm)
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in before.items()) == bool(before)

"""Datasets, distillation methods and feature losses are registries, as models are: a registered name is a valid
config value, an unknown one is bad input listing the registered names, and --help lists them all."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from elfdd.core.errors import BadInput
from elfdd.flows.cli import main
from elfdd.pipeline import data as data_module
from elfdd.pipeline import distill as distill_module
from elfdd.pipeline import losses
from elfdd.pipeline.config import load_config
from elfdd.pipeline.data import load_data


def test_a_registered_dataset_loads_through_the_config(monkeypatch):
    rng = np.random.default_rng(0)

    def tiny(cfg):
        images = rng.integers(0, 255, (20, 8, 8), dtype=np.uint8)
        return {
            "x_train": images,
            "y_train": np.arange(20) % 2,
            "x_test": images[:6],
            "y_test": np.arange(6) % 2,
        }

    monkeypatch.setitem(data_module.DATASETS, "tiny", tiny)
    data = load_data(load_config(None, ["data.name=tiny"]).data)
    assert data.name == "tiny" and data.x_train.shape == (20, 1, 8, 8) and data.num_classes == 2


def test_a_registered_feature_loss_is_used_by_name(monkeypatch):
    monkeypatch.setitem(losses.FEATURE_LOSSES, "linf", lambda s, t, _: (s - t).abs().amax())
    assert load_config(None, ["students.feature_losses=[ce,linf]"]).students.feature_losses == ["ce", "linf"]
    s, t = torch.zeros(2, 3), torch.ones(2, 3)
    assert losses.feature_loss("linf", s, t).item() == 1.0


def test_a_registered_method_gets_its_image_lr(monkeypatch):
    monkeypatch.setitem(
        distill_module.METHODS, "noop", distill_module.Method(lambda ctx: ({}, None), lr_img=7.0)
    )
    assert load_config(None, ["distill.method=noop"]).distill.image_lr == 7.0


@pytest.mark.parametrize(
    ("override", "listed"),
    [
        ("data.name=svhn", "registered: fashion_mnist, npz"),
        ("distill.method=kip", "registered: dm, dsa, mtt"),
        ("students.feature_losses=[ce,bogus]", "registered: ce, kl, l2, l1, cosine"),
    ],
)
def test_an_unknown_name_is_bad_input_listing_the_registry(override, listed):
    with pytest.raises(BadInput, match=listed):
        load_config(None, [override])


def test_help_lists_every_registry(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("fashion_mnist", "mtt", "tv_resnet18", "cosine"):
        assert name in out

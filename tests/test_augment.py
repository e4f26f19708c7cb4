"""DSA: sampled parameters replay exactly; each op does what the reference op does."""

from __future__ import annotations

import pytest
import torch

from elfdd.pipeline import augment as A


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("strategy", [*A.OPS, A.DEFAULT_STRATEGY])
@pytest.mark.parametrize("one_op", [True, False])
def test_replay_is_exact(strategy, one_op):
    x = torch.randn(16, 3, 32, 32)
    y, params = A.augment(x, _gen(), strategy, one_op)
    stored = params.numpy().astype("float32")  # as the store keeps them
    torch.testing.assert_close(A.apply(x, torch.from_numpy(stored)), y, rtol=0, atol=0)
    assert params.shape == (16, A.NUM_PARAMS)


def test_one_op_picks_one_op_for_the_call_all_applies_every_op():
    _, params = A.augment(torch.randn(8, 1, 28, 28), _gen(3))
    flags = params[:, : len(A.OPS)]
    assert (flags.sum(1) == 1).all() and (flags == flags[0]).all()
    _, params = A.augment(torch.randn(8, 1, 28, 28), _gen(3), one_op=False)
    assert (params[:, : len(A.OPS)] == 1).all()


def test_parameters_are_per_sample():
    _, params = A.augment(torch.randn(64, 1, 28, 28), _gen(), one_op=False)
    for name in ("brightness", "crop_dx", "scale_x", "rotate_rad"):
        assert params[:, A.COL[name]].unique().numel() > 1


def test_flip_and_crop_do_what_they_say():
    x = torch.arange(2 * 28 * 28, dtype=torch.float32).view(2, 1, 28, 28)
    params = torch.zeros(2, A.NUM_PARAMS)
    params[:, A.COL["flip"]] = 1
    params[0, A.COL["mirror"]] = 1
    y = A.apply(x, params)
    torch.testing.assert_close(y[0], x[0].flip(2))
    torch.testing.assert_close(y[1], x[1])
    params = torch.zeros(1, A.NUM_PARAMS)
    params[0, A.COL["crop"]] = 1
    params[0, A.COL["crop_dx"]] = 2
    y = A.apply(x[:1], params)
    torch.testing.assert_close(y[0, 0, :, :-2], x[0, 0, :, 2:])
    assert (y[0, 0, :, -2:] == 0).all()


def test_cutout_zeroes_a_half_size_square():
    x = torch.ones(1, 1, 28, 28)
    params = torch.zeros(1, A.NUM_PARAMS)
    params[0, A.COL["cutout"]] = 1
    params[0, A.COL["cutout_x"]] = params[0, A.COL["cutout_y"]] = 14
    assert int((A.apply(x, params) == 0).sum()) == 14 * 14


def test_gradients_reach_the_images():
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    y, _ = A.augment(x, _gen(), one_op=False)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_siamese_params_share_op_and_rows():
    p_real, p_syn = A.siamese_params(32, 4, 28, _gen())
    torch.testing.assert_close(p_real[:4], p_syn)


def test_unknown_op_is_refused():
    with pytest.raises(ValueError, match="unknown DSA ops"):
        A.sample_params(2, 28, _gen(), strategy="color_blur")

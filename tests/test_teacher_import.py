"""Teachers trained elsewhere: an MTT expert buffer (replay_buffer_N.pt, written here in MTT's layout from a ConvNet
written as the DatasetCondensation code writes it) and a DC-named state_dict become the run's teacher; their stored
features equal a forward pass of the same weights loaded by hand, their test accuracy is in the manifest; bad files
are refused with exit 2 and no checkpoint written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr
from helpers import TINY_RUN
from torch import nn

from elfdd.flows.cli import main
from elfdd.pipeline.config import load_config
from elfdd.pipeline.data import load_data
from elfdd.pipeline.synthetic import load_synthetic

CLASSES = 4


class DCConvNet(nn.Module):
    """DatasetCondensation's utils/networks.py ConvNet (instancenorm, avgpooling), as MTT trains its experts:
    ``features`` = depth x (conv, GroupNorm(c, c), ReLU, AvgPool), first conv padded by 3 for 1-channel input."""

    def __init__(self, channel: int, num_classes: int, width: int = 128, depth: int = 3, size: int = 28):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = channel
        for d in range(depth):
            layers.append(nn.Conv2d(in_channels, width, 3, padding=3 if channel == 1 and d == 0 else 1))
            if channel == 1 and d == 0:
                size += 4
            layers += [nn.GroupNorm(width, width, affine=True), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2)]
            in_channels, size = width, size // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def _trajectory(seed: int, epochs: int) -> list[list[torch.Tensor]]:
    """What MTT's buffer.py appends per expert: the parameters (net.parameters() order) at each epoch."""
    torch.manual_seed(seed)
    net = DCConvNet(1, CLASSES)
    steps = [[p.detach().clone() for p in net.parameters()]]
    for _ in range(epochs):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        steps.append([p.detach().clone() for p in net.parameters()])
    return steps


def _hand_loaded(params: list[torch.Tensor]) -> DCConvNet:
    net = DCConvNet(1, CLASSES)
    for p, value in zip(net.parameters(), params, strict=True):
        p.data.copy_(value)
    return net.eval()


def _sets(toy_npz, *extra):
    items = ["data.name=npz", f"data.path={toy_npz}", *TINY_RUN, "students.archs=[convnet]"]
    items += ["extract.dtype=float32", *extra]
    return [arg for item in items for arg in ("--set", item)]


def _check_teacher(out, toy_npz, epoch: int, net: DCConvNet) -> None:
    synthetic = load_synthetic(out / "synthetic.pt")
    with torch.no_grad():
        expected = net.features(synthetic.images).numpy()
    stored = np.asarray(
        zarr.open_group(str(out / "store.zarr"), mode="r")[f"teachers/teacher/epoch_{epoch:04d}/block3"]
    )
    assert stored.reshape(expected.shape) == pytest.approx(expected, abs=1e-4)
    data = load_data(load_config(None, ["data.name=npz", f"data.path={toy_npz}"]).data, 0)
    with torch.no_grad():
        accuracy = (net(data.x_test).argmax(1) == data.y_test).float().mean().item()
    manifest = json.loads((out / "checkpoints/teacher/manifest.json").read_text())
    entry = next(c for c in manifest["checkpoints"] if c["epoch"] == epoch)
    assert entry["test_acc"] == pytest.approx(accuracy, abs=1e-6)
    assert manifest["complete"] and manifest["source"]["files"][0]["sha256"]


@pytest.mark.slow
def test_an_mtt_buffer_becomes_the_teacher(toy_npz, tmp_path):
    buffer = tmp_path / "replay_buffer_0.pt"
    trajectories = [_trajectory(0, 3), _trajectory(1, 3)]
    torch.save(trajectories, buffer)
    out = tmp_path / "run"
    teacher = ["teacher.source=mtt_buffer", f"teacher.paths={buffer}", "teacher.trajectory=1"]
    assert main(["run", "--out", str(out), *_sets(toy_npz, *teacher, "teacher.checkpoint_epochs=[1,3]")]) == 0
    for epoch in (1, 3):
        _check_teacher(out, toy_npz, epoch, _hand_loaded(trajectories[1][epoch]))
    results = json.loads((out / "results.json").read_text())
    assert {r["mode"] for r in results["runs"]} == {"baseline", "elf"}


@pytest.mark.parametrize("wrap", ["plain", "state_dict_module"])
def test_a_dc_named_state_dict_becomes_the_teacher(wrap, toy_npz, tmp_path):
    torch.manual_seed(3)
    net = DCConvNet(1, CLASSES).eval()
    state = net.state_dict()
    if wrap == "state_dict_module":  # a DataParallel model saved inside a training checkpoint
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 7}
    path = tmp_path / "convnet.pt"
    torch.save(state, path)
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--out",
                str(out),
                *_sets(
                    toy_npz,
                    "teacher.source=checkpoint",
                    f"teacher.paths={path}",
                    "teacher.checkpoint_epochs=[1]",
                ),
            ]
        )
        == 0
    )
    _check_teacher(out, toy_npz, 1, net)


def _bad_buffer(tmp_path, case):
    path = tmp_path / "replay_buffer_0.pt"
    if case == "classes":
        torch.manual_seed(0)
        torch.save([[[p.detach() for p in DCConvNet(1, CLASSES + 1).parameters()]] * 3], path)
    elif case == "epoch":
        torch.save([_trajectory(0, 1)], path)
    elif case == "width":
        torch.save([[[p.detach() for p in DCConvNet(1, CLASSES, width=16).parameters()]] * 3], path)
    else:
        torch.save({"images": torch.zeros(2)}, path)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("classes", "does not fit"),
        ("epoch", "has epochs 0..1"),
        ("width", "does not fit"),
        ("not_a_buffer", "not an MTT expert buffer"),
    ],
)
def test_a_bad_teacher_file_is_refused_and_nothing_written(case, message, toy_npz, tmp_path, capsys):
    path = _bad_buffer(tmp_path, case)
    out = tmp_path / "run"
    teacher = ["teacher.source=mtt_buffer", f"teacher.paths={path}", "teacher.checkpoint_epochs=[2]"]
    assert main(["run", "--out", str(out), *_sets(toy_npz, *teacher)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert not list((out / "checkpoints").rglob("*.pt")) and not (out / "store.zarr").exists()


def test_imported_teacher_config_is_checked():
    with pytest.raises(Exception, match="2 files in teacher.paths for 1"):
        load_config(
            None, ["teacher.source=checkpoint", "teacher.paths=[a.pt,b.pt]", "teacher.checkpoint_epochs=[1]"]
        )
    with pytest.raises(Exception, match="teacher.paths is for an imported teacher"):
        load_config(None, ["teacher.paths=a.pt"])

"""Sets made elsewhere: files written in the public codes' layouts (MTT's images_best.pt/labels_best.pt, the
DatasetCondensation result dict, .npz, PNG class folders) are imported and evaluated end to end; bad files are
refused with exit 2 and nothing written; an exported set imported back gives the same store and students."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr
from helpers import TINY_RUN

from elfdd.core.errors import BadInput
from elfdd.flows.cli import main
from elfdd.pipeline.config import load_config
from elfdd.pipeline.data import load_data
from elfdd.pipeline.formats import list_formats
from elfdd.pipeline.synthetic import load_synthetic

GRID = [*TINY_RUN, "students.archs=[convnet]"]


def _sets(toy_npz, extra=()):
    items = ["data.name=npz", f"data.path={toy_npz}", *GRID, *extra]
    return [arg for item in items for arg in ("--set", item)]


def _real_set(toy_npz, ipc=2):
    """ipc normalised real images per class and their labels, as a distillation script would hold them."""
    data = load_data(load_config(None, ["data.name=npz", f"data.path={toy_npz}"]).data, 0)
    index = torch.cat([torch.nonzero(data.y_train == c).flatten()[:ipc] for c in range(data.num_classes)])
    return data, data.x_train[index].clone(), data.y_train[index].clone()


def _write(fmt, folder, toy_npz):
    data, images, labels = _real_set(toy_npz)
    folder.mkdir(parents=True)
    if fmt == "mtt":
        torch.save(images, folder / "images_best.pt")
        torch.save(labels, folder / "labels_best.pt")
        torch.save(torch.tensor(0.01), folder / "lr_best.pt")
        return [folder], images
    if fmt == "dc":
        path = folder / "res_DM_toy_ConvNet_2ipc.pt"
        saved = {"data": [[images, labels]], "accs_all_exps": {"ConvNet": [np.float64(0.5)]}}
        torch.save(saved, path)
        return [path], images
    pixels = images * torch.tensor(data.std).view(1, -1, 1, 1) + torch.tensor(data.mean).view(1, -1, 1, 1)
    if fmt == "npz":
        path = folder / "set.npz"
        np.savez(path, images=pixels.numpy(), labels=labels.numpy())
        return [path], images
    from PIL import Image

    for i, (image, label) in enumerate(zip(pixels, labels.tolist(), strict=True)):
        (folder / f"class_{label}").mkdir(exist_ok=True)
        Image.fromarray((image[0].clamp(0, 1) * 255).round().byte().numpy()).save(
            folder / f"class_{label}/{i}.png"
        )
    return [folder], images


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list_formats())
def test_a_set_in_each_format_is_imported_and_evaluated(fmt, toy_npz, tmp_path, capsys):
    paths, images = _write(fmt, tmp_path / "given", toy_npz)
    out = tmp_path / "run"
    space = ["--space", "pixel"] if fmt == "npz" else []
    assert main(["import-synthetic", *map(str, paths), "--out", str(out), *space, *_sets(toy_npz)]) == 0
    synthetic = load_synthetic(out / "synthetic.pt")
    assert synthetic.method == "file" and synthetic.extra["source"]["format"] == fmt
    assert len(synthetic.labels) == 8 and synthetic.ipc == 2
    if fmt in ("mtt", "dc"):
        assert torch.equal(synthetic.images, images)  # normalised by convention: taken as they are
    else:
        tolerance = 1 / 255 / 0.1 if fmt == "png" else 1e-5  # 8-bit rounding
        assert torch.allclose(synthetic.images, images, atol=tolerance)
    if fmt == "mtt":
        assert synthetic.extra["syn_lr"] == pytest.approx(0.01)
    assert main(["run", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {r["mode"] for r in results["runs"]} == {"baseline", "elf"}
    source = results["synthetic"]["source"]  # which files were evaluated, in results.json and the report
    assert source == synthetic.extra["source"] and source["files"]
    first = source["files"][0]
    assert f"`{first['name']}` (sha256 `{first['sha256'][:16]}`)" in (out / "report.md").read_text()


class Needs:
    """A pickled object that only code can rebuild."""


@pytest.mark.parametrize(
    "bad",
    ["wrong_shape", "wrong_classes", "nan", "needs_code", "object_npz", "out_of_range"],
)
def test_bad_files_are_refused_in_one_line_and_nothing_is_written(bad, toy_npz, tmp_path, capsys):
    _, images, labels = _real_set(toy_npz)
    given = tmp_path / "given"
    given.mkdir()
    space = []
    if bad == "object_npz":
        path = given / "set.npz"
        np.savez(path, images=np.array([object()] * 8, dtype=object), labels=labels.numpy())
        space = ["--space", "pixel"]
    else:
        if bad == "wrong_shape":
            images = images[:, :, :14]
        elif bad == "wrong_classes":
            labels = labels.clone()
            labels[0] = 7
        elif bad == "nan":
            images = images.clone()
            images[0, 0, 0, 0] = float("nan")
        elif bad == "out_of_range":
            images = images * 1000
        torch.save(Needs() if bad == "needs_code" else images, given / "images_best.pt")
        torch.save(labels, given / "labels_best.pt")
        path = given
    out = tmp_path / "run"
    assert main(["import-synthetic", str(path), "--out", str(out), *space, *_sets(toy_npz)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if line.startswith("error: ")] == [
        err[-1]
    ]  # one line (Prefect logs its own)
    assert not out.exists()


def _store_arrays(path):
    group = zarr.open_group(path, mode="r")
    return {name: np.asarray(array[...]) for name, array in group.arrays()} | {
        f"{g}/{name}": np.asarray(a[...]) for g, sub in group.groups() for name, a in _walk(sub)
    }


def _walk(group, prefix=""):
    for name, array in group.arrays():
        yield f"{prefix}{name}", array
    for name, sub in group.groups():
        yield from _walk(sub, f"{prefix}{name}/")


@pytest.mark.slow
def test_an_exported_set_imported_back_gives_the_same_store_and_students(toy_npz, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["run", "--out", str(first), *_sets(toy_npz)]) == 0
    assert main(["export-synthetic", str(first), "--format", "mtt", "--out", str(tmp_path / "mtt")]) == 0
    assert main(["import-synthetic", str(tmp_path / "mtt"), "--out", str(second), *_sets(toy_npz)]) == 0
    assert main(["run", str(second)]) == 0
    assert load_synthetic(second / "synthetic.pt").sha256 == load_synthetic(first / "synthetic.pt").sha256
    a, b = _store_arrays(first / "store.zarr"), _store_arrays(second / "store.zarr")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    runs = [
        {r["cell"]: r["test_acc"] for r in json.loads((d / "results.json").read_text())["runs"]}
        for d in (first, second)
    ]
    assert runs[0] == runs[1]


def _soft_set(toy_npz, folder, labels_of):
    _, images, labels = _real_set(toy_npz)
    folder.mkdir(parents=True)
    torch.save(images, folder / "images_best.pt")
    torch.save(labels_of(labels), folder / "labels_best.pt")
    return folder


@pytest.mark.slow
def test_soft_labels_train_students_with_soft_target_cross_entropy(toy_npz, tmp_path):
    """DATM-style learned label logits are softmaxed and stored (N, classes); one-hot soft labels train exactly as
    the hard labels they encode (the soft-target CE of a one-hot row is the hard CE)."""
    logits = _soft_set(
        toy_npz, tmp_path / "logits", lambda y: 3 * torch.nn.functional.one_hot(y, 4).float() + 0.1
    )
    out = tmp_path / "soft"
    assert main(["import-synthetic", str(logits), "--out", str(out), *_sets(toy_npz)]) == 0
    synthetic = load_synthetic(out / "synthetic.pt")
    assert synthetic.soft and synthetic.extra["source"]["labels"] == "logits"
    assert torch.allclose(synthetic.labels.sum(1), torch.ones(8)) and synthetic.ipc == 2
    assert main(["run", str(out)]) == 0
    stored = zarr.open_group(str(out / "store.zarr"), mode="r")["synthetic/labels"]
    assert stored.shape == (8, 4) and np.allclose(stored[...], synthetic.labels.numpy())
    runs = {}
    for kind, labels_of in (
        ("hard", lambda y: y),
        ("onehot", lambda y: torch.nn.functional.one_hot(y, 4).float()),
    ):
        given = _soft_set(toy_npz, tmp_path / kind, labels_of)
        assert (
            main(["import-synthetic", str(given), "--out", str(tmp_path / f"run_{kind}"), *_sets(toy_npz)])
            == 0
        )
        assert main(["run", str(tmp_path / f"run_{kind}")]) == 0
        results = json.loads((tmp_path / f"run_{kind}" / "results.json").read_text())
        runs[kind] = {r["cell"]: r["test_acc"] for r in results["runs"]}
    assert load_synthetic(tmp_path / "run_onehot/synthetic.pt").extra["source"]["labels"] == "probabilities"
    assert runs["onehot"] == runs["hard"]


def test_soft_labels_of_another_class_count_are_refused(toy_npz, tmp_path, capsys):
    given = _soft_set(toy_npz, tmp_path / "given", lambda y: torch.rand(len(y), 5))
    out = tmp_path / "run"
    assert main(["import-synthetic", str(given), "--out", str(out), *_sets(toy_npz)]) == 2
    assert "expected (8, 4)" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not out.exists()


def test_distill_path_is_the_source_paths_shorthand():
    config = load_config(None, ["distill.method=file", "distill.path=sets/images_best.pt"])
    assert config.distill.source.paths == ["sets/images_best.pt"]
    with pytest.raises(BadInput, match="not both"):
        load_config(None, ["distill.method=file", "distill.path=a.pt", "distill.source.paths=[b.pt]"])


def test_an_mtt_set_given_as_its_images_file_brings_its_labels_and_lr(toy_npz, tmp_path):
    from elfdd.pipeline.formats import mtt

    (folder,), images = _write("mtt", tmp_path / "given", toy_npz)
    raw = mtt.read([folder / "images_best.pt"], {})
    assert torch.equal(raw.images, images) and len(raw.labels) == len(images)
    assert raw.extra["syn_lr"] == pytest.approx(0.01)
    (folder / "labels_best.pt").unlink()
    with pytest.raises(BadInput, match="labels_best.pt not found"):
        mtt.read([folder / "images_best.pt"], {})


def test_an_image_folder_of_jpegs_is_read_as_a_set(tmp_path):
    from PIL import Image

    from elfdd.pipeline.formats import png

    rng = np.random.default_rng(0)
    for label in (0, 1):
        (tmp_path / str(label)).mkdir()
        for i in range(2):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / str(label) / f"{i}.jpg", quality=95)
    Image.fromarray(pixels).convert("P").save(tmp_path / "1" / "2.png")  # a palette image: read as RGB
    (tmp_path / "1" / "notes.txt").write_text("not an image")
    assert png.claims(tmp_path)
    raw = png.read([tmp_path], {})
    assert raw.images.shape == (5, 3, 8, 8) and raw.labels.tolist() == [0, 0, 1, 1, 1]
    with Image.open(tmp_path / "0" / "0.jpg") as jpeg:
        assert torch.equal(raw.images[0], torch.from_numpy(np.array(jpeg)).permute(2, 0, 1))


def test_an_npz_export_records_its_space_and_imports_back_without_the_flag(toy_npz, tmp_path, capsys):
    from elfdd.pipeline.formats import npz
    from elfdd.pipeline.synthetic import SyntheticSet

    data, images, labels = _real_set(toy_npz)
    synthetic = SyntheticSet(images, labels, "dm", 2, "npz", 4, {"mean": data.mean, "std": data.std})
    (path,) = npz.write(synthetic, tmp_path / "set.npz")
    raw = npz.read([path], {})
    assert raw.space == "normalized" and torch.equal(raw.images, images)
    out = tmp_path / "run"
    assert main(["import-synthetic", str(path), "--out", str(out), *_sets(toy_npz)]) == 0
    assert torch.equal(load_synthetic(out / "synthetic.pt").images, images)
    bare = tmp_path / "bare.npz"
    np.savez(bare, images=images.numpy(), labels=labels.numpy())  # written elsewhere: no space
    assert main(["import-synthetic", str(bare), "--out", str(tmp_path / "other"), *_sets(toy_npz)]) == 2
    assert "give --space pixel, normalized or zca" in capsys.readouterr().err

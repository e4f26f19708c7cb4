"""A missing or replaced chunk is damage: verify names it (exit 2) and a student refuses the store with the same
message, for every kind of array the store holds."""

from __future__ import annotations

import re
import shutil

import pytest
from helpers import TINY_RUN, staged_run

from elfdd.core.errors import BadInput
from elfdd.store.reader import FeatureDataset

ARRAYS = {
    "features": "teachers/teacher/epoch_0002/block3",
    "logits": "teachers/teacher/epoch_0002/logits",
    "view params": "teachers/teacher/views/params",
    "images": "synthetic/images",
    "labels": "synthetic/labels",
}


@pytest.fixture(scope="module")
def store(toy_npz, tmp_path_factory):
    run, _ = staged_run(toy_npz, tmp_path_factory.mktemp("chunks") / "run", [*TINY_RUN, "extract.views=2"])
    return run.dir.store


def _copy(store, tmp_path):
    copy = tmp_path / "store.zarr"
    shutil.copytree(store, copy)
    return copy


def _verify(path, capsys) -> tuple[int, str, str]:
    from elfdd.flows import cli

    code = cli.main(["verify", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_sound_store_verifies_and_records_every_chunk_hash(store, capsys):
    import zarr

    for array in ARRAYS.values():
        attrs = zarr.open_array(str(store / array), mode="r").attrs
        assert len(attrs["chunk_sha256"]) >= 1
    assert _verify(store, capsys)[0] == 0


@pytest.mark.parametrize("kind", sorted(ARRAYS))
def test_a_deleted_chunk_is_named_by_verify_and_refused_by_a_student(kind, store, tmp_path, capsys):
    copy = _copy(store, tmp_path)
    chunk = sorted((copy / ARRAYS[kind] / "c").rglob("*"))
    chunk = [p for p in chunk if p.is_file()][0]
    chunk.unlink()
    key = chunk.relative_to(copy / ARRAYS[kind]).as_posix()  # c/0/0/...: the chunk's grid coordinates
    coords = tuple(int(part) for part in key.split("/")[1:])
    problem = f"{ARRAYS[kind]}: chunk {coords} is missing (file {ARRAYS[kind]}/{key})"
    code, out, err = _verify(copy, capsys)
    assert code == 2 and f"damaged: {problem}" in out.splitlines()
    assert problem in err and len(err.strip().splitlines()) == 1
    with pytest.raises(BadInput) as refused:
        FeatureDataset(copy, "teacher", 2, "block3")
    assert str(refused.value).startswith(f"store {copy}: {problem}; run elfdd verify {copy}")


def test_a_chunk_replaced_by_another_valid_one_is_named(store, tmp_path, capsys):
    copy = _copy(store, tmp_path)
    ours = copy / ARRAYS["features"] / "c" / "0" / "0" / "0" / "0" / "0"
    other = copy / "teachers" / "teacher" / "epoch_0000" / "block3" / "c" / "0" / "0" / "0" / "0" / "0"
    shutil.copy2(other, ours)  # its checksum is right: only the recorded content hash tells
    code, out, _ = _verify(copy, capsys)
    assert code == 2
    problem = f"{ARRAYS['features']}: chunk (0, 0, 0, 0, 0) differs from the content recorded"
    assert f"damaged: {problem}" in out
    with pytest.raises(
        BadInput, match=rf"store {copy}: {re.escape(problem)}"
    ):  # a student does not train on it
        FeatureDataset(copy, "teacher", 2, "block3")

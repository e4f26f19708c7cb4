"""DC / DSA / DM (the DatasetCondensation repository's main.py and main_DM.py): ``res_<method>_<dataset>_<model>_
<ipc>ipc.pt``, a dict ``{"data": [[image_syn, label_syn], ...one per experiment], "accs_all_exps": {model: [acc]}}``
with images normalised by the dataset's mean/std (the layout of both scripts since their first release; the
accuracies are numpy floats). ``distill.source.experiment`` picks the experiment (default 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.errors import BadInput
from .registry import Format, RawSet, load_tensors, register_format, tensor_of


def read(paths: list[Path], options: dict[str, Any]) -> RawSet:
    if len(paths) != 1:
        raise BadInput(f"a DC result file is one file, got {len(paths)}")
    saved = load_tensors(paths[0], "DC result file")
    if not isinstance(saved, dict) or not isinstance(saved.get("data"), list) or not saved["data"]:
        raise BadInput(f"{paths[0]} is not a DC result file (no 'data' list of [images, labels])")
    experiment = int(options.get("experiment", 0))
    if not 0 <= experiment < len(saved["data"]):
        raise BadInput(
            f"{paths[0]} holds {len(saved['data'])} experiments; distill.source.experiment {experiment} is not one"
        )
    pair = saved["data"][experiment]
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise BadInput(f"{paths[0]}: experiment {experiment} is not an [images, labels] pair")
    images, labels = (
        tensor_of(t, f"{paths[0].name} {n}") for t, n in zip(pair, ("images", "labels"), strict=True)
    )
    accs = {k: [float(a) for a in v] for k, v in (saved.get("accs_all_exps") or {}).items()}
    return RawSet(images, labels, "normalized", paths, {"experiment": experiment, "reported_accuracy": accs})


def claims(path: Path) -> bool:
    return path.suffix == ".pt" and path.name.startswith("res_")


register_format("dc", Format(read, claims))

"""Full-data references (``students.full_data``): each student architecture trained once on the whole training set,
its final test accuracy being DD-Ranking's full-data accuracy (the HLR and LRS of report/scores.py).

One reference is a teacher trained with the teachers' loop (train.py) and kept in
``<full_data.dir>/<arch>-<key>/`` (manifest and last checkpoint), the key covering the data, the architecture, the
recipe, the seed and the runtime, so runs sharing a folder train each architecture once; a killed training resumes
after its last finished epoch."""

from __future__ import annotations

from pathlib import Path

from ...core.errors import BadInput
from ..config import TeacherConfig
from ..resume import ResumePoint
from ..run import Run, stage_key
from ..training import log
from .train import load_manifest, train_teacher


def full_data_dir(run: Run) -> Path:
    full_data = run.config.students.full_data
    return Path(full_data.dir) if full_data is not None and full_data.dir else run.dir.full_data


def _recipe(run: Run, arch: str) -> TeacherConfig:
    full_data = run.config.students.full_data
    assert full_data is not None
    return TeacherConfig(
        id=f"full_data_{arch}",
        arch=arch,
        arch_kwargs=run.config.students.arch_kwargs.get(arch, {}),
        epochs=full_data.epochs,
        checkpoint_epochs=[full_data.epochs],
        lr=full_data.lr,
        batch_size=full_data.batch_size,
        dsa=full_data.dsa,
    )


def reference_dir(run: Run, arch: str) -> tuple[Path, str]:
    """Where ``arch``'s reference is kept, and its key."""
    recipe = _recipe(run, arch).model_dump(mode="json")
    parts = [run.config.data, run.data_sha256, recipe, run.config.seed, run.precision, run.device.type]
    key = stage_key("full_data", *parts)
    return full_data_dir(run) / f"{arch}-{key[:12]}", key


def _accuracy(folder: Path) -> float | None:
    """The kept reference's final test accuracy; None when there is none (or its training did not finish)."""
    if not (folder / "manifest.json").exists():
        return None
    try:
        return float(load_manifest(folder)["checkpoints"][-1]["test_acc"])
    except BadInput:
        return None


def stage_full_data(run: Run) -> dict[str, float]:
    """Each student architecture's full-data test accuracy, trained where no reference with its key is kept."""
    return _references(run, train=True)


def full_data_accuracies(run: Run) -> dict[str, float]:
    """The kept references of the run's students (nothing trained); empty without ``students.full_data``."""
    return {} if run.config.students.full_data is None else _references(run, train=False)


def _references(run: Run, train: bool) -> dict[str, float]:
    run = run.configured()
    accuracies = {}
    for arch in dict.fromkeys(run.config.students.archs):
        folder, key = reference_dir(run, arch)
        accuracy = _accuracy(folder)
        if accuracy is None and not train:
            raise BadInput(
                f"full-data reference of {arch} is missing ({folder}); run the students stage first"
            )
        if accuracy is None:
            log.info("full data: training %s on all %d training images", arch, len(run.data.y_train))
            resume = ResumePoint(folder / "resume.pt", key)
            recipe = _recipe(run, arch)
            manifest = train_teacher(
                run.data, recipe, folder, run.device, run.precision, run.config.seed, resume
            )
            accuracy = float(manifest["checkpoints"][-1]["test_acc"])
            log.info("full data: %s %.4f (%s)", arch, accuracy, folder)
        accuracies[arch] = accuracy
    return accuracies

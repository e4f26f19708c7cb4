"""One student cell as a stage: what it reads (the store, opened and checked against the run once per stage call;
the students config; its row of the pairing table), its cache key, and its training."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ...core.errors import BadInput, StudentDiverged
from ...core.io import atomic_write_json
from ...store import location
from ...store.reader import FeatureDataset, FeatureStore
from ..config import RunConfig, StudentsConfig
from ..extract import teacher_source
from ..run import Run, build_stage, cell_finished, cell_record, stage_key
from ..synthetic import SyntheticSet, load_synthetic
from ..teachers import load_manifest, teacher_at
from ..training import log
from .grid import Cell, feature_cell
from .pairing import StudentPlan, student_plan
from .train import StudentContext, train_cell


@dataclass(frozen=True)
class CellStage:
    """One cell (the Stage protocol): ``students/<cell>.json``, whose record carries the cell's cache key (store
    provenance + the cell's training settings) in place of a stage marker."""

    cell: Cell
    dataset: FeatureDataset
    students: StudentsConfig  # CellInputs.students: read once for the key and the training
    plan: StudentPlan  # the cell's architecture in the pairing table

    @property
    def name(self) -> str:
        return self.cell.name

    def key(self, run: Run) -> str:
        return cell_key(self.cell, self.students, self.plan, self.dataset, run)

    def output(self, run: Run) -> Path:
        return run.dir.record_of(self.cell.name)

    def kept(self, run: Run, key: str) -> bool:
        record = cell_record(self.output(run), key)
        if record is None:
            return False
        log.info("student %s: finished run with the same key, kept (%s)", self.name, self.output(run).name)
        diverged = record.get("diverged")
        if diverged and run.config.students.on_diverge == "fail":
            raise StudentDiverged(self.name, diverged["term"], diverged["epoch"], diverged["value"])
        return True

    def build(self, run: Run, key: str) -> None:
        ctx = student_context(run, self.students)
        record = train_cell(self.cell, self.dataset, ctx, online_teacher(run, self.cell), self.plan)
        atomic_write_json(self.output(run), {**record, "cache_key": key})

    def finish(self, run: Run, key: str, started: float) -> None:
        """Nothing: the record written by ``build`` is the cell's marker."""

    def damage(self, run: Run) -> str | None:
        """Nothing to check beyond ``kept``: it read the record and matched its key."""
        return None

    def bytes_written(self, run: Run) -> int | None:
        return None  # one record of a few kB


def cell_key(
    cell: Cell, students: StudentsConfig, plan: StudentPlan, dataset: FeatureDataset, run: Run
) -> str:
    """sha256 (core.keyed, KEY_SCHEMA) of what one cell depends on: the cell, its training settings (cell_training),
    the data, the precision and the store's provenance (for a baseline only the synthetic set: it never reads a
    feature)."""
    provenance = dataset.provenance
    if not cell.uses_features:
        provenance = {k: provenance[k] for k in ("synthetic_sha256", "normalization")}
    training = cell_training(cell, students, plan)
    return stage_key("cell", asdict(cell), training, run.config.data, run.precision, provenance)


def cell_training(cell: Cell, students: StudentsConfig, plan: StudentPlan) -> dict[str, Any]:
    """The settings one cell trains with, resolved for it: every cell's (epochs, its architecture's lr and keyword
    arguments, the optimiser, batch, DSA, clipping) and, for a cell that reads teacher features, every feature
    setting (temperature, rear path, batch-norm statistics, views, and its lambda_front factor)."""
    training = students.model_dump(
        mode="json", include={"epochs", "momentum", "weight_decay", "batch_size", "dsa", "grad_clip"}
    )
    training.update(lr=students.lr_for(cell.student), arch_kwargs=students.arch_kwargs.get(cell.student, {}))
    if cell.uses_features:
        features = {"feature_temperature", "rear_path", "rear_bn_stats", "max_views"}
        training.update(students.model_dump(mode="json", include=features))
        training["front_scale"] = plan.front_scale(cell.split, students)
    if cell.uses_logits:
        training.update(students.model_dump(mode="json", include={"logit_temperature", "lambda_logit"}))
    compiled = students.compile_for(cell.student)
    if compiled is not None:  # only then: an eager cell's key is the one it always had
        training["compile"] = compiled
    return training


class CellInputs:
    """What the cells of one stage call read, each once: the synthetic set (for its digest and MTT's learned lr), the
    students config and one store reader per (teacher, epoch, layer), checked against the run; each cell's row of
    the pairing table."""

    def __init__(self, run: Run, cells: list[Cell]):
        self.run = run
        self.synthetic = load_synthetic(run.dir.synthetic) if run.dir.synthetic.exists() else None
        self.students = students_config(run.config, self.synthetic)
        wheres: dict[
            tuple[str, int, str], bool
        ] = {}  # (teacher, epoch, layer) -> whether a cell reads its logits
        for cell in cells:
            where = feature_cell(run.config, cell)
            wheres[where] = wheres.get(where, False) or cell.uses_logits
        self.datasets = {
            where: open_student_dataset(run, *where, synthetic=self.synthetic, with_logits=logits)
            for where, logits in wheres.items()
        }

    def stage(self, cell: Cell) -> CellStage:
        return CellStage(
            cell,
            self.datasets[feature_cell(self.run.config, cell)],
            self.students,
            student_plan(self.run.config, cell.student),
        )

    def context(self, run: Run) -> StudentContext:
        return student_context(run, self.students)


def stage_cell(run: Run, cell: Cell, force: bool = False) -> Path:
    """Train one cell (CellStage) and write ``students/<cell>.json`` atomically; a finished cell with the same cache
    key is kept, not retrained, unless ``force``."""
    run = run.configured()
    return build_stage(CellInputs(run, [cell]).stage(cell), run, force)


def pending_cells(run: Run, cells: list[Cell]) -> list[Cell]:
    """The cells of ``cells`` without a finished record of the same cache key (what is left to train)."""
    run = run.configured()
    inputs = CellInputs(run, cells)
    return [
        cell for cell in cells if not cell_finished(run.dir.record_of(cell.name), inputs.stage(cell).key(run))
    ]


def student_context(run: Run, students: StudentsConfig) -> StudentContext:
    """What the run's cells train and are tested with (its test split, device and precision)."""
    data = run.data
    return StudentContext(data.x_test, data.y_test, students, data.num_classes, run.device, run.precision)


def online_teacher(run: Run, cell: Cell):
    """The teacher checkpoint a cell of view policy online runs on every batch (None for the other policies)."""
    if cell.view_policy != "online":
        return None
    teacher_id, epoch, _ = feature_cell(run.config, cell)
    source = teacher_source(run, teacher_id)
    data = run.data
    return teacher_at(
        source.config, source.folder, source.manifest, epoch, data.image_shape, data.num_classes, run.device
    )[0]


def students_config(config: RunConfig, synthetic: SyntheticSet | None) -> StudentsConfig:
    """The students' config, with the lr MTT learned when ``students.lr_from_synthetic`` asks for it."""
    if not config.students.lr_from_synthetic:
        return config.students
    syn_lr = synthetic.extra.get("syn_lr") if synthetic is not None else None
    if syn_lr is None:
        raise BadInput(
            "students.lr_from_synthetic needs a synthetic set distilled with MTT (it saves a learned lr)"
        )
    return config.students.model_copy(update={"lr": float(syn_lr)})


def student_store(run: Run) -> str | Path:
    """The store the students read: ``students.store`` (a path or any fsspec URL), else the run's own."""
    store = run.config.students.store
    return location.normalize(store) if store else run.dir.store


def open_student_dataset(
    run: Run,
    teacher_id: str | None = None,
    epoch: int | None = None,
    layer: str | None = None,
    synthetic: SyntheticSet | None = None,
    with_logits: bool = False,
) -> FeatureDataset:
    """The store the students read (``teacher_id`` at ``epoch`` and ``layer``, default: the primary teacher's
    reference ones), checked once that it fits the run (:func:`check_store_fits`; ``synthetic``: the run's set,
    when the caller has it loaded)."""
    config = run.config
    dataset = FeatureDataset(
        student_store(run),
        teacher_id or config.primary_teacher.id,
        config.student_teacher_epoch if epoch is None else epoch,
        layer or config.student_layer,
        cache_bytes=config.students.cache_mb << 20,
        with_logits=with_logits,
    )
    if synthetic is None and run.dir.synthetic.exists():
        synthetic = load_synthetic(run.dir.synthetic)
    check_store_fits(run, dataset, synthetic)
    return dataset


def check_store_fits(run: Run, dataset: FeatureDataset, synthetic: SyntheticSet | None) -> None:
    """Refuse (bad input, one line) a store the run's students cannot learn from: another dataset, another input
    space (ZCA), other image shapes than the test data, another synthetic set or other teacher checkpoints than the
    run's own (the last two where the run has them: a shared store may serve a run without its own teachers). The
    store's own integrity (layout, complete markers, checksums) is the reader's and verify's."""
    store = FeatureStore(dataset.path)
    meta, config = store.meta, run.config
    if meta["dataset"] != config.data.name:
        raise BadInput(
            f"store {dataset.path} holds features of dataset {meta['dataset']!r}, the config asks for {config.data.name!r}"
        )
    data = run.data
    stored_zca = meta["normalization"].get("zca_sha256")
    run_zca = data.normalization().get("zca_sha256")
    if stored_zca != run_zca:
        raise BadInput(
            f"store {dataset.path} was computed in another input space (ZCA {stored_zca or 'off'}) than this run's "
            f"data (ZCA {run_zca or 'off'})"
        )
    stored_shape, test_shape = tuple(meta["image_shape"]), tuple(data.x_test.shape[1:])
    if stored_shape != test_shape:
        raise BadInput(f"store images have shape {stored_shape}, the test data {test_shape}")
    if synthetic is not None and meta["synthetic_sha256"] != synthetic.sha256:
        raise BadInput(
            f"store {dataset.path} was built from synthetic set {meta['synthetic_sha256'][:12]}, this run has "
            f"{synthetic.sha256[:12]}"
        )
    teacher_dir = run.dir.teacher_dir(dataset.teacher_id)
    if (teacher_dir / "manifest.json").exists():
        checkpoints = load_manifest(teacher_dir)["checkpoints"]
        recorded = next((c["sha256"] for c in checkpoints if c["epoch"] == dataset.epoch), None)
        if recorded is not None and store.checkpoint_sha256(dataset.teacher_id, dataset.epoch) != recorded:
            raise BadInput(
                f"store {dataset.path}: features of teacher {dataset.teacher_id} epoch {dataset.epoch} come from "
                "another checkpoint than this run's"
            )

"""Whether a feature store fits a run: the one place that checks it (dataset, input space, image shape, synthetic
set, checkpoint). The store's own integrity (layout, complete markers, checksums) is the reader's and verify's."""

from __future__ import annotations

from ...core.errors import BadInput
from ...store.reader import FeatureDataset, FeatureStore
from ..config import RunConfig
from ..synthetic import load_synthetic
from ..teacher import load_manifest
from .run import RunDir, data_for


def check_store_fits(run: RunDir, config: RunConfig, dataset: FeatureDataset) -> None:
    """Refuse (bad input, one line) a store the run's students cannot learn from: another dataset, another input
    space (ZCA), other image shapes than the test data, another synthetic set or other teacher checkpoints than the
    run's own (the last two where the run has them: a shared store may serve a run without its own teachers)."""
    store = FeatureStore(dataset.path)
    meta = store.meta
    if meta["dataset"] != config.data.name:
        raise BadInput(
            f"store {dataset.path} holds features of dataset {meta['dataset']!r}, the config asks for {config.data.name!r}"
        )
    data = data_for(config)
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
    if run.synthetic.exists():
        synthetic_sha = load_synthetic(run.synthetic).sha256
        if meta["synthetic_sha256"] != synthetic_sha:
            raise BadInput(
                f"store {dataset.path} was built from synthetic set {meta['synthetic_sha256'][:12]}, this run has "
                f"{synthetic_sha[:12]}"
            )
    teacher_dir = run.teacher_dir(dataset.teacher_id)
    if (teacher_dir / "manifest.json").exists():
        checkpoints = load_manifest(teacher_dir)["checkpoints"]
        recorded = next((c["sha256"] for c in checkpoints if c["epoch"] == dataset.epoch), None)
        if recorded is not None and store.checkpoint_sha256(dataset.teacher_id, dataset.epoch) != recorded:
            raise BadInput(
                f"store {dataset.path}: features of teacher {dataset.teacher_id} epoch {dataset.epoch} come from "
                "another checkpoint than this run's"
            )

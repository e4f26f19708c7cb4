"""The distill stage: the run's synthetic set, kept while its inputs are unchanged, resumable."""

from __future__ import annotations

import math
from pathlib import Path

from ..formats import files_sha256
from ..run import KeyedStage, Run, build_stage, save_zca, stage_key
from ..synthetic import synthetic_problems
from . import distill


class Distill(KeyedStage):
    """The synthetic set: kept while data, distill config, seed and runtime are unchanged."""

    name = "distill"

    def key(self, run: Run) -> str:
        config = run.config
        # The whole section but resume_every (when the state is saved, never what is made); an imported set's
        # files by content.
        section = config.distill.model_dump(mode="json", exclude={"resume_every"})
        imported = files_sha256(config.distill.source.paths) if config.distill.method == "file" else None
        parts = [config.data, run.data_sha256, section, imported, config.seed, run.precision, run.device.type]
        return stage_key("distill", *parts)

    def output(self, run: Run) -> Path:
        return run.dir.synthetic

    def build(self, run: Run, key: str) -> None:
        config = run.config
        experts = run.dir.root / "experts" / config.distill.arch
        save_zca(run.dir, run.data)
        resume = run.resume_point(self.name, key)
        synthetic, _ = distill(
            run.data, config.distill, run.device, run.precision, config.seed, experts, resume
        )
        synthetic.save(run.dir.synthetic)

    def damage(self, run: Run) -> str | None:
        return next(iter(synthetic_problems(run.dir.synthetic)), None)

    def bytes_written(self, run: Run) -> int | None:
        images = run.config.distill.ipc * run.data.num_classes * math.prod(run.data.image_shape) * 4
        return 3 * images  # the set, and a resume point with its optimiser state


def stage_distill(run: Run, force: bool = False) -> Path:
    """Distil the synthetic set (Distill; unless ``force``, kept when its inputs are unchanged)."""
    return build_stage(Distill(), run, force)

"""Typed, validated run configuration (one pydantic model per stage), loaded from YAML plus ``--set`` overrides.

base      strict models, name and value types, checks against the model registry
sections  data, distill (MTT, MetaDD, an imported set), extract
teacher   one teacher: trained, or imported from a checkpoint or an MTT buffer
students  the student grid and how each cell trains
run       RunConfig: the sections, the teacher pool, the checks across sections, resolved defaults
load      YAML + overrides -> RunConfig (bad input names the key)
"""

from .base import Lambda, LossMode, Name, Strict, ViewPolicy
from .load import apply_overrides, dump_config, load_config, validate_config
from .run import RunConfig
from .sections import DataConfig, DistillConfig, ExtractConfig, MetaDDConfig, MTTConfig
from .students import StudentsConfig
from .teacher import TeacherConfig

__all__ = [
    "DataConfig",
    "DistillConfig",
    "ExtractConfig",
    "Lambda",
    "LossMode",
    "MTTConfig",
    "MetaDDConfig",
    "Name",
    "RunConfig",
    "Strict",
    "StudentsConfig",
    "TeacherConfig",
    "ViewPolicy",
    "apply_overrides",
    "dump_config",
    "load_config",
    "validate_config",
]

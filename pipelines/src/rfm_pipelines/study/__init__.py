"""The data-efficiency study (``rfm study efficiency``): presets, run plan, pooling of sources, report.

    >>> from rfm_pipelines.study import plan_runs, study_presets
    >>> runs = plan_runs(study_presets.create("quick"))
    >>> runs[0].label
    'full/s0'

The report writer (matplotlib, rfm-eval) is :mod:`rfm_pipelines.study.report`, imported on demand.
"""

from rfm_pipelines.study.join import JoinResult, join_datasets
from rfm_pipelines.study.plan import (
    ONLINE,
    Arm,
    RunSpec,
    StudyPreset,
    arms,
    pipeline_arguments,
    plan_runs,
    study_presets,
)

__all__ = ["ONLINE", "Arm", "JoinResult", "RunSpec", "StudyPreset", "arms", "join_datasets",
           "pipeline_arguments", "plan_runs", "study_presets"]

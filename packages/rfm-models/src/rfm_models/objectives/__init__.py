"""Objectives (registry ``objectives``): ``clip``, ``siglip``, ``unicl``, ``must``."""

from rfm_models.objectives import contrastive, must  # noqa: F401  (imported to register the objectives)
from rfm_models.objectives.base import Objective, create_objective, objectives
from rfm_models.objectives.contrastive import ClipObjective, SigLipObjective, UniClObjective
from rfm_models.objectives.must import MustObjective

__all__ = ["ClipObjective", "MustObjective", "Objective", "SigLipObjective", "UniClObjective", "create_objective",
           "objectives"]

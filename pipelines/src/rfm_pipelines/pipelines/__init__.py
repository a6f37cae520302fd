"""Pipelines composing the rfm components, built by registered factories.

    >>> from rfm_pipelines.pipelines import create_pipeline, pipelines
    >>> pipelines.names()
    ['curation', 'data']
    >>> pipeline = create_pipeline("data")  # a @dsl.pipeline: call it under kfp.local, or compile it

Factories take ``settings`` (:class:`rfm_pipelines.cluster.ClusterSettings`) and ``extra_steps`` (your own
components, each called with the pipeline's final dataset artifact).
"""

from __future__ import annotations

from typing import Any

from kfp.dsl.graph_component import GraphComponent

from rfm_pipelines.pipelines import curation, data, efficiency, end_to_end, training  # noqa: F401  (imported to register the pipelines)
from rfm_pipelines.pipelines.curation import curation_pipeline
from rfm_pipelines.pipelines.data import data_pipeline
from rfm_pipelines.pipelines.registry import pipelines


def create_pipeline(name: str, **overrides: Any) -> GraphComponent:
    """Build the pipeline registered as ``name``; ``KeyError`` listing the known ones otherwise."""
    return pipelines.create(name, **overrides)


__all__ = ["create_pipeline", "curation_pipeline", "data_pipeline", "pipelines"]

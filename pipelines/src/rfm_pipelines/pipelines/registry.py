"""The pipeline registry: name → factory ``(settings=..., extra_steps=...) -> pipeline``."""

from __future__ import annotations

from kfp.dsl.graph_component import GraphComponent

from rfm_data.registry import Registry

pipelines: Registry[GraphComponent] = Registry("pipeline")

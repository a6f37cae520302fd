"""Kubeflow components over the rfm libraries, and their registry.

Each component is a containerized Python component on the image of the package it calls, declared with
``install_kfp_package=False`` (kfp is in the image, and kfp.local runs it offline in this environment).

    >>> from rfm_pipelines.components import components
    >>> components.names()
    ['compare', 'curate', 'embed', 'evaluate', 'ingest', 'label', 'pretrain', 'trainjob']
"""

from __future__ import annotations

from kfp.dsl.python_component import PythonComponent

from rfm_data.registry import Registry
from rfm_pipelines.components.curation import curate
from rfm_pipelines.components.data import ingest, label
from rfm_pipelines.components.evaluation import compare, evaluate
from rfm_pipelines.components.models import embed, pretrain
from rfm_pipelines.components.trainjob import trainjob

components: Registry[PythonComponent] = Registry("component")


def _register(name: str, component: PythonComponent) -> None:
    components.register(name)(lambda: component)


for _name, _component in {"ingest": ingest, "label": label, "curate": curate, "embed": embed,
                          "pretrain": pretrain, "trainjob": trainjob, "evaluate": evaluate,
                          "compare": compare}.items():
    _register(_name, _component)


def get_component(name: str) -> PythonComponent:
    """The component registered as ``name``; ``KeyError`` listing the known ones otherwise."""
    return components.create(name)


__all__ = ["compare", "components", "curate", "embed", "evaluate", "get_component", "ingest", "label", "pretrain",
           "trainjob"]

"""Kubeflow components over the rfm libraries, and their registry.

Each component is a containerized Python component on the image of the package it calls, declared with
``install_kfp_package=False`` (kfp is in the image, and kfp.local runs it offline in this environment).

    >>> from rfm_pipelines.components import components
    >>> components.names()
    ['compare', 'curate', 'embed', 'evaluate', 'ingest', 'join_datasets', 'label', 'pretrain', 'study_report',
     'trainjob']
"""

from __future__ import annotations

from kfp.dsl.python_component import PythonComponent

from rfm_data.registry import Registry
from rfm_pipelines.components.curation import curate
from rfm_pipelines.components.data import ingest, label
from rfm_pipelines.components.evaluation import compare, evaluate
from rfm_pipelines.components.models import embed, pretrain
from rfm_pipelines.components.reportgen import reportgen_evaluate, reportgen_train
from rfm_pipelines.components.study import join_datasets, study_report
from rfm_pipelines.components.trainjob import trainjob

components: Registry[PythonComponent] = Registry("component")


def _register(name: str, component: PythonComponent) -> None:
    components.register(name)(lambda: component)


for _name, _component in {"ingest": ingest, "label": label, "curate": curate, "embed": embed,
                          "pretrain": pretrain, "trainjob": trainjob, "evaluate": evaluate,
                          "compare": compare, "join_datasets": join_datasets, "study_report": study_report,
                          "reportgen_train": reportgen_train, "reportgen_evaluate": reportgen_evaluate}.items():
    _register(_name, _component)


def get_component(name: str) -> PythonComponent:
    """The component registered as ``name``; ``KeyError`` listing the known ones otherwise."""
    return components.create(name)


__all__ = ["compare", "components", "curate", "embed", "evaluate", "get_component", "ingest", "join_datasets", "label",
           "pretrain", "reportgen_evaluate", "reportgen_train", "study_report", "trainjob"]

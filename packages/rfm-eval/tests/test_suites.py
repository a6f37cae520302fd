"""Registered suites: the data-efficiency study's protocol."""

import pytest

from rfm_data.errors import ConfigError
from rfm_eval.evaluate import EvalConfig, _plan
from rfm_eval.suites import suites
from rfm_eval.tasks import tasks


def test_study_suite_runs_the_issue_tasks_with_cpu_sized_segmentation() -> None:
    study = suites.create("study")
    assert list(study.tasks) == ["zeroshot", "retrieval", "linear_probe", "segmentation"]
    assert study.tasks["linear_probe"]["fractions"] == [0.01, 1.0]
    assert study.tasks["segmentation"]["image_size"] <= 64 and study.tasks["segmentation"]["epochs"] <= 5
    assert "study" in suites.names()


def test_study_suite_takes_segmentation_data_root_as_a_task_option() -> None:
    plan = _plan(EvalConfig(suite="study", task_options={"segmentation": {"data_root": "/data/covid"}}))
    assert plan["segmentation"] == {"image_size": 64, "epochs": 5, "data_root": "/data/covid"}
    with pytest.raises(ConfigError, match="needs data_root"):  # without it the task names what is missing
        tasks.create("segmentation", **suites.create("study").tasks["segmentation"])

"""The ``rfm`` CLI: listing, argument handling, compile, a local run, and submit up to the network call."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from rfm_pipelines.cli import main
from rfm_pipelines.pipelines import create_pipeline
from rfm_pipelines.runner import parse_arguments


def test_lists(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pipelines", "list"]) == 0
    assert capsys.readouterr().out.split() == ["curation", "data", "efficiency", "end-to-end", "evaluation",
                                               "pretraining", "report-generation"]
    assert main(["components", "list"]) == 0
    assert capsys.readouterr().out.split() == ["compare", "curate", "embed", "evaluate", "ingest", "join_datasets",
                                               "label", "pretrain", "reportgen_evaluate", "reportgen_train",
                                               "study_report", "trainjob"]


def test_unknown_pipeline_names_the_known_ones(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["compile", "pretrain", "-o", str(tmp_path / "x.yaml")]) == 2
    known = "curation, data, efficiency, end-to-end, evaluation, pretraining, report-generation"
    assert f"unknown pipeline 'pretrain'; known: {known}" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def test_set_values_are_typed_by_the_pipeline_signature() -> None:
    pipeline = create_pipeline("curation")
    args = parse_arguments(pipeline, ["budget=0.5", "seed=3", "source=gs://b/raw", "dedup="])
    assert args == {"budget": 0.5, "seed": 3, "source": "gs://b/raw", "dedup": ""}
    with pytest.raises(ValueError, match="not a valid integer"):
        parse_arguments(pipeline, ["seed=three"])
    with pytest.raises(ValueError, match="must look like KEY=VALUE"):
        parse_arguments(pipeline, ["seed"])


def test_unknown_parameter_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "data", "--local", "--set", "budget=0.5"]) == 2
    assert "unknown parameter 'budget' of rfm-data; known: adapter, label_backend, long_side" in capsys.readouterr().err


def test_compile_writes_the_pipeline_yaml(tmp_path: Path) -> None:
    out = tmp_path / "curation.yaml"
    assert main(["compile", "curation", "-o", str(out)]) == 0
    spec = next(yaml.safe_load_all(out.read_text()))
    assert spec["pipelineInfo"]["name"] == "rfm-curation"
    assert "model_url" in spec["root"]["inputDefinitions"]["parameters"]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")  # kfp.local's notes on k8s settings
def test_run_local_writes_under_the_pipeline_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "data", "--local", "--pipeline-root", str(tmp_path), "--set", "shard_size=32"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]  # kfp.local logs each task to stdout before it
    assert last.startswith("data: finished; output ") and str(tmp_path) in last
    assert len(list(tmp_path.glob("rfm-data-*/label/labelled/manifest.parquet"))) == 1


def test_submit_requires_a_host_and_checks_arguments_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["submit", "data"])
    assert "--host" in capsys.readouterr().err
    # A bad value fails before any connection: nothing listens on this host, and the error is ours.
    assert main(["submit", "data", "--host", "http://127.0.0.1:9", "--set", "shard_size=big"]) == 2
    assert "not a valid integer" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
def test_a_failed_step_is_named_and_earlier_outputs_stay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # label fails (unknown backend) after ingest succeeded: the message names it, ingest's shards remain.
    assert main(["run", "data", "--pipeline-root", str(tmp_path), "--set", "shard_size=32",
                 "--set", "label_backend=oracle"]) == 1
    err = capsys.readouterr().err
    assert "step 'label' failed" in err and str(tmp_path) in err
    assert len(list(tmp_path.glob("rfm-data-*/ingest/dataset/manifest.parquet"))) == 1


def test_local_steps_get_their_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfm_pipelines.runner import LOCAL_PARALLEL_TASKS, THREAD_VARIABLES, step_threads

    for v in THREAD_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    with step_threads() as threads:
        assert threads == max(1, len(os.sched_getaffinity(0)) // LOCAL_PARALLEL_TASKS)
        assert all(os.environ[v] == str(threads) for v in THREAD_VARIABLES)
    assert not any(v in os.environ for v in THREAD_VARIABLES)  # restored after the run
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own setting wins
    with step_threads() as threads:
        assert threads == 3 and "MKL_NUM_THREADS" not in os.environ

"""Components' python_func on tmp_path artifacts: the code that runs in the container, without KFP around it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kfp.dsl import Dataset, Markdown, Metrics

from rfm_pipelines.components import components, curate, get_component, ingest, label


def test_ingest_writes_a_dataset_and_logs_its_counts(tmp_path: Path) -> None:
    dataset, summary = Dataset(uri=str(tmp_path / "ds")), Metrics(uri=str(tmp_path / "summary"))
    ingest.python_func(source="sample", dataset=dataset, summary=summary, shard_size=32, workers=1)
    assert summary.metadata["total"] == 65 and summary.metadata["accepted"] == 63
    assert summary.metadata["quarantined"] == 2
    assert dataset.metadata["shards"] == len(list((tmp_path / "ds" / "shards").iterdir())) == 2
    assert pq.read_metadata(tmp_path / "ds" / "manifest.parquet").num_rows == 65


def test_label_leaves_its_input_untouched(sample_dataset: Path, tmp_path: Path) -> None:
    manifest = sample_dataset / "manifest.parquet"
    before = (manifest.read_bytes(), os.stat(manifest).st_ino)
    labelled, prevalence = Dataset(uri=str(tmp_path / "labelled")), Metrics(uri=str(tmp_path / "prevalence"))
    label.python_func(dataset=Dataset(uri=str(sample_dataset)), labelled=labelled, prevalence=prevalence)
    assert (manifest.read_bytes(), os.stat(manifest).st_ino) == before  # the upstream artifact is immutable
    assert "report_labels" not in pq.read_schema(manifest).names
    assert "report_labels" in pq.read_schema(tmp_path / "labelled" / "manifest.parquet").names
    shard = next((tmp_path / "labelled" / "shards").iterdir())
    assert shard.stat().st_ino == (sample_dataset / "shards" / shard.name).stat().st_ino  # linked, not copied
    assert prevalence.metadata["status_ok"] > 0 and labelled.metadata["backend"] == "rule"


def test_curate_keeps_a_budgeted_subset_and_renders_its_report(
    sample_dataset: Path, sample_embeddings: Path, tmp_path: Path
) -> None:
    curated, report = Dataset(uri=str(tmp_path / "curated")), Markdown(uri=str(tmp_path / "report.md"))
    summary = Metrics(uri=str(tmp_path / "summary"))
    curate.python_func(dataset=Dataset(uri=str(sample_dataset)), embeddings=Dataset(uri=str(sample_embeddings)),
                       curated=curated, report=report, summary=summary, strategy="hkmeans", budget=20.0,
                       dedup="exact")
    selection = pq.read_table(tmp_path / "curated" / "selection.parquet").to_pydict()
    assert summary.metadata["budget"] == 20  # a budget above 1 is a count
    assert sum(selection["kept"]) == summary.metadata["kept"] <= 20
    assert summary.metadata["dropped_quarantined"] == 2
    assert report.path.endswith("report.md") and Path(report.path).read_text().startswith("#")
    assert json.loads((tmp_path / "curated" / "curation.json").read_text())["kept"] == summary.metadata["kept"]


def test_registry_lists_every_component_and_names_the_known_ones() -> None:
    names = ["compare", "curate", "embed", "evaluate", "ingest", "join_datasets", "label", "pretrain",
             "reportgen_evaluate", "reportgen_train", "study_report", "trainjob"]
    assert components.names() == names
    assert get_component("label") is label
    with pytest.raises(KeyError, match="known: " + ", ".join(names)):
        get_component("segment")


def test_components_run_on_the_package_images_without_installing_anything() -> None:
    for name, package in {"ingest": "rfm-data", "label": "rfm-data", "curate": "rfm-curation", "embed": "rfm-models",
                          "pretrain": "rfm-models", "evaluate": "rfm-eval", "compare": "rfm-eval",
                          "trainjob": "rfm-pipelines", "reportgen_train": "rfm-reportgen",
                          "reportgen_evaluate": "rfm-reportgen"}.items():
        container = get_component(name).component_spec.implementation.container
        assert container.image == f"ghcr.io/rfm-project/{package}:0.1.0"
        command = " ".join(container.command)
        assert "pip install" not in command  # install_kfp_package=False and no packages_to_install


def test_evaluate_scores_extra_splits_beside_the_primary_with_task_options(
    sample_model: Path, sample_dataset: Path, tmp_path: Path
) -> None:
    from kfp.dsl import Artifact, Model

    from rfm_pipelines.components.evaluation import evaluate

    results, summary = Artifact(uri=str(tmp_path / "results")), Metrics(uri=str(tmp_path / "summary"))
    evaluate.python_func(model=Model(uri=str(sample_model)), dataset=Dataset(uri=str(sample_dataset)),
                         results=results, summary=summary, name="tiny", suite="probe", split="val",
                         benchmark="sample", n_boot=10, device="cpu", extra_splits=["test", "val"],
                         task_options={"linear_probe": {"fractions": [1.0]}, "knn": {"k": 3}})
    root = tmp_path / "results"
    primary = json.loads((root / "results.json").read_text())
    extra = json.loads((root / "splits" / "test" / "results.json").read_text())
    assert primary["split"] == "val" and extra["split"] == "test"
    assert not (root / "splits" / "val").exists()  # the primary split is not evaluated twice
    for data in (primary, extra):  # the overrides reach every split
        assert {m for m in data["tasks"]["linear_probe"]["headline"] if "[" not in m} == {"auroc_macro@100%"}
        assert data["plan"]["knn"]["k"] == 3
    assert (root / "splits" / "test" / "run_name.txt").read_text() == "tiny"
    assert not (root / "splits" / "test" / "features").exists()  # one shared cache: train extracted once
    assert results.metadata == {"name": "tiny", "split": "val"}
    assert any(k.startswith("test/linear_probe.") for k in summary.metadata)

"""Whole pipelines under kfp.local (SubprocessRunner, this environment, offline) on the bundled sample."""

# No `from __future__ import annotations`: kfp reads the component annotations below as real types.
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kfp import dsl, local
from kfp.dsl import Dataset, Input, Metrics, Output

from rfm_pipelines.components import ingest, label
from rfm_pipelines.images import image
from rfm_pipelines.pipelines import create_pipeline

# Expected under kfp.local: resources are cluster-only, and our images' Python *is* this environment here.
pytestmark = [pytest.mark.filterwarnings("ignore:.*no effect in the current local runner:UserWarning"),
              pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")]


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=True)
    return tmp_path


def test_data_pipeline_ingests_and_labels_the_sample(local_root: Path) -> None:
    labelled = create_pipeline("data")(shard_size=32).output
    manifest = pq.read_table(Path(labelled.path) / "manifest.parquet")
    assert manifest.num_rows == 65
    assert manifest["status"].to_pylist().count("accepted") == 63
    assert "report_labels" in manifest.column_names
    assert Path(labelled.path).is_relative_to(local_root)


def test_curation_pipeline_embeds_then_selects_a_budgeted_subset(local_root: Path, sample_model: Path) -> None:
    curated = create_pipeline("curation")(model_url=str(sample_model), shard_size=32, budget=0.5,
                                          dedup="exact,semantic", seed=1).output
    config = json.loads((Path(curated.path) / "curation.json").read_text())
    assert config["budget"] == 32  # half of the 63 accepted, rounded
    assert 0 < config["kept"] <= 32
    selection = pq.read_table(Path(curated.path) / "selection.parquet")
    assert selection.num_rows == 65 and sum(selection["kept"].to_pylist()) == config["kept"]


# --- a user's own component, plugged into our pipeline and into their own (as docs/pipelines.md shows) ---

@dsl.component(base_image=image("rfm-data"), install_kfp_package=False)
def count_labelled(dataset: Input[Dataset], counts: Output[Metrics]) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(f"{dataset.path}/manifest.parquet", columns=["report_labels_status"])
    counts.log_metric("labelled", table["report_labels_status"].to_pylist().count("ok"))


def test_a_custom_component_runs_as_an_extra_step_of_our_pipeline(local_root: Path) -> None:
    pipeline = create_pipeline("data", extra_steps=[lambda labelled: count_labelled(dataset=labelled)])
    pipeline(shard_size=32)
    metrics = list(local_root.glob("rfm-data-*/count-labelled/executor_output.json"))
    assert len(metrics) == 1
    assert json.loads(metrics[0].read_text())["artifacts"]["counts"]["artifacts"][0]["metadata"]["labelled"] == 9


def test_our_components_compose_in_a_users_own_pipeline(local_root: Path) -> None:
    @dsl.pipeline(name="my-data")
    def my_data(source: str = "sample") -> Metrics:
        ingested = ingest(source=source, shard_size=32)
        labelled = label(dataset=ingested.outputs["dataset"], backend="keyword")
        return count_labelled(dataset=labelled.outputs["labelled"]).outputs["counts"]  # type: ignore[no-any-return]

    counts = my_data().output
    assert counts.metadata["labelled"] > 0


@pytest.mark.slow
def test_report_generation_pipeline_trains_and_scores_against_retrieval(local_root: Path) -> None:
    # The sample's reports: 7 in train, 2 in val (none in test), so the tiny run scores the val split.
    report = create_pipeline("report-generation")(
        shard_size=32, preset="test_clip_cxr", train_overrides=["data.batch_size=8"], clip_steps=3,
        decoder_steps=3, generator_steps=3, generator_batch_size=4, eval_split="val", n_boot=20).output
    text = Path(report.path).read_text()
    scores = json.loads(next(local_root.glob("rfm-report-generation-*/reportgen-evaluate/scores/scores.json"))
                        .read_text())
    assert "retrieval" in text and "generator" in text
    assert {r["system"] for r in scores["results"]} == {"retrieval", "generator"}


_TINY_TRAINING = {"preset": "test_clip_cxr", "train_overrides": ["data.batch_size=8"]}


def test_pretraining_then_evaluation_pipelines(local_root: Path) -> None:
    model = create_pipeline("pretraining")(shard_size=32, train_steps=2, **_TINY_TRAINING).output
    assert json.loads((Path(model.path) / "config.json").read_text())["model"]["image_encoder"] == "test_vit"
    results = create_pipeline("evaluation")(model_url=model.path, shard_size=32, n_boot=20).output
    payload = json.loads((Path(results.path) / "results.json").read_text())
    assert payload["split"] == "test" and payload["tasks"]["linear_probe"]["status"] == "ok"


@pytest.mark.slow
def test_end_to_end_pipeline_compares_curated_random_and_full(local_root: Path) -> None:
    report = create_pipeline("end-to-end")(shard_size=32, warmup_steps=2, train_steps=2, n_boot=20,
                                           **_TINY_TRAINING).output
    text = Path(report.path).read_text()
    assert "| task | metric | full | curated | random |" in text  # the reference (full) first
    assert "retrieval: skipped" in text  # the sample's test split has no reports
    selections = sorted(local_root.glob("rfm-end-to-end-*/for-loop-1-iteration-*/curate/curated/curation.json"))
    kept = sorted(json.loads(p.read_text())["kept"] for p in selections)
    assert kept == [10, 10, 41]  # 25 % of the 41 train images twice (curated, random), then all of them

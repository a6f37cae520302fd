"""``rfm study efficiency``: the plan, pooling sources, the compiled DAG, and the sample study run for real."""

# No `from __future__ import annotations`: kfp reads annotations in this module's imports as real types.
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from kfp import compiler

from rfm_data.errors import ConfigError
from rfm_data.loader import ShardDataset
from rfm_pipelines.cli import main
from rfm_pipelines.pipelines import create_pipeline
from rfm_pipelines.study import ONLINE, join_datasets, plan_runs, study_presets
from rfm_pipelines.study.run import parse_study_values

pytestmark = [pytest.mark.filterwarnings("ignore:.*no effect in the current local runner:UserWarning"),
              pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")]


def test_quick_plan_is_every_arm_at_every_seed_with_equal_steps() -> None:
    study = study_presets.create("quick")
    runs = plan_runs(study)
    arms = list(dict.fromkeys(r.arm for r in runs))
    assert arms == ["full", "random@25%", "hkmeans@25%", "chexficient@25%", "label_balance@25%",
                    f"{ONLINE}@25%", "random@10%", "full@30%-steps"]
    assert len(runs) == len(arms) * len(study.seeds) and {r.seed for r in runs} == set(study.seeds)
    # Equal steps x equal batch = equal compute, except the compute arm (the full set for 30 % of the steps).
    assert {r.steps for r in runs if r.kind != "compute"} == {study.train_steps}
    assert len({r.label for r in runs}) == len(runs)
    online = [r for r in runs if r.arm.startswith(ONLINE)]
    assert all(r.preset == study.online_preset and r.budget == 1.0 and "selector.params.ratio=0.25" in r.overrides
               for r in online)
    assert all(r.preset == study.preset and r.strategy == "hkmeans" and r.budget == 0.25 and r.dedup == "exact"
               for r in runs if r.arm == "hkmeans@25%")


def test_compute_arms_train_a_fraction_of_the_steps() -> None:
    study = study_presets.create("quick").with_values({"compute_fractions": [0.3], "train_steps": 40})
    compute = [r for r in plan_runs(study) if r.kind == "compute"]
    assert [r.arm for r in compute] == ["full@30%-steps"] * 2 and {r.steps for r in compute} == {12}


def test_bad_settings_name_the_field_and_the_fix() -> None:
    study = study_presets.create("quick")
    assert parse_study_values(study, ["train_steps=5", "seeds=[0,1,2]", "preset=demo_clip_cxr", "budget=1"]) == {
        "train_steps": 5, "seeds": [0, 1, 2], "preset": "demo_clip_cxr", "budget": 1.0}
    with pytest.raises(ConfigError, match=r"unknown study setting 'steps'; known: .*train_steps"):
        parse_study_values(study, ["steps=5"])
    with pytest.raises(ConfigError, match=r"seeds=.* must be a list"):
        parse_study_values(study, ["seeds=3"])
    with pytest.raises(ConfigError, match=r"budget=1.5 must be a fraction"):
        plan_runs(study.with_values({"budget": 1.5}))
    with pytest.raises(ConfigError, match="seeds is empty"):
        plan_runs(study.with_values({"seeds": []}))


def test_study_cli_rejects_a_missing_data_root(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["study", "efficiency", "--quick", "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "do not exist: give --data-root" in capsys.readouterr().err


def test_study_cli_needs_the_deid_key_before_running(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for source in ("covid_chestxray_ieee8023", "pediatric_pneumonia_kermany"):
        (tmp_path / source).mkdir()
    monkeypatch.delenv("RFM_DEID_KEY")
    assert main(["study", "efficiency", "--quick", "--data-root", str(tmp_path),
                 "--pipeline-root", str(tmp_path / "kfp")]) == 2
    assert "RFM_DEID_KEY is not set" in capsys.readouterr().err
    assert not (tmp_path / "kfp").exists()


def test_join_pools_datasets_and_keeps_their_sources(sample_dataset: Path, tmp_path: Path) -> None:
    result = join_datasets([str(sample_dataset)], str(tmp_path / "joined"), names=["sample"])
    assert result.samples == 63 and result.by_source == {"sample": 63}
    manifest = pq.read_table(tmp_path / "joined" / "manifest.parquet")
    assert manifest.num_rows == 65 and set(manifest["dataset"].to_pylist()) == {"sample"}
    train = ShardDataset(str(tmp_path / "joined"), split="train")
    assert len(train) == 41 and train[0]["image"] is not None  # pixels read through the renamed shards
    with pytest.raises(ConfigError, match="occur in more than one dataset"):
        join_datasets([str(sample_dataset), str(sample_dataset)], str(tmp_path / "twice"))


def _compile(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "efficiency.yaml"
    compiler.Compiler().compile(create_pipeline("efficiency"), str(path))
    spec: dict[str, Any] = next(yaml.safe_load_all(path.read_text()))
    return spec


def test_efficiency_dag(tmp_path: Path) -> None:
    spec = _compile(tmp_path)
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"for-loop-1", "join-datasets", "label", "pretrain", "embed", "for-loop-2",
                         "study-report"}
    assert root["join-datasets"]["inputs"]["artifacts"]["datasets"]["taskOutputArtifact"]["producerTask"] \
        == "for-loop-1"
    assert root["for-loop-2"]["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--runs"
    run = spec["components"]["comp-for-loop-2"]["dag"]["tasks"]
    assert set(run) == {"curate", "pretrain-2", "evaluate"}
    train = run["pretrain-2"]["inputs"]["parameters"]
    # Each run's own steps, FLOP budget, seed and preset come from its plan entry.
    for name, field in {"max_steps": "steps", "max_flops": "max_flops", "seed": "seed", "preset": "preset"}.items():
        assert train[name]["componentInputParameter"] == "pipelinechannel--runs-loop-item", name
        assert train[name]["parameterExpressionSelector"] == f'parseJson(string_value)["{field}"]'
    report = root["study-report"]["inputs"]
    assert {report["artifacts"][a]["taskOutputArtifact"]["producerTask"] for a in ("evaluations", "training_logs")} \
        == {"for-loop-2"}
    assert report["parameters"]["runs"]["componentInputParameter"] == "runs"
    executors = spec["deploymentSpec"]["executors"]
    assert executors["exec-study-report"]["container"]["image"].startswith("ghcr.io/rfm-project/rfm-pipelines:")
    defaults = spec["root"]["inputDefinitions"]["parameters"]["runs"]["defaultValue"]
    assert [r["label"] for r in defaults] == [r.label for r in plan_runs(study_presets.create("sample"))]


@pytest.mark.slow
def test_sample_study_runs_for_real(tmp_path: Path) -> None:
    """The `sample` preset end to end under kfp.local: 5 arms (1 seed), real training, evaluation and report."""
    out = tmp_path / "study"
    assert main(["study", "efficiency", "--preset", "sample", "--out", str(out),
                 "--pipeline-root", str(tmp_path / "kfp")]) == 0
    study = json.loads((out / "study.json").read_text())
    assert set(study["arms"]) == {"full", "random@50%", "hkmeans@50%", f"{ONLINE}@50%", "random@25%"}
    full = study["arms"]["full"]
    assert 0 <= full["mean"]["zeroshot.auroc_macro"] <= 1 and full["flops"] > 0
    # Equal steps for every arm (FLOPs differ a little: text length varies between reports and label prompts).
    assert {arm["steps"] for arm in study["arms"].values()} == {6}
    assert study["arms"][f"{ONLINE}@50%"]["budget"] == 0.5
    assert "zeroshot.auroc_macro" in study["paired"]["random@50%"]["hkmeans@50%"]
    assert "zeroshot.auroc_macro" in study["paired"]["full"]["random@50%"]
    assert set(study["goals"]["per_strategy"]) == {"hkmeans@50%", f"{ONLINE}@50%"}
    for png in ("metric_vs_budget.png", "metric_vs_compute.png", "rare_findings.png"):
        assert (out / png).stat().st_size > 1000
    assert "Paired tests against random@50%" in (out / "study.md").read_text()
    assert json.loads((out / "command.json").read_text())["preset"] == "sample"

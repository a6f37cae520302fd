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

pytestmark = [pytest.mark.filterwarnings("ignore:.*no effect in the current local runner:UserWarning"),
              pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")]


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
    select = run["curate"]["inputs"]["parameters"]
    for name in ("strategy", "budget", "dedup", "stratify"):  # each run's own subset recipe
        assert select[name]["parameterExpressionSelector"] == f'parseJson(string_value)["{name}"]', name
    report = root["study-report"]["inputs"]
    assert {report["artifacts"][a]["taskOutputArtifact"]["producerTask"] for a in ("evaluations", "training_logs")} \
        == {"for-loop-2"}
    assert report["parameters"]["runs"]["componentInputParameter"] == "runs"
    # Every run is evaluated on the extra splits with the study's task options; the report reads those splits.
    evaluate = run["evaluate"]["inputs"]["parameters"]
    assert evaluate["task_options"]["componentInputParameter"] == "pipelinechannel--eval_options"
    assert evaluate["extra_splits"]["componentInputParameter"] == "pipelinechannel--eval_extra_splits"
    assert {report["parameters"][p]["componentInputParameter"] for p in ("split", "extra_splits")} \
        == {"eval_split", "eval_extra_splits"}
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
    assert set(study["arms"]) == {r.arm for r in plan_runs(study_presets.create("sample"))}
    assert {"full", "random@50%", "hkmeans@50%", f"{ONLINE}@50%", "random@25%"} <= set(study["arms"])
    full = study["arms"]["full"]
    assert 0 <= full["mean"]["zeroshot.auroc_macro"] <= 1 and full["flops"] > 0
    # Equal steps for every arm of its own (FLOPs differ a little: text length varies between reports and label
    # prompts); an equal-FLOP twin (``base`` set) trains until its FLOP budget instead.
    assert {arm["steps"] for arm in study["arms"].values() if not arm["base"]} == {6}
    # The pooled sample is one source: its per-domain table holds every arm.
    assert set(study["splits"]["test"]["domains"]["sample"]["arms"]) == set(study["arms"])
    assert study["arms"][f"{ONLINE}@50%"]["budget"] == 0.5
    assert "zeroshot.auroc_macro" in study["paired"]["random@50%"]["hkmeans@50%"]
    assert "zeroshot.auroc_macro" in study["paired"]["full"]["random@50%"]
    strategies = {name for name, arm in study["arms"].items() if arm["kind"] == "strategy"}
    assert set(study["goals"]["per_strategy"]) == strategies >= {"hkmeans@50%", f"{ONLINE}@50%"}
    for png in ("metric_vs_budget.png", "metric_vs_compute.png", "rare_findings.png"):
        assert (out / png).stat().st_size > 1000
    assert "Paired tests against random@50%" in (out / "study.md").read_text()
    assert json.loads((out / "command.json").read_text())["preset"] == "sample"


# --- the study report on synthetic evaluations laid out like a kfp.local study (run folders, splits/, logs) ---

_CLASSES = ["Pneumonia", "Viral"]
_DOMAINS = ("covid_chestxray_ieee8023", "pediatric_pneumonia_kermany")
# Signal strength of each arm's scores (score = signal * label + the seed's noise), per split and domain: on test
# hkmeans beats random on the pediatric source only; on val it is worse than random everywhere.
_SIGNAL = {"test": {"full": (1.0, 1.0), "random@50%": (0.5, 0.5), "hkmeans@50%": (0.5, 3.0),
                    "full@30%-steps": (3.0, 3.0)},
           "val": {"full": (1.0, 1.0), "random@50%": (0.5, 0.5), "hkmeans@50%": (0.1, 0.1),
                   "full@30%-steps": (0.2, 0.2)}}


def _specs() -> list[Any]:
    from rfm_pipelines.study.plan import RunSpec

    arms = [("full", "reference", 1.0, 1.0), ("random@50%", "baseline", 0.5, 1.0),
            ("hkmeans@50%", "strategy", 0.5, 1.0), ("full@30%-steps", "compute", 1.0, 0.3)]
    return [RunSpec(f"{arm}/s{seed}", arm, kind, "random", budget, budget, "", "p", [], seed,
                    round(40 * steps), 0.0, step_fraction=steps, base="full" if kind == "compute" else "")
            for arm, kind, budget, steps in arms for seed in (0, 1)]


def _write_eval(folder: Path, split: str, arm: str, seed: int) -> None:
    """results.json and zeroshot / linear_probe predictions of one run on one split (60 samples per source)."""
    import numpy as np

    from rfm_eval.stats import Estimate
    from rfm_eval.tasks import Predictions, tasks

    ids = [f"{split}-{d[:3]}-{i}" for d in _DOMAINS for i in range(60)]
    y = np.random.default_rng(7).integers(0, 2, (len(ids), len(_CLASSES))).astype(np.int8)
    signal = np.repeat(_SIGNAL[split][arm], 60)[:, None]
    noise = np.random.default_rng(seed).normal(size=y.shape)  # shared by arms: equal signal, equal scores
    score = (signal * y + noise).astype(np.float32)
    preds = {"zeroshot": Predictions(ids, [s[:-1] for s in ids], {"y": y, "score": score},
                                     {"classes": _CLASSES, "mode": "multi_label"}),
             "linear_probe": Predictions(ids, [s[:-1] for s in ids], {"y": y, "score@1%": score, "score@100%": score},
                                         {"classes": _CLASSES, "mode": "multi_label", "tags": ["@1%", "@100%"]})}
    results: dict[str, Any] = {"split": split, "tasks": {}}
    for task, p in preds.items():
        (folder / task).mkdir(parents=True, exist_ok=True)
        p.save(str(folder / task / "predictions.safetensors"))
        headline = {m: Estimate(fn(np.arange(len(ids))), float("nan"), float("nan"), 0.95, 0).to_dict()
                    for m, fn in tasks.create(task).metrics(p).items()}
        results["tasks"][task] = {"status": "ok", "headline": headline}
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """A study's runs, each evaluated on test (its results folder) and val (``splits/val``), with its log."""
    from rfm_pipelines.study.report import load_run

    root = tmp_path_factory.mktemp("kfp")
    records = []
    for i, spec in enumerate(_specs()):
        run = root / f"for-loop-2-iteration-{i}"
        _write_eval(run / "evaluate" / "results", "test", spec.arm, spec.seed)
        _write_eval(run / "evaluate" / "results" / "splits" / "val", "val", spec.arm, spec.seed)
        (run / "evaluate" / "results" / "run_name.txt").write_text(spec.label)
        (run / "log").mkdir()
        flops = 1e9 * spec.step_fraction
        (run / "log" / "metrics.jsonl").write_text(json.dumps({"step": spec.steps, "flops": flops}) + "\n")
        records.append(load_run(spec, str(run / "evaluate" / "results"), str(run / "log")))
    return records


def _domains() -> dict[str, str]:
    return {f"{split}-{d[:3]}-{i}": d for split in ("test", "val") for d in _DOMAINS for i in range(60)}


def test_study_report_states_each_goal_per_split(study_runs: list[Any], tmp_path: Path) -> None:
    from rfm_pipelines.study.report import write_study_report

    rep = write_study_report(study_runs, str(tmp_path / "study"), 100, 0.5, n_boot=50, splits=["test", "val"],
                             domains=_domains())
    assert list(rep.splits) == ["test", "val"] and rep.goals is rep.splits["test"].goals
    test, val = rep.splits["test"].goals, rep.splits["val"].goals
    assert test["per_strategy"]["hkmeans@50%"]["beats_random_by_2_points"]
    assert not val["per_strategy"]["hkmeans@50%"]["beats_random_by_2_points"]
    # The shortened full run (30 % of the steps and FLOPs) reaches the full model on test, not on val.
    assert test["compute_arms"]["full@30%-steps"]["compute_fraction"] == pytest.approx(0.3)
    assert test["reached_by"] == ["full@30%-steps"] and test["full_reached_at_30pct_compute"]
    assert val["reached_by"] == [] and not val["full_reached_at_30pct_compute"]
    # Paired tests on every split, headline macro metrics only (no per-class AUROC).
    for split in ("test", "val"):
        tests = rep.splits[split].paired["random@50%"]["hkmeans@50%"]
        assert set(tests) == {"zeroshot.auroc_macro", "linear_probe.auroc_macro@1%",
                              "linear_probe.auroc_macro@100%"}
    assert rep.splits["val"].paired["random@50%"]["hkmeans@50%"]["zeroshot.auroc_macro"]["diff"]["value"] < 0
    assert "full@30%-steps" in rep.splits["test"].paired["full"]
    page = (tmp_path / "study" / "study.md").read_text()
    assert "## Split test" in page and "## Split val" in page
    assert "| val | hkmeans@50% |" in page and "| test | hkmeans@50% |" in page
    assert (tmp_path / "study" / "metric_vs_budget_val.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "study" / "study.json").read_text())
    assert set(saved["splits"]) == {"test", "val"} and "hkmeans@50%" in saved["paired"]["random@50%"]


def test_study_report_tests_arms_per_source_dataset(study_runs: list[Any], tmp_path: Path) -> None:
    from rfm_pipelines.study.report import write_study_report

    rep = write_study_report(study_runs, str(tmp_path / "study"), 100, 0.5, n_boot=100, domains=_domains())
    domains = rep.splits["test"].domains
    assert set(domains) == set(_DOMAINS) and {d["n"] for d in domains.values()} == {60}
    pediatric = domains["pediatric_pneumonia_kermany"]["paired"]["random@50%"]["hkmeans@50%"]
    covid = domains["covid_chestxray_ieee8023"]["paired"]["random@50%"]["hkmeans@50%"]
    for metric in ("zeroshot.auroc_macro", "linear_probe.auroc_macro@100%"):
        assert pediatric[metric]["diff"]["low"] > 0 and pediatric[metric]["p_value"] < 0.05
        assert covid[metric]["diff"]["value"] == 0  # same signal on that source: identical scores
    full = domains["pediatric_pneumonia_kermany"]["arms"]["full"]["zeroshot.auroc_macro"]
    assert full["low"] <= full["value"] <= full["high"]
    assert "Per source dataset (test)" in (tmp_path / "study" / "study.md").read_text()


def test_study_report_names_a_split_that_was_not_evaluated(study_runs: list[Any], tmp_path: Path) -> None:
    from rfm_pipelines.study.report import write_study_report

    with pytest.raises(ConfigError, match=r"no evaluation of split 'train' \(splits/train/results.json\)"):
        write_study_report(study_runs, str(tmp_path / "study"), 100, 0.5, n_boot=10, splits=["test", "train"])


@pytest.mark.parametrize("mode", ["multi_label", "multi_class"])
def test_vectorised_paired_metrics_equal_the_tasks_metrics(mode: str) -> None:
    """The report's resample-at-once AUROC / recall equal rfm-eval's per-resample metric functions (ties, -1)."""
    import numpy as np

    from rfm_eval.stats import resample_indices
    from rfm_eval.tasks import Predictions, tasks
    from rfm_pipelines.study.paired import draw_resamples, headline_metrics

    rng = np.random.default_rng(0)
    n = 90
    ids, groups = [f"s{i}" for i in range(n)], [f"p{i // 3}" for i in range(n)]
    if mode == "multi_label":
        y = rng.integers(-1, 2, (n, 3)).astype(np.int8)
        score = np.round(rng.normal(size=(n, 3)), 1)  # rounded: many tied scores
        score[::7, 1] = np.nan  # a class without a score on some rows is left out there
    else:  # class indices (-1 = unusable) and probabilities
        y = rng.integers(-1, 3, n).astype(np.int64)
        score = np.round(rng.dirichlet(np.ones(3), n), 1)
        score[:, 2] = 1.0 - score[:, :2].sum(1)
    probe = Predictions(ids, groups, {"y": y, "score@100%": score}, {"classes": ["a", "b", "c"], "mode": mode,
                                                                     "tags": ["@100%"]})
    rank = rng.integers(1, 20, n)
    retrieval = Predictions(ids, groups, {"i2t_rank": rank, "t2i_rank": rank[::-1].copy()}, {"ks": [1, 5]})
    draws = resample_indices(n, groups, 30, 3)
    resamples = draw_resamples(ids, groups, 30, 3)  # the same patient-level draws, as row multiplicities
    for task, p in (("linear_probe", probe), ("retrieval", retrieval)):
        reference = tasks.create(task).metrics(p)
        for metric, fn in headline_metrics(task, p).items():
            expected = [reference[metric](np.arange(n))] + [reference[metric](idx) for idx in draws]
            np.testing.assert_allclose(resamples.apply(fn, chunk=7), expected, atol=1e-12, err_msg=f"{task}.{metric}")

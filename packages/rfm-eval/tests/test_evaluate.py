"""The suite end to end on the bundled sample's real CXRs with a tiny model: outputs, metrics, cache."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from rfm_eval.evaluate import EvalConfig, EvalResult, evaluate
from rfm_eval.features import FeatureStore, split_size
from rfm_eval.handle import open_model
from rfm_eval.tasks import Predictions, TaskStatus


def test_quick_suite_writes_every_output(sample_run: EvalResult) -> None:
    out = Path(sample_run.out)
    results = json.loads((out / "results.json").read_text())
    assert set(results["tasks"]) == {"zeroshot", "retrieval", "linear_probe", "knn"}
    assert all(t["status"] == "ok" for t in results["tasks"].values())
    for task in ("zeroshot", "retrieval", "linear_probe", "knn"):
        assert (out / task / "result.json").exists() and (out / task / f"{task}.png").stat().st_size > 1000
    md = (out / "results.md").read_text()
    assert "| zeroshot | auroc_macro |" in md and "| retrieval | i2t_R@1 |" in md
    assert results["timing"]["feature_s"] > 0 and results["split"] == "val"


def test_zeroshot_auroc_matches_sklearn_on_the_saved_predictions(sample_run: EvalResult) -> None:
    preds = Predictions.load(str(Path(sample_run.out) / "zeroshot" / "predictions.safetensors"))
    y, s = preds.arrays["y"], preds.arrays["score"]
    c = preds.meta["classes"].index("Pneumonia")
    keep = y[:, c] >= 0
    expected = roc_auc_score(y[keep, c], s[keep, c])
    assert sample_run.tasks["zeroshot"].headline["auroc[Pneumonia]"].value == pytest.approx(expected)
    assert np.all((s >= 0) & (s <= 1))


def test_one_class_observation_is_reported_undefined(quick_config: Callable[..., EvalConfig],
                                                     tiny_model_dir: str, sample_dataset: str, tmp_path: Path) -> None:
    # ARDS: one positive in the sample's train split, none in val: AUROC is undefined there, not a crash.
    result = evaluate(tiny_model_dir, sample_dataset, str(tmp_path / "run"),
                      quick_config(tasks=["zeroshot", "linear_probe"], observations=["Pneumonia", "ARDS"]))
    for task, metric in (("zeroshot", "auroc[ARDS]"), ("linear_probe", "auroc[ARDS]@100%")):
        assert not result.tasks[task].headline[metric].defined
        assert result.tasks[task].headline[metric.replace("ARDS", "Pneumonia")].defined
    assert "| zeroshot | auroc[ARDS] | undefined |" in (tmp_path / "run" / "results.md").read_text()
    saved = json.loads((tmp_path / "run" / "zeroshot" / "result.json").read_text())
    assert saved["headline"]["auroc[ARDS]"]["value"] is None
    assert saved["details"]["counts"]["ARDS"]["positive"] == 0


def test_features_are_extracted_once_and_reused(sample_run: EvalResult, tiny_model_dir: str,
                                                sample_dataset: str) -> None:
    cache = str(Path(sample_run.out).parent / "cache")
    store = FeatureStore(open_model(tiny_model_dir), sample_dataset, cache, progress=False)
    first = store.get("val")
    assert store.extractions == 0  # the suite cached val and train already
    fresh = FeatureStore(open_model(tiny_model_dir), sample_dataset, None, progress=False).get("val")
    np.testing.assert_allclose(first.features, fresh.features, rtol=1e-5, atol=1e-6)
    assert first.sample_ids == fresh.sample_ids
    baseline = FeatureStore(open_model(tiny_model_dir, random_init=True, seed=7), sample_dataset, cache,
                            progress=False)
    assert baseline.entry("val") != store.entry("val")  # another hash: never served the trained features


def test_empty_split_falls_back_and_says_so(quick_config: Callable[..., EvalConfig],
        tiny_model_dir: str, sample_dataset: str, tmp_path: Path) -> None:
    result = evaluate(tiny_model_dir, sample_dataset, str(tmp_path / "run"),
                      quick_config(split="holdout", tasks=["knn"], n_boot=10))
    assert result.split == "test"
    note = json.loads((tmp_path / "run" / "results.json").read_text())["split_note"]
    assert "'holdout' is empty" in note


def test_retrieval_is_skipped_where_no_report_exists(quick_config: Callable[..., EvalConfig],
        tiny_model_dir: str, sample_dataset: str,
                                                     tmp_path: Path) -> None:
    result = evaluate(tiny_model_dir, sample_dataset, str(tmp_path / "run"),
                      quick_config(split="test", tasks=["retrieval"]))
    assert result.tasks["retrieval"].status == TaskStatus.SKIPPED
    assert "report" in result.tasks["retrieval"].reason


def test_finetune_trains_and_scores(quick_config: Callable[..., EvalConfig],
        tiny_model_dir: str, sample_dataset: str, tmp_path: Path) -> None:
    result = evaluate(tiny_model_dir, sample_dataset, str(tmp_path / "run"),
                      quick_config(tasks=["finetune"], task_options={"finetune": {"epochs": 1, "max_steps": 2,
                                                                                  "batch_size": 8}}))
    res = result.tasks["finetune"]
    assert res.status == TaskStatus.OK and res.details["training"]["steps"] == 2
    assert "auroc_macro@100%" in res.headline and res.n == split_size(sample_dataset, "val")

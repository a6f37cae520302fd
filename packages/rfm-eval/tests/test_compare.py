"""compare: the trained-vs-random-init table and paired bootstraps on real runs of the sample."""

import json
from collections.abc import Callable
from pathlib import Path

from rfm_eval.compare import compare
from rfm_eval.evaluate import EvalConfig, EvalResult, evaluate


def test_compare_against_the_random_init_twin(quick_config: Callable[..., EvalConfig],
        sample_run: EvalResult, tiny_model_dir: str, sample_dataset: str,
                                              tmp_path: Path) -> None:
    twin = evaluate(tiny_model_dir, sample_dataset, str(tmp_path / "twin"),
                    quick_config(random_init=True, seed=3, tasks=["zeroshot", "knn"]))
    result = compare([sample_run.out, twin.out], str(tmp_path / "cmp"), names=["tiny", "random"], n_boot=30)
    assert set(result.paired) == {"zeroshot", "knn"}  # tasks both runs have
    p = result.paired["knn"]["auroc_macro@100%"]["random"]
    assert p.diff.value == p.b.value - p.a.value
    assert 0.0 <= p.p_value <= 1.0
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000
    assert "| knn | auroc_macro@100% |" in (tmp_path / "cmp" / "compare.md").read_text()
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["names"] == ["tiny", "random"]


def test_a_run_compared_with_itself_differs_by_zero(sample_run: EvalResult, tmp_path: Path) -> None:
    result = compare([sample_run.out, sample_run.out], str(tmp_path / "self"), names=["a", "b"], n_boot=20)
    # The sample's test split has no reports: retrieval is skipped, and the table says so instead of omitting it.
    skipped = {name for name, task in sample_run.tasks.items() if task.status.value == "skipped"}
    assert set(result.skipped) == skipped
    assert all(f"- {name}: skipped (" in result.table() for name in skipped)
    for metric, per in result.paired["linear_probe"].items():
        diff = per["b"].diff
        assert not diff.defined or diff.value == 0, metric

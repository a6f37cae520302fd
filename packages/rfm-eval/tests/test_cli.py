"""The CLI end to end: a registered benchmark ingested from its source (the bundled sample) and evaluated."""

import json
from pathlib import Path

import pytest

from rfm_eval.cli import main


def test_run_a_benchmark_then_compare(tiny_model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--benchmark", "sample", "--split", "val", "--tasks", "knn,zeroshot", "--n-boot", "10",
              "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(["run", tiny_model_dir, *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["run", tiny_model_dir, *common, "--out", str(tmp_path / "b"), "--random-init"]) == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["benchmark"] == "sample" and results["protocol"]["observations"][0] == "No Finding"
    assert (tmp_path / "cache" / "datasets" / "sample" / "dataset.json").exists()  # ingested once, reused
    assert json.loads((tmp_path / "b" / "results.json").read_text())["model"]["random_init"] is True
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c"),
                 "--n-boot", "10"]) == 0
    assert "| knn | auroc_macro@100% |" in capsys.readouterr().out

from __future__ import annotations

from pathlib import Path

import pytest

from rfm_reportgen.cli import main


@pytest.mark.slow
def test_cli_train_generate_score(decoder_dir: str, sample_dataset: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", sample_dataset, "--out", str(out), "--decoder-dir", decoder_dir, "--image-encoder",
                 "test_resnet", "--image-size", "32", "--split", "all", "--batch-size", "4", "--steps", "2",
                 "--max-target-tokens", "48"]) == 0
    preds = tmp_path / "preds.parquet"
    assert main(["generate", str(out / "model"), sample_dataset, "--out", str(preds), "--split", "val",
                 "--strategy", "greedy", "--max-new-tokens", "8", "--no-cache"]) == 0
    assert main(["score", str(preds), "--out", str(tmp_path / "eval"), "--n-boot", "10", "--no-meteor"]) == 0
    assert "| bleu_4 |" in capsys.readouterr().out
    assert (tmp_path / "eval" / "scores.json").exists()


def test_cli_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", str(tmp_path / "missing.parquet"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["generate", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "p.parquet")]) == 2

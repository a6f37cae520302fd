"""Process-level faults and launchers, through the real ``python -m rfm_models.train`` entry point:
kill -9 mid-run then resume (deterministic losses equal an uninterrupted run), and DDP with torchrun (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rfm_data.loader import ShardDataset
from rfm_models.export import load_pretrained
from rfm_models.train.cli import main
from rfm_models.train.logging import read_jsonl

pytestmark = pytest.mark.integration

TOTAL = 24  # the cosine horizon is fixed, so a run cut short by kill -9 schedules LRs like the full run


def _args(data: str, out: Path, max_steps: int, **extra: str) -> list[str]:
    args = {"+experiment": "test_clip_cxr", "data.url": data, "data.split": "null", "data.batch_size": "16",
            "data.image_size": "32", "train.output_dir": str(out), "train.budget.max_epochs": "null",
            "train.budget.max_steps": str(max_steps), "train.schedule.total_steps": str(TOTAL),
            "train.schedule.warmup_steps": "2", "train.checkpoint.every_steps": "3", "train.log_every": "1",
            "train.deterministic": "true", "train.tensorboard": "false", **extra}
    return [f"{k}={v}" for k, v in args.items()]


def _env() -> dict[str, str]:
    # One intra-op thread: the same reduction order in every process, so losses match bit for bit.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "rfm_models.train", *args]
    subprocess.run(cmd, check=True, env=_env(), timeout=120, capture_output=True)


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(str(out / "metrics.jsonl"))]


def test_kill_9_then_resume_reproduces_the_uninterrupted_losses(cxr_dataset: str, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _run(_args(cxr_dataset, reference, max_steps=TOTAL))
    killed = tmp_path / "killed"
    kill_after = int(np.random.default_rng(7).integers(7, 14))  # a seeded "random" step
    # A budget far beyond TOTAL: only the kill can stop this run.
    proc = subprocess.Popen([sys.executable, "-m", "rfm_models.train", *_args(cxr_dataset, killed, 10**6)],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = killed / "metrics.jsonl"
            if metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = len(_losses(killed))
    _run(_args(cxr_dataset, killed, max_steps=TOTAL))
    latest = (killed / "checkpoints" / "latest").read_text()
    assert latest == "step-000000024"
    resumed = _losses(killed)
    assert before >= kill_after
    assert len(resumed) == TOTAL  # records after the last checkpoint were cut and rewritten, not duplicated
    assert resumed == _losses(reference)  # exact equality: deterministic mode


@pytest.mark.slow
@pytest.mark.parametrize("freeze_text", ["false", "true"])  # a locked text tower must not upset DDP either
def test_torchrun_two_processes_gloo(cxr_dataset: str, tmp_path: Path, freeze_text: str) -> None:
    out = tmp_path / "ddp"
    extra = {"data.batch_size": "8", "model.freeze_text": freeze_text}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "rfm_models.train", *_args(cxr_dataset, out, max_steps=4, **extra)]
    done = subprocess.run(cmd, env=_env(), timeout=180, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    records = read_jsonl(str(out / "metrics.jsonl"))
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["samples"] == 4 * 2 * 8  # counters are summed over both ranks
    state = json.loads((out / "checkpoints" / "step-000000004" / "trainer.json").read_text())
    assert state["world_size"] == 2
    assert {"rank-0.json", "rank-1.json", "model.safetensors"} <= set(state["files"])
    positions = [json.loads((out / "checkpoints" / "step-000000004" / f"rank-{r}.json").read_text())["loader"]
                 for r in (0, 1)]
    assert [(p["rank"], p["consumed"]) for p in positions] == [(0, 32), (1, 32)]


def test_cli_writes_the_resolved_config(cxr_dataset: str, tmp_path: Path) -> None:
    assert main(_args(cxr_dataset, tmp_path, max_steps=2)) == 0
    text = (tmp_path / "config.yaml").read_text()
    assert "image_encoder: test_vit" in text and "max_steps: 2" in text
    assert len(_losses(tmp_path)) == 2
    model = load_pretrained(str(tmp_path / "model"))  # the CLI exports the trained model
    assert model.config.image_encoder == "test_vit"


def test_cli_trains_only_on_the_subset(cxr_dataset: str, tmp_path: Path) -> None:
    full = ShardDataset(cxr_dataset)
    ids = sorted(full[i]["sample_id"] for i in range(len(full)))[:32]
    (tmp_path / "subset.txt").write_text("\n".join(ids))
    args = _args(cxr_dataset, tmp_path / "run", max_steps=50, **{"data.subset": str(tmp_path / "subset.txt")})
    args = [a for a in args if not a.startswith("train.budget.max_epochs")] + ["train.budget.max_epochs=3"]
    assert main(args) == 0
    # 32 samples in batches of 16: three epochs are six steps, whatever the size of the full dataset.
    assert len(_losses(tmp_path / "run")) == 6

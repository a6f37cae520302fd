"""Self-distillation under torchrun (2 processes, gloo): the EMA teacher and the centre stay identical on both
ranks, and the CLI exports the model. Slow: two interpreters with the full stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rfm_models.train.checkpoint import load_latest
from rfm_models.train.logging import read_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Rank 1 writes its teacher and centre after training so the test can compare them with rank 0's export.
_SNAPSHOT = """
import os, sys, torch
import torch.distributed as dist
from rfm_models.train import cli
from safetensors.torch import save_file
orig = cli.train
def train(cfg, model, loader, selector=None):
    result = orig(cfg, model, loader, selector)
    rank = dist.get_rank()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k.startswith(("teacher", "center"))}
    save_file(state, os.path.join(cfg.output_dir, f"teacher-rank{rank}.safetensors"))
    return result
cli.train = train
sys.exit(cli.main(sys.argv[1:]))
"""


def test_torchrun_gloo_keeps_the_teacher_identical_on_both_ranks(sample_dataset: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    script = tmp_path / "snapshot.py"
    script.write_text(_SNAPSHOT)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
           "+experiment=test_dino_cxr", f"data.url={sample_dataset}", "data.split=null", "data.batch_size=4",
           f"train.output_dir={out}", "train.budget.max_steps=3", "train.tensorboard=false",
           "self_distillation.loss.teacher_norm=sinkhorn_knopp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["step"] for r in read_jsonl(str(out / "metrics.jsonl"))] == [1, 2, 3]
    ranks = [load_file(str(out / f"teacher-rank{r}.safetensors")) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() and len(ranks[0]) > 10
    for name, tensor in ranks[0].items():
        assert torch.equal(tensor, ranks[1][name]), name
    assert load_latest(str(out)) is not None and (out / "model" / "config.json").exists()

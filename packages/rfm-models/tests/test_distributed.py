"""gather_with_grad under torchrun (2 processes, gloo): each rank's gradient of the global contrastive loss with
respect to its local embeddings equals the single-process full-batch gradient, also with unequal rank sizes
(online curation keeps different numbers of samples per rank)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as nnf

SIZES = (5, 3)  # rows on rank 0 and rank 1: unequal, so the padding path is exercised

_SCRIPT = """
import sys, torch, torch.distributed as dist, torch.nn.functional as nnf
from rfm_models.distributed import gather_with_grad
dist.init_process_group("gloo")
rank = dist.get_rank()
img, txt = torch.load(sys.argv[1], weights_only=True)
sizes = [int(s) for s in sys.argv[2].split(",")]
lo = sum(sizes[:rank])
local_img = img[lo:lo + sizes[rank]].clone().requires_grad_(True)
local_txt = txt[lo:lo + sizes[rank]].clone().requires_grad_(True)
g_img, off = gather_with_grad(local_img)
g_txt, _ = gather_with_grad(local_txt)
assert off == lo
logits = 10.0 * g_img @ g_txt.T
target = torch.arange(logits.shape[0])
loss = (nnf.cross_entropy(logits, target) + nnf.cross_entropy(logits.T, target)) / 2
loss.backward()
torch.save({"img": local_img.grad, "txt": local_txt.grad, "loss": loss.detach()}, f"{sys.argv[3]}/rank{rank}.pt")
dist.destroy_process_group()
"""


def _reference(img: torch.Tensor, txt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    img, txt = img.clone().requires_grad_(True), txt.clone().requires_grad_(True)
    logits = 10.0 * img @ txt.T
    target = torch.arange(logits.shape[0])
    loss = (nnf.cross_entropy(logits, target) + nnf.cross_entropy(logits.T, target)) / 2
    loss.backward()
    assert img.grad is not None and txt.grad is not None
    return img.grad, txt.grad, loss.detach()


@pytest.mark.integration
def test_gather_with_grad_gives_full_batch_gradients_on_each_rank(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    img = nnf.normalize(torch.randn(sum(SIZES), 16, generator=gen), dim=1)
    txt = nnf.normalize(torch.randn(sum(SIZES), 16, generator=gen), dim=1)
    torch.save((img, txt), tmp_path / "inputs.pt")
    (tmp_path / "script.py").write_text(_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(tmp_path / "script.py"), str(tmp_path / "inputs.pt"), ",".join(map(str, SIZES)), str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    ref_img, ref_txt, ref_loss = _reference(img, txt)
    for r in ranks:
        torch.testing.assert_close(r["loss"], ref_loss)
    torch.testing.assert_close(torch.cat([r["img"] for r in ranks]), ref_img)
    torch.testing.assert_close(torch.cat([r["txt"] for r in ranks]), ref_txt)

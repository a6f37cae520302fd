"""Fixtures of rfm-reportgen's tests: a few real IU reports, a tiny decoder pretrained on them, the bundled
sample's images with notes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rfm_models.encoders import train_tokenizer
from rfm_reportgen.config import Target

N_REPORTS = 80


@pytest.fixture(scope="session")
def iu_corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The first real IU reports as a small JSONL corpus."""
    lines = (shared_data / "iu_xray_reports" / "reports.jsonl").read_text().splitlines()[:N_REPORTS]
    path = tmp_path_factory.mktemp("iu") / "reports.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def iu_findings(iu_corpus: str) -> list[str]:
    """Non-empty findings of the corpus."""
    rows = [json.loads(line) for line in Path(iu_corpus).read_text().splitlines()]
    return [r["findings"] for r in rows if r["findings"]]


@pytest.fixture(scope="session")
def tokenizer_dir(iu_findings: list[str], sample_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A WordPiece tokenizer trained on the IU findings plus the sample's notes."""
    from rfm_reportgen.data import targets_of

    texts = iu_findings + list(targets_of(sample_dataset, Target.FINDINGS).values())
    out = str(tmp_path_factory.mktemp("tok"))
    train_tokenizer(texts, vocab_size=400, max_length=64).save(out)
    return out


@pytest.fixture(scope="session")
def decoder_dir(iu_corpus: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A test_gpt2 decoder pretrained for a few steps on the IU findings (through the rfm trainer)."""
    from rfm_reportgen.training import PretrainConfig, pretrain_decoder

    out = str(tmp_path_factory.mktemp("pretrain"))
    directory, _ = pretrain_decoder(PretrainConfig(corpus=iu_corpus, output_dir=out, decoder="test_gpt2",
                                                   vocab_size=300, max_length=48, batch_size=8, max_steps=4))
    return directory

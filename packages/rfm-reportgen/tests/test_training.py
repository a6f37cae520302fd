from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rfm_data.errors import ConfigError
from rfm_models import ModelConfig, build_model, save_pretrained
from rfm_reportgen.config import GenerationConfig, GeneratorConfig, Target
from rfm_reportgen.data import RowLoader, read_report_corpus, target_ids, text_rows
from rfm_reportgen.predict import generate_reports, read_predictions, retrieve_reports, write_predictions
from rfm_reportgen.report import evaluate, write_evaluation
from rfm_reportgen.scoring import ScoreConfig
from rfm_reportgen.training import GeneratorTrainConfig, train_generator, with_decoder


def test_row_loader_resumes_mid_epoch(iu_findings: list[str]) -> None:
    loader = RowLoader(text_rows(iu_findings[:20]), batch_size=4, seed=1)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    rest = [b["sample_id"] for b in it]
    resumed = RowLoader(text_rows(iu_findings[:20]), batch_size=4, seed=1)
    resumed.load_state_dict(state)
    assert [b["sample_id"] for b in resumed] == rest
    assert loader.state_dict()["epoch"] == 1  # the epoch ended with its last full batch


def test_corpus_and_targets_are_checked(iu_corpus: str, sample_dataset: str, tmp_path: Path) -> None:
    assert len(read_report_corpus(iu_corpus, Target.IMPRESSION)) > 10
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"findings": "x"}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2"):
        read_report_corpus(str(bad), Target.FINDINGS)
    with pytest.raises(ConfigError, match="impression"):
        target_ids(sample_dataset, Target.IMPRESSION)  # the sample's notes have no impression section


def test_pretrained_decoder_loads(decoder_dir: str) -> None:
    assert (Path(decoder_dir) / "model.safetensors").exists() and (Path(decoder_dir) / "tokenizer.json").exists()
    assert not list(Path(decoder_dir).glob("*.bin"))  # never a pickle


def _tiny_clip(tokenizer_dir: str, out: Path) -> str:
    model = build_model(ModelConfig(image_encoder="test_vit", text_encoder="test_bert", embed_dim=16,
                                    image_size=32), seed=0)
    save_pretrained(model, str(out))
    return str(out)


@pytest.mark.slow
def test_train_generate_retrieve_score(decoder_dir: str, tokenizer_dir: str, sample_dataset: str,
                                       tmp_path: Path) -> None:
    config = with_decoder(GeneratorConfig(image_encoder="test_resnet", image_size=32, projector="query",
                                          num_query_tokens=4, max_target_tokens=48), decoder_dir)
    model_dir, result = train_generator(GeneratorTrainConfig(dataset=sample_dataset, output_dir=str(tmp_path / "g"),
                                                             generator=config, split=None, batch_size=4,
                                                             max_steps=3))
    assert result.step == 3 and result.counters.flops > 0
    generated = generate_reports(model_dir, sample_dataset, split="val",
                                 config=GenerationConfig(max_new_tokens=12, num_beams=2))
    retrieved = retrieve_reports(_tiny_clip(tokenizer_dir, tmp_path / "clip"), sample_dataset, split="val")
    assert {p.sample_id for p in generated} == {p.sample_id for p in retrieved} and generated
    assert all(p.reference for p in retrieved)
    write_predictions(generated, str(tmp_path / "gen.parquet"))
    assert read_predictions(str(tmp_path / "gen.parquet")) == generated
    evaluation = evaluate([retrieved, generated], ScoreConfig(n_boot=20, meteor=False))
    files = write_evaluation(evaluation, str(tmp_path / "eval"))
    assert Path(files["plot"]).read_bytes()[:4] == b"\x89PNG"
    assert "generator - retrieval" in Path(files["markdown"]).read_text()
    assert set(evaluation.paired["generator"]) >= {"bleu_4", "cider", "ce_f1"}


def test_frozen_encoder_trains_on_cached_tokens(decoder_dir: str, sample_dataset: str, tmp_path: Path) -> None:
    config = with_decoder(GeneratorConfig(image_encoder="test_resnet", image_size=32, freeze_encoder=True,
                                          max_target_tokens=48), decoder_dir)
    torch.manual_seed(0)
    model_dir, result = train_generator(GeneratorTrainConfig(dataset=sample_dataset, output_dir=str(tmp_path),
                                                             generator=config, split=None, batch_size=4,
                                                             max_steps=2))
    assert result.step == 2 and Path(model_dir, "generator_config.json").exists()

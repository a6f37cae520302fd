from __future__ import annotations

import pytest
import torch

from rfm_data.errors import ConfigError
from rfm_data.loader import ShardDataset, collate
from rfm_data.transforms import cxr_eval_transform
from rfm_reportgen.config import DecodeStrategy, GenerationConfig, GeneratorConfig, Target
from rfm_reportgen.data import target_ids
from rfm_reportgen.export import build_generator, load_generator, save_generator
from rfm_reportgen.model import ReportGenerator


@pytest.fixture(scope="module")
def noted_batch(sample_dataset: str) -> dict[str, object]:
    """The bundled sample's real CXRs that have a clinical note, 32 px."""
    ids = target_ids(sample_dataset, Target.FINDINGS)
    ds = ShardDataset(sample_dataset, transform=cxr_eval_transform(32), ids=ids)
    return collate([ds[i] for i in range(min(6, len(ds)))])


def _generator(tokenizer_dir: str, projector: str = "mlp", encoder: str = "test_resnet") -> ReportGenerator:
    return build_generator(GeneratorConfig(image_encoder=encoder, image_size=32, projector=projector,
                                           num_query_tokens=4, decoder="test_gpt2", tokenizer_path=tokenizer_dir,
                                           max_target_tokens=48), seed=0)


@pytest.mark.parametrize(("projector", "encoder"), [("linear", "test_vit"), ("mlp", "test_resnet"),
                                                    ("query", "test_vit")])
def test_teacher_forcing_learns_the_notes(tokenizer_dir: str, noted_batch: dict[str, object], projector: str,
                                          encoder: str) -> None:
    model = _generator(tokenizer_dir, projector, encoder)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        out = model(noted_batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert out["per_sample_loss"].shape == (len(noted_batch["sample_id"]),)  # type: ignore[arg-type]
    assert losses[-1] < losses[0] - 0.5


def test_frozen_encoder_gets_no_gradient(tokenizer_dir: str, noted_batch: dict[str, object]) -> None:
    config = GeneratorConfig(image_encoder="test_resnet", image_size=32, freeze_encoder=True, decoder="test_gpt2",
                             tokenizer_path=tokenizer_dir, max_target_tokens=48)
    model = build_generator(config)
    model(noted_batch)["loss"].backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert any(p.grad is not None for p in model.projector.parameters())


def test_decoding_strategies_and_kv_cache(tokenizer_dir: str, noted_batch: dict[str, object]) -> None:
    model = _generator(tokenizer_dir, "query", "test_vit")
    images = noted_batch["image"]
    greedy = GenerationConfig(strategy=DecodeStrategy.GREEDY, max_new_tokens=12, repetition_penalty=1.0,
                              no_repeat_ngram_size=0)
    ids_cache = model.eval().generate_ids(images, greedy)  # type: ignore[arg-type]
    ids_plain = model.generate_ids(images, GenerationConfig(**{**greedy.__dict__, "use_cache": False}))  # type: ignore[arg-type]
    assert torch.equal(ids_cache, ids_plain)  # the KV cache changes speed, not the output
    assert ids_cache.shape[1] <= 12
    sample = GenerationConfig(strategy=DecodeStrategy.SAMPLE, max_new_tokens=10, seed=3)
    assert model.generate(images, sample) == model.generate(images, sample)  # type: ignore[arg-type]
    beams = model.generate(images, GenerationConfig(strategy=DecodeStrategy.BEAM, num_beams=3, max_new_tokens=10))  # type: ignore[arg-type]
    assert len(beams) == images.shape[0] and all(isinstance(t, str) for t in beams)  # type: ignore[union-attr]


def test_too_long_for_the_decoder_is_a_config_error(tokenizer_dir: str, noted_batch: dict[str, object]) -> None:
    model = _generator(tokenizer_dir)
    with pytest.raises(ConfigError, match="positions"):
        model.generate(noted_batch["image"], GenerationConfig(max_new_tokens=1000))  # type: ignore[arg-type]


def test_save_load_round_trip(tokenizer_dir: str, noted_batch: dict[str, object], tmp_path: object) -> None:
    model = _generator(tokenizer_dir, "query", "test_vit").eval()
    out = str(tmp_path)
    save_generator(model, out)
    loaded = load_generator(out)
    cfg = GenerationConfig(strategy=DecodeStrategy.GREEDY, max_new_tokens=8)
    assert loaded.generate(noted_batch["image"], cfg) == model.generate(noted_batch["image"], cfg)  # type: ignore[arg-type]
    assert loaded.config.target is Target.FINDINGS
    with pytest.raises(ConfigError, match="not a saved report generator"):
        load_generator(str(tmp_path / "missing"))  # type: ignore[operator]


def test_config_errors_name_the_field(tokenizer_dir: str) -> None:
    with pytest.raises(ConfigError, match="target"):
        GeneratorConfig(target="conclusion")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tokenizer_path"):
        build_generator(GeneratorConfig(image_encoder="test_resnet", image_size=32, decoder="test_gpt2"))
    with pytest.raises(KeyError, match="projector"):
        build_generator(GeneratorConfig(image_encoder="test_resnet", image_size=32, decoder="test_gpt2",
                                        projector="qformer", tokenizer_path=tokenizer_dir))

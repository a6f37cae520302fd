"""The learned backend's plumbing: a tiny untrained BERT classifier with a locally trained tokenizer.

The model is built from a config (no hub, no download), saved with ``save_pretrained`` and loaded back by
the backend. It is untrained, so this checks loading, batching, output layout and schema validation, not
accuracy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rfm_data.errors import ConfigError
from rfm_data.labels import OBSERVATIONS, LabelStatus, create_labeler, validate_labels
from rfm_data.labels.learned import STATES, decode_logits, output_layout

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

CORPUS = ["The heart is normal in size.", "Mild cardiomegaly.", "No pleural effusion or pneumothorax.",
          "Left lower lobe consolidation, possible pneumonia.", "Endotracheal tube above the carina."]


def _save_tiny_model(path: Path, observations: tuple[str, ...] = OBSERVATIONS) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]")
    id2label = dict(enumerate(f"{o}|{s}" for o in observations for s in STATES))
    config = transformers.BertConfig(vocab_size=fast.vocab_size, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                     id2label=id2label, label2id={v: k for k, v in id2label.items()})
    transformers.BertForSequenceClassification(config).save_pretrained(path)
    fast.save_pretrained(path)


def test_tiny_classifier_gives_schema_valid_labels(tmp_path: Path) -> None:
    _save_tiny_model(tmp_path / "model")
    labeler = create_labeler("learned", model_dir=str(tmp_path / "model"), batch_size=2, max_length=32)
    results = labeler.label_batch([*CORPUS, "", None, "word " * 5000])
    # a 25 kB report is cut for the tokenizer anyway; the status says it was
    assert [r.status for r in results[5:]] == [LabelStatus.EMPTY, LabelStatus.EMPTY, LabelStatus.TRUNCATED]
    for result in results[:5] + results[7:]:
        assert validate_labels(result.labels) == dict(result.labels)
        assert set(result.labels) <= set(OBSERVATIONS)


def test_a_model_for_some_observations_only(tmp_path: Path) -> None:
    _save_tiny_model(tmp_path / "m", observations=("Cardiomegaly", "Edema"))
    (result,) = create_labeler("learned", model_dir=str(tmp_path / "m")).label_batch(["Mild cardiomegaly."])
    assert set(result.labels) <= {"Cardiomegaly", "Edema"}


def test_bad_model_directories_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model_dir"):
        create_labeler("learned")
    with pytest.raises(ConfigError, match="cannot load"):
        create_labeler("learned", model_dir=str(tmp_path / "nothing-here"))


def test_output_layout_and_decoding() -> None:
    layout = output_layout({0: "Edema|positive", 1: "Edema|negative", 2: "Edema|uncertain", 3: "Edema|absent"})
    assert decode_logits([0.1, 0.2, 0.9, 0.0], layout) == {"Edema": -1}
    assert decode_logits([0.1, 0.2, 0.3, 5.0], layout) == {}
    with pytest.raises(ConfigError, match="four states"):
        output_layout({0: "Edema|positive", 1: "Edema|negative"})
    with pytest.raises(ConfigError, match="not '<observation>"):
        output_layout({0: "LABEL_0"})

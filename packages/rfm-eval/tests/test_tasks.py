import numpy as np
import pytest

from rfm_data.errors import ConfigError
from rfm_eval.tasks import Predictions
from rfm_eval.tasks.probes import fraction_rows
from rfm_eval.tasks.retrieval import first_hit_rank


def test_predictions_round_trip_through_safetensors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    preds = Predictions(["a", "b", "c"], ["p1", "p1", "p2"], {"y": np.array([[1], [0], [-1]], dtype=np.int8),
                                                           "score": np.array([0.3, 0.2, 0.9], dtype=np.float32)},
                        {"classes": ["X"]})
    preds.save(str(tmp_path / "p.safetensors"))
    back = Predictions.load(str(tmp_path / "p.safetensors"))
    assert back.sample_ids == preds.sample_ids and back.groups == preds.groups and back.meta == preds.meta
    np.testing.assert_array_equal(back.arrays["y"], preds.arrays["y"])
    assert back.take(np.array([2, 0])).sample_ids == ["c", "a"]


def test_label_fractions_sample_patients_and_keep_both_classes() -> None:
    patients = [f"p{i // 2}" for i in range(200)]  # 100 patients, 2 images each
    y = np.zeros((200, 2), dtype=np.int8)
    y[:4, 0] = 1  # a rare class: 2 patients
    y[::3, 1] = 1
    rows = fraction_rows(patients, y, 0.01, seed=0)
    chosen = {patients[i] for i in rows}
    assert set(rows) == {i for i in range(200) if patients[i] in chosen}  # whole patients only
    for c in range(2):
        assert set(y[rows, c].tolist()) == {0, 1}
    assert len(chosen) < 20
    np.testing.assert_array_equal(rows, fraction_rows(patients, y, 0.01, seed=0))
    assert len(fraction_rows(patients, y, 1.0, seed=3)) == 200
    with pytest.raises(ConfigError, match="label fraction"):
        fraction_rows(patients, y, 0.0, seed=0)


def test_first_hit_rank_counts_shared_reports_as_right_answers() -> None:
    sim = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.1], [0.1, 0.2, 0.3]])
    match = np.array([[True, False, False], [False, True, True], [False, True, True]])
    np.testing.assert_array_equal(first_hit_rank(sim, match), [1, 2, 1])

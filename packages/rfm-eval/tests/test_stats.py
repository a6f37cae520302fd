import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from rfm_data.errors import ConfigError
from rfm_eval.stats import Estimate, bootstrap, paired_bootstrap, resample_indices, safe_auroc


def _data(seed: int = 0, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, y + rng.normal(0, 1.0, n)


def test_bootstrap_value_is_the_full_data_metric_and_the_interval_brackets_it() -> None:
    y, s = _data()
    est = bootstrap(lambda i: safe_auroc(y[i], s[i]), len(y), n_boot=200)
    assert est.value == pytest.approx(roc_auc_score(y, s))
    assert est.low < est.value < est.high
    assert est.n_boot == 200 and est.level == 0.95
    assert Estimate.from_dict(est.to_dict()) == est


def test_patient_level_resampling_draws_whole_patients_and_widens_the_interval() -> None:
    y, s = _data(n=40)
    # Each patient contributes 10 identical images: row resampling would treat them as independent.
    yy, ss = np.repeat(y, 10), np.repeat(s, 10)
    groups = np.repeat([f"p{i}" for i in range(40)], 10)
    for idx in resample_indices(len(yy), groups, n_boot=5, seed=1):
        counts = np.bincount(idx // 10, minlength=40) // 10  # patient draws
        assert np.all(np.bincount(idx, minlength=400).reshape(40, 10) == counts[:, None])
    rows = bootstrap(lambda i: safe_auroc(yy[i], ss[i]), len(yy), n_boot=300)
    patients = bootstrap(lambda i: safe_auroc(yy[i], ss[i]), len(yy), groups, n_boot=300)
    assert (patients.high - patients.low) > 1.5 * (rows.high - rows.low)


def test_undefined_metric_is_nan_not_an_error() -> None:
    y = np.zeros(20, dtype=int)
    est = bootstrap(lambda i: safe_auroc(y[i], np.arange(20.0)[i]), 20, n_boot=50)
    assert math.isnan(est.value) and est.n_boot == 0
    assert est.format() == "undefined"
    assert est.to_dict()["value"] is None


def test_paired_bootstrap_identical_models_differ_by_zero_and_a_better_model_wins() -> None:
    y, s = _data(n=300)
    same = paired_bootstrap(lambda i: safe_auroc(y[i], s[i]), lambda i: safe_auroc(y[i], s[i]), 300, n_boot=200)
    assert same.diff.value == 0 and same.p_value == 1.0
    better = y + np.random.default_rng(5).normal(0, 0.3, 300)
    paired = paired_bootstrap(lambda i: safe_auroc(y[i], s[i]), lambda i: safe_auroc(y[i], better[i]), 300,
                              n_boot=200)
    assert paired.diff.low > 0 and paired.p_value < 0.05
    assert paired.b.value > paired.a.value


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ConfigError, match="0 rows"):
        resample_indices(0)
    with pytest.raises(ConfigError, match="groups has 2 entries for 3 rows"):
        resample_indices(3, ["a", "b"])
    with pytest.raises(ConfigError, match="level"):
        bootstrap(lambda i: 0.0, 3, level=95)

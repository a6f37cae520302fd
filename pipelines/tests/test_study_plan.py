"""The study plan: arms x seeds, equal steps, the equal-FLOP online twin, compute arms, settings errors."""

import pytest

from rfm_data.errors import ConfigError
from rfm_pipelines.study import ONLINE, plan_runs, study_presets
from rfm_pipelines.study.plan import EQUAL_FLOPS_STEP_CAP, RunSpec, pipeline_arguments
from rfm_pipelines.study.run import parse_study_values


def test_full_plan_is_every_arm_at_every_seed_with_equal_steps() -> None:
    study = study_presets.create("full")
    runs = plan_runs(study)
    arms = list(dict.fromkeys(r.arm for r in runs))
    assert arms == ["full", "random@25%", "hkmeans@25%", "chexficient@25%", "label_balance@25%",
                    f"{ONLINE}@25%", f"{ONLINE}@25%=flops", "hkmeans[dataset]@25%", "random@10%", "random@50%",
                    "full@30%-steps", "hkmeans@25%@30%-steps"]
    assert len(study.seeds) >= 3 and len(runs) == len(arms) * len(study.seeds)
    assert {r.seed for r in runs} == set(study.seeds) and len({r.label for r in runs}) == len(runs)
    # Equal steps x equal batch = equal compute for every offline arm at full length.
    assert {r.steps for r in runs if r.kind != "compute" and not r.arm.endswith("=flops")} == {study.train_steps}
    online = [r for r in runs if r.arm.startswith(ONLINE)]
    assert all(r.preset == study.online_preset and r.budget == 1.0 and r.fraction == 0.25
               and "selector.params.ratio=0.25" in r.overrides for r in online)
    assert all(r.preset == study.preset and r.strategy == "hkmeans" and r.budget == 0.25 and r.dedup == "exact"
               for r in runs if r.arm == "hkmeans@25%")


def test_quick_plan_keeps_every_kind_of_arm_at_ci_size() -> None:
    quick, full = study_presets.create("quick"), study_presets.create("full")
    arms = {r.arm: r.kind for r in plan_runs(quick)}
    assert set(arms) <= {r.arm for r in plan_runs(full)}
    assert set(arms.values()) == {"reference", "baseline", "strategy", "scaling", "compute"}
    assert {f"{s}@25%" for s in quick.strategies} | {f"{ONLINE}@25%=flops"} <= set(arms)
    assert quick.preset == full.preset and quick.eval_suite == full.eval_suite == "study"


def test_the_online_arm_has_an_equal_flop_twin() -> None:
    study = study_presets.create("quick").with_values({"train_steps": 40})
    twin = [r for r in plan_runs(study) if r.arm == f"{ONLINE}@25%=flops"]
    assert len(twin) == len(study.seeds)
    # The FLOPs of 40 plain steps stop it; the step cap only guards against a runaway run.
    assert all("train.budget.flops_of_steps=40" in r.overrides and r.steps == 40 * EQUAL_FLOPS_STEP_CAP
               and r.base == f"{ONLINE}@25%" and r.kind == "strategy" for r in twin)
    assert not any(r.arm.endswith("=flops") for r in plan_runs(study.with_values({"equal_flops": False})))


def test_compute_arms_shorten_full_and_the_named_strategies() -> None:
    study = study_presets.create("quick").with_values({"compute_fractions": [0.3, 0.5], "train_steps": 40,
                                                       "compute_arms": ["full", "hkmeans"]})
    compute = [r for r in plan_runs(study) if r.kind == "compute"]
    by_arm = {r.arm: (r.steps, r.step_fraction, r.base, r.strategy, r.budget) for r in compute}
    assert by_arm == {"full@30%-steps": (12, 0.3, "full", "random", 1.0),
                      "hkmeans@25%@30%-steps": (12, 0.3, "hkmeans@25%", "hkmeans", 0.25),
                      "full@50%-steps": (20, 0.5, "full", "random", 1.0),
                      "hkmeans@25%@50%-steps": (20, 0.5, "hkmeans@25%", "hkmeans", 0.25)}
    with pytest.raises(ConfigError, match=r"compute_arms has \['kmeans'\]: each must be 'full' or one of"):
        plan_runs(study.with_values({"compute_arms": ["kmeans"]}))


def test_run_specs_round_trip_and_older_plans_still_load() -> None:
    run = plan_runs(study_presets.create("quick"))[-1]
    assert RunSpec.from_dict(run.to_dict()) == run
    older = {k: v for k, v in run.to_dict().items() if k not in ("step_fraction", "base")}
    assert RunSpec.from_dict(older).step_fraction == 1.0
    with pytest.raises(ConfigError, match=r"lacks .*'seed'"):
        RunSpec.from_dict({k: v for k, v in run.to_dict().items() if k != "seed"})


def test_eval_options_take_the_data_root() -> None:
    args = pipeline_arguments(study_presets.create("quick"), "/data/raw/")
    assert args["eval_options"] == {"segmentation": {"data_root": "/data/raw/covid_chestxray_ieee8023"}}
    assert args["eval_suite"] == "study" and args["eval_split"] == "test" and args["eval_extra_splits"] == ["val"]
    assert args["sources"][0]["source"] == "/data/raw/covid_chestxray_ieee8023"


def test_bad_settings_name_the_field_and_the_fix() -> None:
    study = study_presets.create("quick")
    assert parse_study_values(study, ["train_steps=5", "seeds=[0,1,2]", "preset=demo_clip_cxr", "budget=1"]) == {
        "train_steps": 5, "seeds": [0, 1, 2], "preset": "demo_clip_cxr", "budget": 1.0}
    with pytest.raises(ConfigError, match=r"unknown study setting 'steps'; known: .*train_steps"):
        parse_study_values(study, ["steps=5"])
    with pytest.raises(ConfigError, match=r"seeds=.* must be a list"):
        parse_study_values(study, ["seeds=3"])
    with pytest.raises(ConfigError, match=r"budget=1.5 must be a fraction"):
        plan_runs(study.with_values({"budget": 1.5}))
    with pytest.raises(ConfigError, match="seeds is empty"):
        plan_runs(study.with_values({"seeds": []}))


def test_stratified_arms_curate_within_each_source() -> None:
    study = study_presets.create("full")
    runs = plan_runs(study)
    stratified = [r for r in runs if r.stratify]
    assert {r.arm for r in stratified} == {"hkmeans[dataset]@25%"} and len(stratified) == len(study.seeds)
    assert all(r.strategy == "hkmeans" and r.budget == 0.25 and r.kind == "strategy" and r.stratify == "dataset"
               for r in stratified)
    assert not any(r.stratify for r in runs if r.arm == "hkmeans@25%")
    with pytest.raises(ConfigError, match=r"stratified has 'kmeans': each must be an offline strategy"):
        plan_runs(study.with_values({"stratified": ["kmeans"]}))

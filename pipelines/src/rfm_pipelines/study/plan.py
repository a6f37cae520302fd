"""Study presets and the run plan of the data-efficiency study (arms × seeds).

An *arm* is one training-set recipe: the full train split, a random subset at the budget, each curation
strategy at the budget, the random subsets of the data-scaling sweep, and the full set at a fraction of the
steps (the compute axis). Every arm is trained once per seed with the same model preset, batch and number of
optimizer steps (equal steps x equal batch = equal training FLOPs for every offline subset; the online
selector also spends scoring FLOPs, which its run reports). :func:`plan_runs` expands arms x seeds into the
flat list of runs the ``efficiency`` pipeline loops over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from rfm_data.errors import ConfigError
from rfm_data.registry import Registry

__all__ = ["ONLINE", "Arm", "RunSpec", "StudyPreset", "arms", "pipeline_arguments", "plan_runs", "study_presets"]

ONLINE = "chexficient_online"  # the trainer's prototype selector, not an offline curation strategy
# An equal-FLOP run may take up to this many times the study's steps (selection keeps ~1/4 of each batch).
EQUAL_FLOPS_STEP_CAP = 8
# Lung masks for the segmentation task come from the COVID collection's folder under --data-root.
SEGMENTATION_OPTIONS: dict[str, Any] = {"segmentation": {"data_root": "{data_root}/covid_chestxray_ieee8023"}}


@dataclass(frozen=True)
class Arm:
    """One training-set recipe.

    Attributes:
        name: label in tables (``hkmeans@25%``).
        kind: ``reference`` (full set), ``baseline`` (random at the budget), ``strategy``, ``scaling`` or
            ``compute`` (the full set at ``step_fraction`` of the steps).
        strategy: rfm-curation strategy for the offline subset (``random`` at budget 1 = everything).
        budget: fraction of the train split kept (the online arm keeps it through its selector).
        dedup: deduplication before selection ("" none).
        online: CheXficient online selection in the trainer instead of an offline subset.
        step_fraction: fraction of the study's ``train_steps``.
        equal_flops: train until the FLOPs of ``train_steps`` plain steps are spent (the online selector trains
            on part of each batch and spends scoring passes, so equal steps is not equal compute for it).
        base: the arm this one shortens (compute arms) or re-budgets (equal-FLOP arms); "" for itself.
        stratify: curate within each value of this manifest column, keeping its mix ("" = over the whole pool).
    """

    name: str
    kind: str
    strategy: str
    budget: float
    dedup: str = ""
    online: bool = False
    step_fraction: float = 1.0
    equal_flops: bool = False
    base: str = ""
    stratify: str = ""


@dataclass(frozen=True)
class RunSpec:
    """One training + evaluation run of the plan (a loop item of the pipeline: JSON-able fields only).

    ``budget`` is what the curate step keeps (1.0 for the online arm, whose selector subsamples during
    training); ``fraction`` is the share of the train split the arm stands for (the study's budget for every
    curated arm, online included): the x of the budget plot and the scaling fit. ``step_fraction`` is the share
    of the study's steps this run trains and ``base`` the arm it is a shortened / equal-FLOP copy of ("" for
    an arm of its own): the compute goal compares ``base``'s full-length metric with these runs'.
    """

    label: str
    arm: str
    kind: str
    strategy: str
    budget: float
    fraction: float
    dedup: str
    preset: str
    overrides: list[str]
    seed: int
    steps: int
    max_flops: float
    step_fraction: float = 1.0
    base: str = ""
    stratify: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        names = {f.name for f in fields(cls)}
        missing = names - set(data) - {"step_fraction", "base", "stratify"}  # added later: older plans lack them
        if missing:
            raise ConfigError(f"run {dict(data)} lacks {sorted(missing)}: build runs with "
                              "rfm_pipelines.study.plan_runs")
        return cls(**{k: data[k] for k in names if k in data} | {"seed": int(data["seed"]), "steps": int(data["steps"]),
                                                     "budget": float(data["budget"]),
                                                     "fraction": float(data["fraction"]),
                                                     "max_flops": float(data["max_flops"]),
                                                     "step_fraction": float(data.get("step_fraction", 1.0)),
                                                     "overrides": list(data["overrides"])})


@dataclass(frozen=True)
class StudyPreset:
    """Everything that sizes a study. ``rfm study efficiency --set KEY=VALUE`` overrides any field.

    Attributes:
        name, description: the preset's name and what it is for.
        sources: ``{"source": folder, "adapter": name}`` per dataset; folders relative to ``--data-root``.
        long_side, shard_size: ingest options.
        preset, online_preset: rfm-train experiments (the online one adds CheXficient's selector).
        train_overrides: Hydra overrides for every run (e.g. ``data.batch_size=8``).
        warmup_steps: steps of the warm-up model whose embeddings drive offline curation.
        train_steps: optimizer steps of every run (equal steps x equal batch = equal compute).
        max_flops: a FLOP budget per run on top of the steps (0 = none): the equal-compute axis for the online
            selector, whose scoring passes cost FLOPs.
        seeds: one run per arm per seed (model init, data order, random subsets).
        budget: the curation budget (fraction of the train split).
        strategies: curation strategies at ``budget`` (offline registry names, plus ``chexficient_online``).
        stratified: offline strategies that also run within each value of ``stratify_by`` (arm
            ``<strategy>[<column>]@<budget>``): the subset keeps the pool's mix of sources.
        stratify_by: the manifest column of the stratified arms (``dataset``: the source of a pooled sample).
        dedup: deduplication of the curated arms.
        scaling_fractions: random-subset sizes of the data-scaling sweep (1.0 = the full arm).
        compute_fractions: ``compute_arms`` trained for these fractions of the steps (compute-to-target axis).
        compute_arms: which arms get the shortened runs: ``full`` and/or strategy names (e.g. ``hkmeans``).
        equal_flops: add an equal-compute twin of the online arm (it trains until the FLOPs of ``train_steps``
            plain steps are spent: ``train.budget.flops_of_steps``).
        eval_suite, eval_split, eval_benchmark, n_boot: the rfm-eval protocol.
        eval_extra_splits: further splits every run is evaluated on (the goals are checked on each).
        eval_options: rfm-eval task-option overrides; ``{data_root}`` in a string value is replaced by
            ``--data-root`` (segmentation reads its masks from a source folder).
        primary: the ``task.metric`` of the goals, the budget / compute plots and the scaling fit.
        rare: findings called rare in the per-class gains plot (their AUROCs are compared).
    """

    name: str
    description: str
    sources: list[dict[str, str]]
    long_side: int = 256
    shard_size: int = 1024
    preset: str = "test_clip_cxr"
    online_preset: str = "test_clip_cxr_chexficient"
    train_overrides: list[str] = field(default_factory=list)
    warmup_steps: int = 20
    train_steps: int = 60
    max_flops: float = 0.0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    budget: float = 0.25
    strategies: list[str] = field(default_factory=lambda: ["hkmeans", "chexficient", "label_balance", ONLINE])
    stratified: list[str] = field(default_factory=lambda: ["hkmeans"])
    stratify_by: str = "dataset"
    dedup: str = "exact"
    scaling_fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    compute_fractions: list[float] = field(default_factory=lambda: [0.3])
    compute_arms: list[str] = field(default_factory=lambda: ["full", "hkmeans"])
    equal_flops: bool = True
    eval_suite: str = "study"
    eval_split: str = "test"
    eval_extra_splits: list[str] = field(default_factory=lambda: ["val"])
    eval_options: dict[str, Any] = field(default_factory=lambda: dict(SEGMENTATION_OPTIONS))
    eval_benchmark: str = "sample"
    n_boot: int = 200
    primary: str = "zeroshot.auroc_macro"
    rare: list[str] = field(default_factory=lambda: ["Viral", "Bacterial", "COVID-19"])

    def with_values(self, values: Mapping[str, Any]) -> StudyPreset:
        """A copy with ``values`` replacing fields (unknown keys → ConfigError naming the known ones)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown study setting(s) {unknown}; known: {', '.join(sorted(known))}")
        return replace(self, **dict(values))


study_presets: Registry[StudyPreset] = Registry("study preset")
REAL_SOURCES = [{"source": "covid_chestxray_ieee8023", "adapter": "covid_chestxray_ieee8023"},
                {"source": "pediatric_pneumonia_kermany", "adapter": "pediatric_pneumonia_kermany"}]


def _register(preset: StudyPreset) -> None:
    factory: Callable[[], StudyPreset] = lambda: preset  # noqa: E731
    study_presets.register(preset.name)(factory)


_register(StudyPreset(
    name="quick", description="CI size (<= 10 min on 2 cores): the study model at 48 px, 2 seeds, 18 runs",
    sources=REAL_SOURCES, long_side=64, shard_size=512, preset="study_clip_cxr",
    online_preset="study_clip_cxr_chexficient",
    train_overrides=["data.batch_size=16", "model.image_size=48", "data.image_size=48"], warmup_steps=20,
    train_steps=40, seeds=[0, 1], scaling_fractions=[0.1, 0.25, 1.0], compute_arms=["hkmeans"], stratified=[],
    n_boot=100))
_register(StudyPreset(
    name="sample", description="smoke size on the bundled sample (63 CXRs): one seed, seconds per run",
    sources=[{"source": "sample", "adapter": ""}], shard_size=32, train_overrides=["data.batch_size=8"],
    warmup_steps=4, train_steps=6, seeds=[0], budget=0.5, strategies=["hkmeans", ONLINE],
    scaling_fractions=[0.25, 0.5, 1.0], compute_fractions=[], eval_suite="quick", eval_extra_splits=[],
    eval_options={}, n_boot=50))
_register(StudyPreset(
    name="full", description="the study model at 64 px, 120 steps at batch 32, 3 seeds, every arm: 33 runs",
    sources=REAL_SOURCES, long_side=128, shard_size=1024, preset="study_clip_cxr",
    online_preset="study_clip_cxr_chexficient", train_overrides=["data.batch_size=32"], warmup_steps=60,
    train_steps=120, seeds=[0, 1, 2], n_boot=500))


def _pct(x: float) -> str:
    return f"{x * 100:g}%"


def arms(study: StudyPreset) -> list[Arm]:
    """The study's arms: full, random at the budget, each strategy (and the online arm at equal FLOPs), the
    scaling sweep, then the compute axis (``compute_arms`` at ``compute_fractions`` of the steps)."""
    if not 0 < study.budget < 1:
        raise ConfigError(f"budget={study.budget} must be a fraction in (0, 1), e.g. 0.25")
    b = _pct(study.budget)
    out = [Arm("full", "reference", "random", 1.0), Arm(f"random@{b}", "baseline", "random", study.budget)]
    for strategy in study.strategies:
        online = strategy == ONLINE
        out.append(Arm(f"{strategy}@{b}", "strategy", "random" if online else strategy,
                       1.0 if online else study.budget, "" if online else study.dedup, online=online))
        if online and study.equal_flops:
            out.append(replace(out[-1], name=f"{strategy}@{b}=flops", equal_flops=True, base=out[-1].name))
    for strategy in study.stratified:
        if strategy not in study.strategies or strategy == ONLINE:
            raise ConfigError(f"stratified has {strategy!r}: each must be an offline strategy of strategies "
                              f"{study.strategies}")
        out.append(Arm(f"{strategy}[{study.stratify_by}]@{b}", "strategy", strategy, study.budget, study.dedup,
                       stratify=study.stratify_by))
    for f in study.scaling_fractions:
        if not 0 < f <= 1:
            raise ConfigError(f"scaling_fractions has {f}: each must be in (0, 1]")
        if f not in (1.0, study.budget):
            out.append(Arm(f"random@{_pct(f)}", "scaling", "random", f))
    return out + _compute_arms(study, out)


def _compute_arms(study: StudyPreset, base_arms: list[Arm]) -> list[Arm]:
    by_key = {"full": base_arms[0], **{a.name.split("@")[0]: a for a in base_arms if a.kind == "strategy"
                                       and not a.equal_flops}}
    unknown = sorted(set(study.compute_arms) - set(by_key))
    if unknown and study.compute_fractions:
        raise ConfigError(f"compute_arms has {unknown}: each must be 'full' or one of strategies "
                          f"{study.strategies}")
    out = []
    for f in study.compute_fractions:
        if not 0 < f < 1:
            raise ConfigError(f"compute_fractions has {f}: each must be in (0, 1)")
        for key in study.compute_arms:
            base = by_key[key]
            out.append(replace(base, name=f"{base.name}@{_pct(f)}-steps", kind="compute", step_fraction=f,
                               base=base.name))
    return out


def plan_runs(study: StudyPreset) -> list[RunSpec]:
    """Arms x seeds as the pipeline's loop items, in a stable order (arm-major)."""
    if not study.seeds:
        raise ConfigError("seeds is empty: give at least one seed, e.g. --set 'seeds=[0,1,2]'")
    if study.train_steps < 1:
        raise ConfigError(f"train_steps={study.train_steps} must be >= 1")
    runs = []
    for arm in arms(study):
        # Every step logged: the report reads each run's final step and FLOPs from the last metrics.jsonl line.
        overrides = [*study.train_overrides, "train.log_every=1"]
        if arm.online:  # the selector keeps `budget` of what it scores during its selection epoch
            overrides.append(f"selector.params.ratio={study.budget}")
        steps = max(1, round(study.train_steps * arm.step_fraction))
        if arm.equal_flops:  # the FLOP budget stops it; the step cap only guards against a runaway run
            overrides.append(f"train.budget.flops_of_steps={steps}")
            steps *= EQUAL_FLOPS_STEP_CAP
        for seed in study.seeds:
            runs.append(RunSpec(label=f"{arm.name}/s{seed}", arm=arm.name, kind=arm.kind, strategy=arm.strategy,
                                budget=arm.budget, fraction=study.budget if arm.online else arm.budget,
                                dedup=arm.dedup,
                                preset=study.online_preset if arm.online else study.preset, overrides=overrides,
                                seed=int(seed), steps=steps, max_flops=study.max_flops,
                                step_fraction=arm.step_fraction, base=arm.base, stratify=arm.stratify))
    return runs


def pipeline_arguments(study: StudyPreset, data_root: str, out: str = "") -> dict[str, Any]:
    """The ``efficiency`` pipeline's arguments for ``study`` with sources under ``data_root``.

    A source named ``sample`` is the bundled sample (no folder needed).
    """
    sources = []
    for s in study.sources:
        if "source" not in s:
            raise ConfigError(f"sources entry {s} needs a 'source' (folder under --data-root) and an 'adapter'")
        folder = s["source"] if s["source"] == "sample" else f"{data_root.rstrip('/')}/{s['source']}"
        sources.append({"source": folder, "adapter": s.get("adapter", "")})
    return {"sources": sources, "long_side": study.long_side, "shard_size": study.shard_size,
            "preset": study.preset, "train_overrides": list(study.train_overrides),
            "warmup_steps": study.warmup_steps, "runs": [r.to_dict() for r in plan_runs(study)],
            "eval_suite": study.eval_suite, "eval_split": study.eval_split, "eval_benchmark": study.eval_benchmark,
            "eval_extra_splits": list(study.eval_extra_splits),
            "eval_options": _with_data_root(study.eval_options, data_root.rstrip("/")), "n_boot": study.n_boot,
            "primary": study.primary, "budget": study.budget, "rare": list(study.rare), "study_name": study.name}


def _with_data_root(value: Any, data_root: str) -> Any:
    """``value`` with ``{data_root}`` replaced in every string (nested dicts and lists)."""
    if isinstance(value, str):
        return value.replace("{data_root}", data_root)
    if isinstance(value, dict):
        return {k: _with_data_root(v, data_root) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_data_root(v, data_root) for v in value]
    return value

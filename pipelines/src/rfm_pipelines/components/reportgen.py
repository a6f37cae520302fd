"""rfm-reportgen components: ``reportgen_train`` and ``reportgen_evaluate`` (over rfm_reportgen's library).

Imports sit inside the functions because KFP ships only the function body to the container (the rfm-reportgen
image provides ``rfm_reportgen``); nothing here may depend on rfm_pipelines at run time.
"""

# No `from __future__ import annotations`: kfp reads the annotations as real types (Input[Model], ...).
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from rfm_pipelines.images import image


@dsl.component(base_image=image("rfm-reportgen"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def reportgen_train(
    dataset: Input[Dataset], generator: Output[Model], metrics: Output[Metrics],
    encoder: Input[Model] = None,  # kfp's spelling of an optional input artifact
    corpus_url: str = "", target: str = "findings", image_encoder: str = "resnet18", image_size: int = 96,
    decoder: str = "gpt2_tiny", projector: str = "mlp", pretrain_steps: int = 200, max_steps: int = 300,
    batch_size: int = 16, seed: int = 0,
) -> None:
    """Train a report generator on ``dataset``'s images with reports (``target`` section).

    ``encoder``: an rfm model directory whose image encoder is used, frozen, at its training resolution (e.g. the
    pipeline's CLIP model; ``image_encoder`` and ``image_size`` then come from it); None trains ``image_encoder``
    from scratch at ``image_size``. ``corpus_url``: a JSONL report corpus (e.g. the IU reports) on
    which the tokenizer is trained and the decoder pretrained first; "" uses the dataset's own training reports.
    """
    import json
    import os
    import shutil
    import tempfile

    from rfm_data.io import read_parquet
    from rfm_reportgen.config import GeneratorConfig, Target
    from rfm_reportgen.training import GeneratorTrainConfig, PretrainConfig, pretrain_decoder, train_generator
    from rfm_reportgen.training import with_decoder as use_decoder

    scratch = tempfile.TemporaryDirectory(prefix="rfm-reportgen-")  # removed when the step ends
    work = scratch.name
    try:
        if not corpus_url:  # the tokenizer and decoder learn from the dataset's own training reports
            rows = read_parquet(f"{dataset.path}/manifest.parquet",
                                columns=["split", "status", "report_findings", "report_impression"]).to_pylist()
            corpus_url = os.path.join(work, "corpus.jsonl")
            with open(corpus_url, "w") as f:
                f.writelines(json.dumps({"findings": r["report_findings"], "impression": r["report_impression"]}) + "\n"
                             for r in rows if r["split"] == "train" and r["status"] == "accepted")
        config = GeneratorConfig(image_encoder=image_encoder, image_size=image_size, projector=projector,
                                 decoder=decoder, target=Target(target),
                                 encoder_weights=encoder.path if encoder else None, freeze_encoder=encoder is not None)
        decoder_dir, _ = pretrain_decoder(PretrainConfig(corpus=corpus_url, output_dir=os.path.join(work, "lm"),
                                                         target=config.target, decoder=decoder,
                                                         max_steps=pretrain_steps, batch_size=batch_size, seed=seed))
        config = use_decoder(config, decoder_dir)
        model_dir, result = train_generator(GeneratorTrainConfig(dataset=dataset.path, output_dir=work,
                                                                 generator=config, batch_size=batch_size,
                                                                 max_steps=max_steps, seed=seed))
        shutil.copytree(model_dir, generator.path)
    finally:
        scratch.cleanup()
    for name, value in {"final_loss": result.last_loss, "steps": result.step, "flops": result.counters.flops,
                        "seconds": result.counters.wall_s}.items():
        metrics.log_metric(name, value)
    generator.metadata.update(target=target, decoder=decoder)


@dsl.component(base_image=image("rfm-reportgen"), install_kfp_package=False)  # type: ignore[untyped-decorator]
def reportgen_evaluate(
    generator: Input[Model], dataset: Input[Dataset], scores: Output[Artifact], report: Output[Markdown],
    summary: Output[Metrics],
    baseline: Input[Model] = None,  # kfp's spelling of an optional input artifact
    split: str = "test", n_boot: int = 1000, seed: int = 0,
) -> None:
    """Generate reports for ``split`` ("" = every sample) and score them (BLEU-1..4, ROUGE-L, METEOR, CIDEr-D,
    clinical F1, with patient-level CIs).

    ``baseline``: a CLIP model directory; its nearest-training-report retrieval is scored beside the generator,
    with paired differences.
    """
    import math
    import shutil

    from rfm_reportgen.config import Target
    from rfm_reportgen.predict import generate_reports, retrieve_reports
    from rfm_reportgen.report import evaluate, write_evaluation
    from rfm_reportgen.scoring import ScoreConfig

    generated = generate_reports(generator.path, dataset.path, split=split or None)
    systems = [generated]
    if baseline is not None:
        target = Target(generated[0].target) if generated else Target.FINDINGS
        systems.insert(0, retrieve_reports(baseline.path, dataset.path, target=target, split=split or None))
    evaluation = evaluate(systems, ScoreConfig(n_boot=n_boot, seed=seed))
    files = write_evaluation(evaluation, scores.path)
    shutil.copyfile(files["markdown"], report.path)
    for result in evaluation.results:
        for metric, estimate in result.metrics.items():
            if math.isfinite(estimate.value):
                summary.log_metric(f"{result.system}.{metric}", estimate.value)

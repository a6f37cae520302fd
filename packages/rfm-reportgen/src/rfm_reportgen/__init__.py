"""rfm-reportgen: radiology report generation and its NLG / clinical-efficacy evaluation.

Modules: ``config`` (GeneratorConfig, GenerationConfig, Target), ``model`` (projector / decoder registries,
ReportGenerator), ``export`` (build / save / load), ``training`` (decoder pretraining, generator training),
``predict`` (generation, retrieval baseline, predictions tables), ``scoring`` / ``report`` (metrics with
bootstrap intervals, side-by-side evaluation), ``cli`` (``rfm-reportgen``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rfm-reportgen")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]

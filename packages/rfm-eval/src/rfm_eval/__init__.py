"""rfm-eval: zero-shot, retrieval, probes, segmentation, bootstrap CIs and data-scaling analysis."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rfm-eval")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]

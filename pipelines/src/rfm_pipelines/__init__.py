"""rfm-pipelines: Kubeflow components and pipelines composing rfm, and the rfm CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rfm-pipelines")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]

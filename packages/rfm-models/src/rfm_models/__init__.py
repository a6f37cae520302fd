"""rfm-models: image/text encoders, CLIP / UniCL / MUST / DINOv2 objectives and one compute-accounted trainer."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rfm-models")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]

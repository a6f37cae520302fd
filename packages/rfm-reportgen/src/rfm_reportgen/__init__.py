"""rfm-reportgen: radiology report generation and its NLG / clinical-efficacy evaluation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rfm-reportgen")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]

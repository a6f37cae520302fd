"""Container images of the rfm packages, named in one place.

Components are built on the image of the package they call (``ghcr.io/rfm-project/rfm-data:0.1.0``), so the
image tag is the package version: a pipeline compiled by rfm-pipelines 0.1.0 runs the 0.1.0 libraries.
Clusters that mirror images elsewhere set ``RFM_IMAGE_REGISTRY`` (and, for a patched build, ``RFM_IMAGE_TAG``)
*before* importing :mod:`rfm_pipelines.components`: ``base_image`` is fixed when a component is defined.
"""

from __future__ import annotations

import os

from rfm_pipelines import __version__

DEFAULT_REGISTRY = "ghcr.io/rfm-project"
REGISTRY_ENV = "RFM_IMAGE_REGISTRY"
TAG_ENV = "RFM_IMAGE_TAG"
PACKAGES = ("rfm-data", "rfm-curation", "rfm-models", "rfm-eval", "rfm-reportgen", "rfm-pipelines")


def image_tag() -> str:
    """The tag every rfm image carries: ``RFM_IMAGE_TAG`` or the (shared) package version."""
    tag = os.environ.get(TAG_ENV) or __version__
    # A source tree without installed metadata reports "0+unknown", which is not a valid image tag.
    return tag.replace("+", "-")


def image(package: str) -> str:
    """Full image reference of an rfm package, e.g. ``image("rfm-data")`` → ``ghcr.io/rfm-project/rfm-data:0.1.0``.

    Raises:
        KeyError: for a name that is not an rfm package (listing the known ones).
    """
    if package not in PACKAGES:
        raise KeyError(f"unknown rfm image {package!r}; known: {', '.join(PACKAGES)}")
    registry = os.environ.get(REGISTRY_ENV, DEFAULT_REGISTRY).rstrip("/")
    return f"{registry}/{package}:{image_tag()}"

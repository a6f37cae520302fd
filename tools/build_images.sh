#!/usr/bin/env bash
# Build the rfm container images (images/Dockerfile.<package>), tagged with the shared package version:
#   bash tools/build_images.sh                 # all images, with docker (or podman when docker is absent)
#   bash tools/build_images.sh rfm-data        # one image
#   RFM_IMAGE_REGISTRY=registry.example.org/rfm ENGINE=podman bash tools/build_images.sh
# Rootless podman / CI without a container daemon: ENGINE=podman PODMAN_ISOLATION=chroot builds with
# `--isolation chroot` (no user namespaces or runc needed). The registry and tag must match what the pipelines
# expect (RFM_IMAGE_REGISTRY / RFM_IMAGE_TAG, see rfm_pipelines.images).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pipelines/pyproject.toml | head -1)"
TAG="${RFM_IMAGE_TAG:-$VERSION}"
REGISTRY="${RFM_IMAGE_REGISTRY:-ghcr.io/rfm-project}"
ENGINE="${ENGINE:-$(command -v docker >/dev/null && echo docker || echo podman)}"
ISOLATION=()
[[ "$ENGINE" == podman && -n "${PODMAN_ISOLATION:-}" ]] && ISOLATION=(--isolation "$PODMAN_ISOLATION")

IMAGES=("$@")
[[ ${#IMAGES[@]} -eq 0 ]] && IMAGES=(rfm-data rfm-curation rfm-models rfm-eval rfm-reportgen rfm-pipelines)
for name in "${IMAGES[@]}"; do
  file="images/Dockerfile.$name"
  [[ -f "$file" ]] || { echo "no $file; known: $(ls images | sed 's/Dockerfile.//' | tr '\n' ' ')" >&2; exit 2; }
  echo "== $ENGINE build $REGISTRY/$name:$TAG"
  "$ENGINE" build "${ISOLATION[@]}" --file "$file" --build-arg "VERSION=$VERSION" --tag "$REGISTRY/$name:$TAG" .
done

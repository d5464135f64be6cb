#!/usr/bin/env bash
# Build the app for linux/amd64 and linux/arm64 and push one multi-platform image.
# Safe to run again and again: the builder is created only when it is missing.
set -euo pipefail
cd "$(dirname "$0")"

IMAGE="${IMAGE:-127.0.0.1:5000/07-challenge/hello:latest}"
PLATFORMS="linux/amd64,linux/arm64"
# The course engine's default builder (docker driver + containerd image store) builds both
# platforms. With the classic image store, run BUILDER=multiplatform ./build.sh instead.
BUILDER="${BUILDER:-default}"

docker buildx inspect "$BUILDER" >/dev/null 2>&1 ||
  docker buildx create --name "$BUILDER" --driver docker-container

docker buildx build \
  --builder "$BUILDER" \
  --platform "$PLATFORMS" \
  --provenance=false \
  --tag "$IMAGE" \
  --push \
  .

docker buildx imagetools inspect "$IMAGE"

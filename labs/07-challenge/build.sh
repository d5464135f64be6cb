#!/usr/bin/env bash
# Build the app's image and publish it.
set -euo pipefail
cd "$(dirname "$0")"

IMAGE="${IMAGE:-127.0.0.1:5000/07-challenge/hello:latest}"

docker build -t "$IMAGE" .

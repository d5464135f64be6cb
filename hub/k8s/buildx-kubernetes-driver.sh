#!/usr/bin/env bash
# The other Kubernetes path: buildx's `kubernetes` driver starts BuildKit pods itself (one
# deployment per node; arm64 work on arm64 nodes). UNTESTED HERE (no cluster): the learner's
# server needs a kubeconfig allowed to manage deployments in the `buildkit` namespace.
set -euo pipefail
docker buildx inspect class-k8s >/dev/null 2>&1 || {
  docker buildx create --name class-k8s --driver kubernetes \
    --driver-opt namespace=buildkit,rootless=true,nodeselector=kubernetes.io/arch=amd64 \
    --platform linux/amd64 --node class-k8s-amd64
  docker buildx create --name class-k8s --append --driver kubernetes \
    --driver-opt namespace=buildkit,rootless=true,nodeselector=kubernetes.io/arch=arm64 \
    --platform linux/arm64 --node class-k8s-arm64
}
docker buildx inspect --bootstrap class-k8s

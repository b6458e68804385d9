#!/usr/bin/env bash
# `slolab k8s render` output against the Kubernetes API's schemas, offline
# (kubernetes-validate ships them), for the Kubernetes version whose typed structs
# render it: the `v1_XX` feature of k8s-openapi in Cargo.toml. Invalid output
# fails; only a kubernetes-validate that pip cannot install is skipped, and said.
set -euo pipefail
cd "$(dirname "$0")/.."

minor=$(sed -n 's/^k8s-openapi = .*"v1_\([0-9]*\)".*/\1/p' Cargo.toml)
if [ -z "$minor" ]; then
    echo "ci/validate-k8s.sh: no k8s-openapi v1_XX feature found in Cargo.toml" >&2
    exit 1
fi
version="1.$minor.0"

if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "ci/validate-k8s.sh: installing kubernetes-validate from PyPI" >&2
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate >&2 || true
    hash -r
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "ci/validate-k8s.sh: SKIPPED: pip could not install kubernetes-validate; the manifests were not checked against the Kubernetes $version schemas" >&2
    exit 0
fi

manifests=$(mktemp -d)
trap 'rm -rf "$manifests"' EXIT
cargo run --locked --quiet -- k8s render profiles/challenge-01.toml --shards 3 \
    --start-at 2026-01-01T12:00:00Z --namespace slolab -o "$manifests" 2>/dev/null
cargo run --locked --quiet -- k8s render profiles/challenge-01.toml --shards 3 \
    --start-at 2026-01-01T12:00:00Z --spread required -o "$manifests/required" 2>/dev/null
echo "ci/validate-k8s.sh: kubernetes-validate --strict -k $version" >&2
kubernetes-validate --strict --kubernetes-version "$version" "$manifests"/*.yaml "$manifests"/required/*.yaml

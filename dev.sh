#!/usr/bin/env bash
# The two commands a newcomer needs, on a fresh Debian 12 machine or any machine with Docker:
#   ./dev.sh demo   provision, build and push the images, run the training pipeline (then the
#                   monitoring loop) locally on Docker against an embedded S3 server
#   ./dev.sh test   provision, then run the test suite (the exact command CI runs)
# Provisioning (scripts/provision.sh) is idempotent: what already answers is left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"
STATE=${MLOPS_STATE_DIR:-/var/tmp/mlops-components}
REGISTRY=${MLOPS_REGISTRY:-127.0.0.1:5000}
PY="$ROOT/.venv/bin/python"
export MLOPS_BASE_IMAGE=${MLOPS_BASE_IMAGE:-$REGISTRY/mlops-components/python-base:3.11-bookworm}
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:${MLOPS_S3_PORT:-8333}}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-mlops-demo} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-mlops-demo-secret}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

case "${1:-}" in
  demo)
    bash scripts/provision.sh all
    "$PY" build.py --registry "$REGISTRY" --base-image "$MLOPS_BASE_IMAGE" --push --pin-dir "$STATE/specs"
    bash scripts/demo.sh "$STATE/specs"
    ;;
  test)
    bash scripts/provision.sh all
    "$PY" -m pytest -q "${@:2}"
    ;;
  *)
    echo "usage: ./dev.sh demo | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac

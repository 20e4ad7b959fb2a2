#!/usr/bin/env bash
# The main job, end to end on the built images (run by ./dev.sh demo after provisioning and build.py):
#   1. train: the training pipeline (load → split → train → evaluate → deploy gate) under kfp.local
#   2. watch: two production batches drawn by the make_batch image (docker run), one clean, one drifted
#   3. monitor: the monitoring pipeline on each; the drifted one triggers retraining, the clean one not
# Usage: scripts/demo.sh SPECS_DIR   (the folder written by build.py --push --pin-dir)
set -euo pipefail
SPECS=${1:?usage: scripts/demo.sh SPECS_DIR}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY="$ROOT/.venv/bin/python"
BUCKET=${MLOPS_DEMO_BUCKET:-mlops-demo}
PREFIX="s3://$BUCKET/$(date -u +%Y%m%dT%H%M%SZ)"
REGISTRY="$PREFIX/registry"
DATASET=wine
step_image() { sed -n 's/^ *image: *//p' "$SPECS/$1/component.yaml"; }
banner() { printf '\n=== %s\n' "$*"; }

"$PY" - "$BUCKET" <<'PY'
import sys, boto3
s3 = boto3.client("s3")
try:  # some servers (SeaweedFS) list only the caller's own buckets: create and accept "already there"
    s3.create_bucket(Bucket=sys.argv[1])
except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
    pass
PY

banner "1. training pipeline on $DATASET (kfp.local, images from $SPECS) → $PREFIX"
"$PY" pipelines/training.py run-local --specs-dir "$SPECS" --dataset "$DATASET" \
  --storage-root "$PREFIX/runs" --registry-uri "$REGISTRY"

banner "2. production batches, drawn standalone with docker run $(step_image make_batch)"
make_batch() {
  docker run --rm --network host -e AWS_ENDPOINT_URL -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
    -e AWS_DEFAULT_REGION "$(step_image make_batch)" --dataset "$DATASET" --n-rows 300 "$@"
}
make_batch --random-state 11 --output-dir "$PREFIX/batches/0001-clean"
# A drifted feed: seven of the thirteen features moved (units, calibration, a new supplier...).
make_batch --random-state 12 --shift "alcohol:mean=+1.5; malic_acid:mean=+1; ash:scale=2; magnesium:mean=-1; \
color_intensity:scale=2; hue:mean=-1; proline:mean=-1" \
  --output-dir "$PREFIX/batches/0002-drifted"

banner "3a. monitoring pipeline on the clean batch: expect no drift and no retraining"
"$PY" pipelines/monitoring.py run-local --specs-dir "$SPECS" --batch-uri "$PREFIX/batches/0001-clean/batch.parquet" \
  --storage-root "$PREFIX/runs" --registry-uri "$REGISTRY"

banner "3b. monitoring pipeline on the drifted batch: expect drift, retraining and a champion/challenger gate"
"$PY" pipelines/monitoring.py run-local --specs-dir "$SPECS" --batch-uri "$PREFIX/batches/0002-drifted/batch.parquet" \
  --storage-root "$PREFIX/runs" --registry-uri "$REGISTRY"

banner "registry $REGISTRY"
"$PY" - "$REGISTRY" <<'PY'
import sys
from mlops_runtime.registry import ModelRegistry
registry = ModelRegistry(sys.argv[1], "classifier")
for version in registry.versions():
    entry = registry.entry(version)
    print(f"version {version}: accuracy {entry.get('metrics', {}).get('accuracy')}  {entry.get('reason', '')}")
pointer = registry.production().pointer
print(f"production: version {pointer['version']}: {pointer['reason']}" if pointer else "production: none")
PY

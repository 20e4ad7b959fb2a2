#!/usr/bin/env bash
# The main job, end to end on the built images (run by ./dev.sh demo after provisioning and build.py):
#   1. train: the training pipeline (load → split → train → evaluate → deploy gate) under kfp.local
#   2. watch: two production batches drawn by the make_batch image (docker run), one clean, one drifted
#   3. monitor: the monitoring pipeline on each; the drifted one triggers retraining, the clean one not
#   4. serve: the serve image answers Open Inference Protocol v2 requests for the production model, logs
#      them to S3; join_labels turns the logged traffic into a batch and detect_drift checks it
#   5. production: the unlabeled pipeline claims two new unlabeled batches, checks and alerts on the drifted one
#   6. retrain: labels of a changed concept arrive; the degraded champion is replaced by a better challenger
# Usage: scripts/demo.sh SPECS_DIR   (the folder written by build.py --push --pin-dir)
set -euo pipefail
SPECS=${1:?usage: scripts/demo.sh SPECS_DIR}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY="$ROOT/.venv/bin/python"
BUCKET=${MLOPS_DEMO_BUCKET:-mlops-demo}
PREFIX="s3://$BUCKET/$(date -u +%Y%m%dT%H%M%SZ)"
REGISTRY="$PREFIX/registry"
DATASET=wine
SERVE_PORT=${MLOPS_DEMO_SERVE_PORT:-18080}
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

banner "1. training pipeline on $DATASET (kfp.local, images from $SPECS; artifacts under its pipeline root) → $REGISTRY"
"$PY" pipelines/training.py run-local --specs-dir "$SPECS" --dataset "$DATASET" --no-cache \
  --registry-uri "$REGISTRY"

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

banner "4. serving the production model: docker run $(step_image serve) (OIP v2 on 127.0.0.1:$SERVE_PORT)"
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
SERVER=$(docker run -d --network host -e AWS_ENDPOINT_URL -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
  -e AWS_DEFAULT_REGION "$(step_image serve)" --registry-uri "$REGISTRY" --model-name classifier \
  --host 127.0.0.1 --port "$SERVE_PORT" --log-uri "$PREFIX/predictions" --log-max-seconds 5)
trap 'docker rm -f "$SERVER" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 120); do curl -fsS "127.0.0.1:$SERVE_PORT/v2/health/ready" >/dev/null 2>&1 && break; sleep 1; done
"$PY" - "$PREFIX/batches/0002-drifted/batch.parquet" "$SERVE_PORT" <<'PY'
import json, sys, urllib.request
from mlops_runtime import tables
batch = tables.read_table(sys.argv[1]).drop(columns=["target"])
for start in range(0, len(batch), 50):  # 6 requests of 50 rows: the drifted feed, as production sends it
    rows = batch.iloc[start:start + 50]
    body = {"parameters": {"content_type": "pd"},
            "inputs": [{"name": c, "shape": [len(rows)], "datatype": "FP64", "data": rows[c].tolist()} for c in rows]}
    request = urllib.request.Request(f"http://127.0.0.1:{sys.argv[2]}/v2/models/classifier/infer",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(request, timeout=30))
    if start == 0:
        outputs = {o["name"]: o["data"][:5] for o in answer["outputs"]}
        print(f"model version {answer.get('parameters', {}).get('model_version')}, first outputs: {outputs}")
print(f"sent {len(batch)} rows in {-(-len(batch) // 50)} requests")
PY
docker stop "$SERVER" >/dev/null  # SIGTERM: the server writes what its log still buffers
docker run --rm --network host -e AWS_ENDPOINT_URL -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
  -e AWS_DEFAULT_REGION "$(step_image join_labels)" --log-uri "$PREFIX/predictions" --model-name classifier \
  --start "$STARTED" --end "$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:%SZ)" --output-dir "$PREFIX/served"
PRODUCTION=$("$PY" -c "from mlops_runtime.registry import ModelRegistry as R; import sys; \
print(R(sys.argv[1], 'classifier').production().pointer['version_uri'])" "$REGISTRY")
banner "4b. detect_drift on the served traffic against production ($PRODUCTION), with prediction drift"
docker run --rm --network host -e AWS_ENDPOINT_URL -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
  -e AWS_DEFAULT_REGION "$(step_image detect_drift)" --reference-profile-uri "$PRODUCTION/reference_profile.json" \
  --model-uri "$PRODUCTION/model.skops" --current-uri "$PREFIX/served/batch.parquet" \
  --output-dir "$PREFIX/served-drift"

banner "5. production pipeline over unlabeled batches (every batch once; alerts recorded under the registry)"
make_batch --random-state 21 --with-labels false --output-dir "$PREFIX/unlabeled/2026-01-01T00"
make_batch --random-state 22 --with-labels false --shift "alcohol:mean=+1.5; malic_acid:mean=+1; ash:scale=2; \
magnesium:mean=-1; color_intensity:scale=2; hue:mean=-1; proline:mean=-1" --output-dir "$PREFIX/unlabeled/2026-01-01T01"
# No label-free estimate here: wine's test split (36 rows) is below the 50 labeled rows CBPE's calibration needs.
"$PY" pipelines/production.py run-local --specs-dir "$SPECS" --no-cache --batches-uri "$PREFIX/unlabeled" \
  --storage-root "$PREFIX/runs" --registry-uri "$REGISTRY" --estimate-performance false
"$PY" - "$REGISTRY" <<'PY'
import json, sys
from mlops_runtime import storage
for uri in storage.list_uris(f"{sys.argv[1]}/classifier/drift"):
    record = json.loads(storage.read_bytes(uri))
    print({k: record.get(k) for k in ("current_uri", "drift_detected", "drift_share", "data_quality_ok")})
PY

banner "6. labels arrive for a changed concept (each wine now carries the next class): the champion degrades; \
a challenger retrained on the newest batch is scored with it on a holdout neither trained on, and replaces it"
"$PY" - "$PREFIX/batches/0001-clean/batch.parquet" "$PREFIX/batches/0003-concept/batch.parquet" <<'PY'
import sys
from mlops_runtime import storage, tables
batch = tables.read_table(sys.argv[1]).sample(frac=1, random_state=0).reset_index(drop=True)
batch["target"] = (batch["target"] + 1) % 3  # the same features, the next label
storage.write_bytes(sys.argv[2], tables.table_bytes(batch))
PY
"$PY" pipelines/monitoring.py run-local --specs-dir "$SPECS" --batch-uri "$PREFIX/batches/0003-concept/batch.parquet" \
  --storage-root "$PREFIX/runs" --registry-uri "$REGISTRY" --window batches:1 --min-improvement 0.1

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

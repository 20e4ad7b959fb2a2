#!/usr/bin/env bash
# Creates benchmarks/.venv-mlserver for benchmarks/serve_benchmark.py: the serve image's locked packages
# (runtime lock + components/serve/requirements.lock, MLServer 1.7.1) plus mlserver-sklearn 1.7.1, so our
# server and MLServer's scikit-learn runtime run on the same interpreter and library versions.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
uv="${UV:-$repo/.venv/bin/uv}"
venv="$here/.venv-mlserver"
[[ -x "$venv/bin/python" ]] || "$uv" venv --quiet --python 3.11 "$venv"
"$uv" pip install --quiet --python "$venv/bin/python" --require-hashes \
  -r "$repo/components/mlops_runtime/requirements.lock" -r "$repo/components/serve/requirements.lock"
"$uv" pip install --quiet --python "$venv/bin/python" "mlserver-sklearn==1.7.1" \
  -c "$repo/components/serve/requirements.lock"
"$venv/bin/python" -c "import mlserver, mlserver_sklearn; print('mlserver', mlserver.__version__, 'in', '$venv')"

#!/usr/bin/env bash
# Creates benchmarks/.venv with Evidently, used only by the drift benchmark to compare against.
# (Evidently 0.7 needs pandas 2.) Evidently never enters the step images or the project's own .venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
if [[ ! -x "$here/.venv/bin/python" ]]; then
  "$python" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet "evidently==0.7.23" "pandas<3" "pyarrow>=15"
"$here/.venv/bin/python" -c "import evidently; print('evidently', evidently.__version__, 'in', '$here/.venv')"

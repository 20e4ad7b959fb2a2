#!/usr/bin/env bash
# Creates benchmarks/.venv-nannyml with NannyML 0.13.1, used only by cbpe_benchmark.py to compare against.
# NannyML 0.13.1 imports statsmodels without declaring it, so it is installed beside it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
if [[ ! -x "$here/.venv-nannyml/bin/python" ]]; then
  "$python" -m venv "$here/.venv-nannyml"
fi
"$here/.venv-nannyml/bin/python" -m pip install --quiet "nannyml==0.13.1" statsmodels "pyarrow>=15"
"$here/.venv-nannyml/bin/python" -c "import nannyml; print('nannyml', nannyml.__version__, 'in', '$here/.venv-nannyml')"

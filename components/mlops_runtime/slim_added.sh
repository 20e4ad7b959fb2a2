#!/bin/sh
# Slims what a step's own packages add to the runtime's venv, in the "extra" stage of a step Dockerfile
# (serve, export_onnx, render_serving): slim_added.sh NEW MODULE...  NEW lists the added paths (absolute, one
# a line); MODULE... are the packages the step imports. slim_venv.sh's rules, applied to the new files only:
# the runtime's own files are in the layer below and stay as they are.
set -eu
new=$1
shift
python=/opt/venv/bin/python

# The packages' test suites, C/C++ and Cython sources, headers and type stubs: never used at run time.
grep -E '/tests$' "$new" | tr '\n' '\0' | xargs -0 -r rm -rf
grep -E '\.(h|hpp|c|cc|cpp|pyx|pxd|pxi|pyi)$' "$new" | tr '\n' '\0' | xargs -0 -r rm -f

# Debug symbols of the packages' own shared objects; vendored libraries (*.libs/) stay as their wheels ship them.
grep -E '\.so(\.[0-9]+)*$' "$new" | grep -v '\.libs/' | while read -r lib; do
  if [ -f "$lib" ] && [ ! -L "$lib" ]; then strip --strip-unneeded "$lib"; fi
done

# The new modules the step imports become bytecode in place of their source (hash-checked under
# SOURCE_DATE_EPOCH); the rest keeps its source and no bytecode, compiled in memory if ever imported.
"$python" - "$@" >/tmp/imported-all <<'PY'
import importlib
import sys

for name in sys.argv[1:]:
    importlib.import_module(name)
print("\n".join(sorted({module.__file__ for module in list(sys.modules.values())
                        if (getattr(module, "__file__", None) or "").endswith(".py")})))
PY
grep -Fx -f "$new" /tmp/imported-all >/tmp/imported || true
"$python" -m compileall -q -b -i - </tmp/imported
tr '\n' '\0' </tmp/imported | xargs -0 -r rm --
rm /tmp/imported /tmp/imported-all

"$python" -c "import importlib, sys; [importlib.import_module(name) for name in sys.argv[1:]]" "$@"

#!/bin/sh
# Slims the locked venv in the runtime's build stage (Dockerfile, stage "deps"): slim_venv.sh VENV.
# Removes only what no step can load, and fails the build if an import the steps make breaks.
set -eu
venv=$1
site=$venv/lib/python3.11/site-packages

# The packages' own test suites, C headers, Cython sources and type stubs: never used at run time.
find "$site" -depth -type d -name tests -exec rm -rf {} +
rm -rf "$site/pyarrow/include" "$site/pyarrow/src" "$site/numpy/_core/include"
find "$site" -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \
  -o -name '*.pyi' \) -delete

# Extension modules only the packages' own test suites load; build-time tools no step runs (numpy.distutils,
# scipy.special's table generators; not numpy.f2py, which `from numpy import *` imports); scipy.io.mmread's
# Matrix Market reader and scipy.stats.sampling's UNU.RAN wrapper, each loaded only by that one function
# (scipy.io and scipy.stats import without them); boto3's resource models (the runtime makes clients only).
rm -f "$site"/numpy/_core/_*_tests.cpython-*.so "$site"/numpy/_core/_simd.cpython-*.so \
  "$site"/scipy/_lib/_test_*.cpython-*.so "$site"/scipy/integrate/_test_*.cpython-*.so \
  "$site"/scipy/ndimage/_ctest.cpython-*.so "$site"/scipy/ndimage/_cytest.cpython-*.so \
  "$site"/scipy/special/_test_internal.cpython-*.so "$site"/pyarrow/_pyarrow_cpp_tests.cpython-*.so \
  "$site"/scipy/io/_fast_matrix_market/_fmm_core.cpython-*.so "$site"/scipy/stats/_unuran/unuran_wrapper.cpython-*.so
rm -rf "$site/numpy/distutils" "$site/numpy/_pyinstaller" "$site/numpy/random/_examples" \
  "$site/scipy/special/_precompute"
find "$site/boto3/data" -mindepth 1 -maxdepth 1 -not -name s3 -exec rm -rf {} +

# pyarrow's Arrow Flight RPC and S3 filesystem libraries: only pyarrow.flight and pyarrow.fs.S3FileSystem
# load them (no other library of the wheel links them; the runtime reaches S3 through boto3), and
# pyarrow.fs lists S3FileSystem as not built when _s3fs is absent. Substrait stays: libarrow_python links it.
rm -f "$site"/pyarrow/libarrow_flight.so* "$site"/pyarrow/libarrow_python_flight.so* \
  "$site"/pyarrow/_flight.cpython-*.so "$site"/pyarrow/flight.py \
  "$site"/pyarrow/libarrow_s3.so* "$site"/pyarrow/_s3fs.cpython-*.so
# botocore's API models of every AWS service but S3 and the ones its credential providers call
# (STS, SSO, SSO OIDC, sign-in): the runtime creates only S3 clients (mlops_runtime/storage.py).
for model in "$site"/botocore/data/*/; do
  case $(basename "$model") in s3 | sts | sso | sso-oidc | signin) ;; *) rm -rf "$model" ;; esac
done

# Wheels cannot hold symbolic links, so pyarrow ships each library under its soname and twice more
# (libX.so, libX.so.N.M.P): the copies become links to the soname file the extensions load.
for lib in "$site"/pyarrow/lib*.so*; do
  [ -L "$lib" ] && continue
  soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
  if [ -n "$soname" ] && [ "$(basename "$lib")" != "$soname" ] && cmp -s "$lib" "$site/pyarrow/$soname"; then
    ln -sf "$soname" "$lib"
  fi
done

# scipy's wheel vendors numpy's gfortran and quadmath under the same hashed names, byte for byte: the
# copies become links to numpy's (the loader maps that soname once anyway; no library's bytes change).
for lib in "$site"/scipy.libs/*; do
  if [ -f "$site/numpy.libs/${lib##*/}" ] && cmp -s "$lib" "$site/numpy.libs/${lib##*/}"; then
    ln -sf "../numpy.libs/${lib##*/}" "$lib"
  fi
done

# Debug symbols of the packages' own shared objects (symbols the dynamic linker needs stay). The
# vendored libraries (*.libs/, e.g. OpenBLAS) are left exactly as their wheels ship them.
find "$site" -type f -name '*.so*' -not -path '*.libs/*' -exec strip --strip-unneeded {} +

# The modules the steps import become bytecode in place of their source (foo.py -> foo.pyc, 33 MB less
# than shipping both): a library frame in a traceback shows its file and line, not the line's text. The
# rest keeps its source and no bytecode: the root filesystem is read-only at run time, so it is compiled
# in memory if ever imported. SOURCE_DATE_EPOCH makes bytecode hash-checked, not timestamped, so builds
# are reproducible. Doing real work also reaches lazy imports.
"$venv/bin/python" - >/tmp/imported <<'PY'
import sys
import tempfile
import boto3
import click  # noqa: F401
import numpy as np
import pandas as pd
import pyarrow.compute  # noqa: F401
import pyarrow.parquet as pq
import scipy.spatial.distance  # noqa: F401
import scipy.special  # noqa: F401
import scipy.stats
import skops.io
import sklearn.compose, sklearn.ensemble, sklearn.impute, sklearn.inspection, sklearn.isotonic  # noqa: E401,F401
import sklearn.linear_model, sklearn.metrics, sklearn.model_selection, sklearn.pipeline  # noqa: E401,F401
import sklearn.preprocessing  # noqa: F401

boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
frame = pd.DataFrame({"x": np.arange(40.0), "c": ["a", "b"] * 20, "y": [0, 1] * 20})
with tempfile.TemporaryDirectory() as folder:
    frame.to_parquet(f"{folder}/t.parquet")
    frame = pq.read_table(f"{folder}/t.parquet").to_pandas()
model = sklearn.ensemble.RandomForestClassifier(n_estimators=2, random_state=0).fit(frame[["x"]], frame["y"])
skops.io.loads(skops.io.dumps(model), trusted=skops.io.get_untrusted_types(data=skops.io.dumps(model)))
scipy.stats.ks_2samp(frame["x"], frame["x"] + 1)
site = next(path for path in sys.path if path.endswith("site-packages"))
print("\n".join(sorted({m.__file__ for m in list(sys.modules.values())
                        if (getattr(m, "__file__", None) or "").startswith(site) and m.__file__.endswith(".py")})))
PY
"$venv/bin/python" -m compileall -q -b -i - </tmp/imported
xargs rm -- </tmp/imported
rm /tmp/imported

"$venv/bin/python" -c "import boto3, click, numpy, pandas, pyarrow.parquet, pyarrow.compute, pyarrow.fs, \
scipy.stats, sklearn.ensemble, skops.io"

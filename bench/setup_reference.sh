#!/usr/bin/env bash
# Builds bench/_work/refvenv: the reference package `cell2sentence` (PyPI, CC BY-NC-ND 4.0) as a comparator
# for the benchmarks, with c2s-agent installed beside it so both run in one process. It is never a dependency
# of c2s-agent and none of its code is copied. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/_work/refvenv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import cell2sentence, c2s_agent, peft" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q torch==2.13.0
  # cell2sentence pins nothing; its declared extras (jupyterlab, sphinx, plotnine) are not needed to run it.
  "$venv/bin/pip" install -q --no-deps cell2sentence==1.2.0
  "$venv/bin/pip" install -q transformers datasets accelerate anndata scanpy numpy pandas scipy tqdm scikit-learn \
      numba pluggy pydantic pydantic-settings psutil plotnine peft
  "$venv/bin/pip" install -q --no-deps -e "$here/.."
fi
echo "$venv/bin/python"

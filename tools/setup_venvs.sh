#!/usr/bin/env bash
# Creates the git-ignored Python environments the fixture generators in tools/ run in. Only
# needed to regenerate fixtures; building and testing streamdiff needs no Python.
#   tools/.venv      torch (CPU use), diffusers, transformers: the references for models
#   tools/.venv-tok  transformers 4.46 (its slow CLIPTokenizer is the tokenizer reference)
#   tools/.venv-sd   the original streamdiffusion 0.1.1 with the versions it pins; torch is
#                    shared with tools/.venv through a .pth file (it is ~GiB-sized)
set -euo pipefail
cd "$(dirname "$0")"
py=${PYTHON:-python3}
[ -d .venv ] || $py -m venv .venv
.venv/bin/pip install -q torch==2.15.0 diffusers==0.42.1 transformers==5.24.0 safetensors \
  numpy pillow peft==0.21.2
[ -d .venv-tok ] || $py -m venv .venv-tok
.venv-tok/bin/pip install -q transformers==4.46.3 regex
[ -d .venv-sd ] || $py -m venv .venv-sd
.venv-sd/bin/pip install -q --no-deps streamdiffusion==0.1.1
.venv-sd/bin/pip install -q diffusers==0.24.0 "huggingface_hub<0.26" transformers==4.38.2 \
  "numpy<2" accelerate==0.25.0 fire omegaconf safetensors pillow
site=$(.venv-sd/bin/python -c "import site; print(site.getsitepackages()[0])")
torch_site=$(.venv/bin/python -c "import site; print(site.getsitepackages()[0])")
echo "$torch_site" > "$site/zz_torch_from_main_venv.pth"
echo "tools/.venv, tools/.venv-tok and tools/.venv-sd are ready"

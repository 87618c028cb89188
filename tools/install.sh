#!/usr/bin/env bash
# Set up (or refresh) the virtual env for gaussdiff. Used by `make course` and `make test`.
#   tools/install.sh VENV EXTRAS [--browser]
# torch: kept if the env (or Colab) already has one; else a CUDA build when an NVIDIA GPU is present, else the
# CPU build (TORCH_SPEC, default torch==2.13.0) from PyTorch's CPU wheel index when it answers, else from the
# default index (this project's machines carry a CPU wheel there); tools/torch_index.py decides, TORCH_PIP_ARGS wins.
set -euo pipefail
venv=${1:-.venv}; extras=${2:-course}; browser=${3:-}
py="$venv/bin/python"
[ -x "$py" ] || python3 -m venv "$venv"
want_vision=""; vision_args=""  # torchvision only where torch came from an index that carries a matching build
if ! "$py" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then "$py" -m pip install -q torch; want_vision=1
  else
    args=$(python3 "$(dirname "$0")/torch_index.py")
    if "$py" -m pip install -q $args "${TORCH_SPEC:-torch==2.13.0}"; then
      if [ -n "$args" ]; then want_vision=1; vision_args="$args"; fi
    else
      [ -n "$args" ] && echo "install: torch via '$args' failed; trying the default index" >&2 &&
      "$py" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"; fi
  fi
fi
# torchvision (full MNIST for the gpu profile) beside torch, from the same source; kept only if it imports
if [ -n "$want_vision" ] && ! "$py" -c "import torchvision" 2>/dev/null; then
  tv=$(python3 "$(dirname "$0")/torch_index.py" --torchvision "$("$py" -c 'import torch; print(torch.__version__)')")
  if ! { "$py" -m pip install -q $vision_args "$tv" && "$py" -c "import torchvision" 2>/dev/null; }; then
    "$py" -m pip uninstall -q -y torchvision >/dev/null 2>&1 || true
    echo "install: $tv could not be installed beside torch; the gpu profile then trains on the 4,000 offline MNIST digits" >&2
  fi
fi
"$py" -m pip install -q -e ".[$extras]"
# Sprites come from a Debian package (crawl-tiles-data); apt needs its package lists once.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if ! apt-cache show crawl-tiles-data >/dev/null 2>&1; then apt-get update -qq || true; fi
  if [ "$browser" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null || echo "warning: chromium not installed; browser test will skip" >&2
  fi
fi

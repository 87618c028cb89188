#!/usr/bin/env python3
"""Print the pip arguments that install torch on this machine (used by tools/install.sh).

With an NVIDIA GPU: nothing extra (PyPI's default torch is the CUDA build). Without one: PyTorch's CPU wheel index
when it answers, so that a laptop does not download the multi-GB CUDA build; when it does not answer (offline, or a
machine that reaches only package registries), nothing extra, with a message on stderr saying what that means.
TORCH_PIP_ARGS, when set, wins over both."""
from __future__ import annotations
import os, shutil, sys, urllib.request

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def index_answers(url: str = CPU_INDEX, timeout: float = 5.0) -> bool:
    "True when the index's torch page can be fetched within `timeout` seconds."
    try:
        with urllib.request.urlopen(f"{url}/torch/", timeout=timeout) as r: return r.status == 200
    except Exception: return False


def torch_pip_args(env=os.environ, gpu=has_nvidia_gpu, answers=index_answers, warn=lambda m: print(m, file=sys.stderr)) -> str:
    "The extra pip arguments for installing torch (a string, possibly empty)."
    if "TORCH_PIP_ARGS" in env: return env["TORCH_PIP_ARGS"]
    if gpu(): return ""
    if answers(): return f"--index-url {CPU_INDEX}"
    warn(f"install: PyTorch's CPU wheel index ({CPU_INDEX}) did not answer; installing torch from the default index. "
         "Where no CPU wheel is at hand locally that is the multi-GB CUDA build: set TORCH_PIP_ARGS to a CPU wheel "
         "index or --find-links folder to avoid it.")
    return ""


if __name__ == "__main__":
    print(torch_pip_args())

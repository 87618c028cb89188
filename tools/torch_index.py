#!/usr/bin/env python3
"""Print the pip arguments that install torch on this machine (used by tools/install.sh).

With an NVIDIA GPU: nothing extra (PyPI's default torch is the CUDA build). Without one: PyTorch's CPU wheel index
when it answers, so that a laptop does not download the multi-GB CUDA build; when it does not answer (offline, or a
machine that reaches only package registries), nothing extra, with a message on stderr saying what that means.
TORCH_PIP_ARGS, when set, wins over both. `torch_index.py --torchvision 2.13.0` prints the torchvision release
built against that torch (the gpu profile's full MNIST downloads with it; install.sh adds it from the same index)."""
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


def torchvision_spec(torch_version: str) -> str:
    "The torchvision release built for a torch 2.x release: 2.x.y pairs with 0.(x+15).y (2.13.0 -> 0.28.0)."
    parts = torch_version.split("+")[0].split(".")
    if len(parts) < 2 or parts[0] != "2" or not parts[1].isdigit():
        raise ValueError(f"no torchvision pairing known for torch {torch_version!r} (2.x releases only)")
    patch = parts[2] if len(parts) > 2 and parts[2].isdigit() else "0"
    return f"torchvision==0.{int(parts[1]) + 15}.{patch}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--torchvision"]: print(torchvision_spec(sys.argv[2]))
    else: print(torch_pip_args())

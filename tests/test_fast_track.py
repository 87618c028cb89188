"""The fast track's hand-written pieces (nbs/00_fast_track.ipynb) equal the library's, and its smoke run's outputs.

The notebook asserts the same on its own model; here its cells are run on their own against the library with a
fresh model, so a change to either side that breaks the equality fails here in a second, without the notebook."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import NBS

from gaussdiff.diffusion import Schedule
from gaussdiff.sample import ddpm_step, model_output, sample
from gaussdiff.transformer import GaussianTransformer

NB = NBS / "00_fast_track.ipynb"
T, N = 200, 24


def cell_defining(name: str) -> str:
    "Source of the notebook's code cell that defines `name`."
    cells = json.loads(NB.read_text())["cells"]
    found = [c["source"] for c in cells if c["cell_type"] == "code" and f"def {name}(" in "".join(c["source"])]
    assert len(found) == 1, f"{NB.name} should define {name} in exactly one cell"
    return "".join(found[0])


@pytest.fixture(scope="module")
def pieces(one_torch_thread):
    "The notebook's loss_on, guided_eps and my_ddpm_step, with the globals they read, and a small untrained model."
    torch.manual_seed(0)
    schedule = Schedule(T, "cosine")
    ns = dict(torch=torch, F=F, T=T, NO_LABEL=10, device=torch.device("cpu"), abar=schedule.alphas_cumprod,
              lo=torch.full((8,), -2.5), hi=torch.full((8,), 2.5), P=type("P", (), {"n_splats": N}))
    src = cell_defining("loss_on")
    exec(src[src.index("def loss_on("):], ns)  # the function only: the cell's imports and schedule are given above
    exec(cell_defining("my_ddpm_step"), ns)
    exec(cell_defining("my_sample"), ns)
    model = GaussianTransformer.smoke(T=T, n_classes=10).eval()
    with torch.no_grad():  # a non-trivial output: the zero-initialised parts would make every check trivially equal
        for p in model.parameters(): p.add_(0.05 * torch.randn_like(p))
    return ns, schedule, model


def test_loss_equals_schedule_loss(pieces):
    ns, schedule, model = pieces
    x0, y = torch.randn(6, N, 8), torch.tensor([0, 3, 9, 10, 5, 1])
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, T, (6,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    mine = ns["loss_on"](model, x0, y, t, noise)
    library = schedule.loss(model, x0, torch.Generator().manual_seed(3), labels=y)
    assert torch.allclose(mine, library, atol=1e-6)
    assert not torch.allclose(mine, ns["loss_on"](model, x0, y, t, torch.randn_like(noise)))  # the check can fail


@pytest.mark.parametrize("t", [199, 120, 1, 0])
def test_sampler_step_equals_ddpm_step(pieces, t):
    ns, schedule, model = pieces
    x, noise, y = 2 * torch.randn(3, N, 8), torch.randn(3, N, 8), torch.tensor([2, 7, 4])
    tt = torch.full((3,), t)
    with torch.no_grad():
        eps = ns["guided_eps"](model, x, tt, y, 2.0)
        assert torch.allclose(eps, model_output(model, x, tt, y, 2.0), atol=1e-6)
        mine = ns["my_ddpm_step"](x, eps, t, noise if t > 0 else None)
        lib = ddpm_step(x, eps, t, t - 1, schedule.alphas_cumprod, noise, clip=(ns["lo"], ns["hi"]))
    for a, b in zip(mine, lib): assert torch.allclose(a, b, atol=1e-5)


def test_my_sample_equals_library_sample(pieces):
    ns, schedule, model = pieces
    y = torch.tensor([1, 8])
    mine, guesses = ns["my_sample"](model, y, 2.0, torch.Generator().manual_seed(5))
    lib = sample(model, schedule, mine.shape, sampler="ddpm", generator=torch.Generator().manual_seed(5),
                 clip=(ns["lo"], ns["hi"]), labels=y, guidance=2.0)
    assert torch.allclose(mine, lib, atol=1e-4)
    assert set(guesses) == set(ns["STRIP_T"])
    assert torch.allclose(guesses[0], mine, atol=1e-5)  # the last clean guess is the sample


def check_smoke_outputs(out_dir, profile_settings=None):
    "What the fast track's run writes under out_dir (called by tests/test_notebooks.py after its smoke run)."
    with np.load(out_dir / "samples.npz", allow_pickle=False) as f:
        assert f.files == ["arr_0"]
        arr = f["arr_0"]
    results = json.loads((out_dir / "results" / "00_fast_track.json").read_text())
    assert arr.dtype == np.uint8 and arr.shape == (results["n_samples"], 28, 28, 1)
    assert arr.max() > 0
    for name in ("samples", "strip", "loss"): assert (out_dir / "figures" / f"00_fast_track_{name}.png").exists()
    assert 0 <= results["confident"] <= 1 and results["minutes"] > 0

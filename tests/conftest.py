import os, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"

# Tests share the checkout's data/ caches (MNIST, sprites, small GIR fits) so notebooks do not refit per test.
os.environ.setdefault("GAUSSDIFF_DATA", str(ROOT / "data"))


@pytest.fixture(scope="module")
def one_torch_thread():
    "Small tensors: one thread is as fast, and immune to OpenMP stalls when the machine is shared (pytest -n 2)."
    import torch
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tmp_data(tmp_path, monkeypatch):
    "An empty, private cache folder for tests that write or corrupt caches."
    monkeypatch.setenv("GAUSSDIFF_DATA", str(tmp_path))
    return tmp_path


@pytest.fixture
def interrupt_fit(monkeypatch):
    "`interrupt_fit(at=k)`: the encoder's fitter raises KeyboardInterrupt at its k-th call (an interrupted encode); returns the calls' batch sizes."
    import gaussdiff.cache as cache
    def arm(at: int) -> list[int]:
        real, calls = cache.fit_splats, []
        def fit(x, *a, **k):
            calls.append(len(x))
            if len(calls) == at: raise KeyboardInterrupt
            return real(x, *a, **k)
        monkeypatch.setattr(cache, "fit_splats", fit)
        return calls
    return arm


def pytest_configure(config):
    # tst_flags in settings.ini name the same flags for notebook cells
    config.addinivalue_line("markers", "slow: takes tens of seconds (e.g. the real-browser test); still runs in CI")
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped where none is available")

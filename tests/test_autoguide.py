"Chapter 09e: autoguidance, a denoiser guided by an earlier snapshot of its own run."

import pytest
import torch
import torch.nn as nn

from gaussdiff.autoguide import AutoGuided, load_autoguided
from gaussdiff.checkpoint import DataInfo
from gaussdiff.diffusion import Schedule
from gaussdiff.layers import TinyDenoiser
from gaussdiff.sample import SAMPLERS, sample
from gaussdiff.train import TrainConfig, train
from gaussdiff.transformer import GaussianTransformer


class Counting(nn.Module):
    "A denoiser that returns a constant and counts its calls (and the labels it was given)."
    def __init__(self, value, n_classes=0):
        super().__init__()
        self.value, self.n_classes, self.calls, self.labels = value, n_classes, 0, []
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, labels=None):
        self.calls += 1
        self.labels.append(labels)
        return torch.full_like(x, self.value)


def test_autoguided_is_the_good_model_at_weight_one_and_extrapolates_above():
    good, bad = Counting(3.0), Counting(1.0)
    x, t = torch.randn(2, 5, 8), torch.tensor([3, 7])
    assert torch.equal(AutoGuided(good, bad, 1)(x, t), torch.full_like(x, 3.0)) and bad.calls == 0  # one call
    assert torch.equal(AutoGuided(good, bad, 2.5)(x, t), torch.full_like(x, 1.0 + 2.5 * 2.0))
    assert torch.equal(AutoGuided(good, bad, 0)(x, t), torch.full_like(x, 1.0))   # weight 0: the weak model


def test_autoguided_passes_the_labels_to_both_models_and_checks_its_inputs():
    good, bad = Counting(1.0, n_classes=10), Counting(0.0, n_classes=10)
    y = torch.tensor([4, 10])
    AutoGuided(good, bad, 2)(torch.zeros(2, 3, 8), torch.tensor([1, 2]), y)
    assert good.labels[-1] is y and bad.labels[-1] is y and AutoGuided(good, bad).n_classes == 10
    for w in (-1, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="weight"): AutoGuided(good, bad, w)
    with pytest.raises(ValueError, match="same labels"): AutoGuided(good, Counting(0.0), 2)
    real = GaussianTransformer.smoke(n_classes=10).eval()
    x, t = torch.randn(2, 7, 8), torch.tensor([5, 90])
    with torch.no_grad():   # a real model guided by itself is itself, at any weight
        assert torch.allclose(AutoGuided(real, real, 3)(x, t, y), real(x, t, y), atol=1e-5)


class ByLabel(nn.Module):
    "A denoiser that returns `labelled` for a labelled row and `unlabelled` for the no-label class (n_classes)."
    def __init__(self, labelled, unlabelled, n_classes=10):
        super().__init__()
        self.labelled, self.unlabelled, self.n_classes = labelled, unlabelled, n_classes
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, labels):
        out = torch.where(labels == self.n_classes, self.unlabelled, self.labelled).float()
        return out.view(-1, *[1] * (x.dim() - 1)).expand_as(x)


def test_label_guidance_on_top_of_autoguidance_guides_the_autoguided_predictions():
    "09e's section 5: CFG at scale g over the two autoguided predictions, with and without the label."
    from gaussdiff.sample import model_output
    model = AutoGuided(ByLabel(3.0, 2.0), ByLabel(1.0, 0.5), 2.0)
    x, t, y = torch.zeros(2, 5, 8), torch.tensor([3, 7]), torch.tensor([4, 9])
    with_label, without = 1.0 + 2.0 * (3.0 - 1.0), 0.5 + 2.0 * (2.0 - 0.5)   # 5.0 and 3.5
    out = model_output(model, x, t, y, guidance=1.25)
    assert torch.allclose(out, torch.full_like(x, without + 1.25 * (with_label - without)))   # 5.375
    assert torch.allclose(model_output(model, x, t, y, guidance=1.0), torch.full_like(x, with_label))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    data = torch.randn(64, 8)
    cfg = TrainConfig(budget_steps=24, batch_size=8, lr=1e-3, warmup_steps=2, ema_decay=0.9, ckpt_every=12)
    train(TinyDenoiser((8,)), data, Schedule(T=50), cfg, space="toy", meta=DataInfo("toy", "toy"), out_dir=out,
          device="cpu", progress=False, snapshot_fracs=(0.25, 0.5, 1.0))
    return out / "ckpt.pt"


def test_load_autoguided_guides_the_final_weights_with_a_snapshot(run):
    model, schedule, _, info = load_autoguided(run, bad=0, weight=2.0)
    assert [s["step"] for s in info.snapshots] == [6, 12, 24] and model.weight == 2.0
    x, t = torch.randn(3, 8), torch.tensor([1, 20, 40])
    with torch.no_grad():
        good, bad = model.good(x, t), model.bad(x, t)
        assert not torch.allclose(good, bad) and torch.allclose(model(x, t), bad + 2 * (good - bad))
        mid, *_ = load_autoguided(run, bad=0, good=1, weight=1.0)   # the 50 % snapshot as the good model
        assert not torch.allclose(mid(x, t), good)
    g = lambda: torch.Generator().manual_seed(0)
    for sampler in SAMPLERS:   # every sampler takes it as a model
        out = sample(model, schedule, (4, 8), steps=10, sampler=sampler, generator=g())
        assert out.shape == (4, 8) and torch.isfinite(out).all()
    plain, *_ = load_autoguided(run, bad=0, weight=1.0)   # weight 1: the run's own samples, bit for bit
    assert torch.equal(sample(plain, schedule, (4, 8), steps=10, generator=g()),
                       sample(plain.good, schedule, (4, 8), steps=10, generator=g()))


def test_load_autoguided_names_the_snapshots_it_has(run):
    with pytest.raises(ValueError, match=r"keeps 3 snapshots \(steps \[6, 12, 24\]\)"): load_autoguided(run, bad=3)
    with pytest.raises(ValueError, match="earlier snapshot"): load_autoguided(run, bad=1, good=0)
    with pytest.raises(ValueError, match="earlier snapshot"): load_autoguided(run, bad=2)   # step 24 is the final


def _pixel_run(out):
    "A toy pixel run with two snapshots, decodable into 6×6 images (as test_sample's)."
    from gaussdiff.checkpoint import DataInfo
    meta = DataInfo("pixel", "toy", image_size=(6, 6), sample_shape=(1, 8, 8), x0_clip=1.0)
    train(TinyDenoiser(shape=(1, 8, 8), hidden=32, t_dim=16), torch.rand(32, 1, 8, 8) * 2 - 1, Schedule(T=20),
          TrainConfig(budget_steps=6), space="pixel", out_dir=out, meta=meta, device="cpu", progress=False,
          snapshot_fracs=(0.5, 1.0))
    return out / "ckpt.pt"


def test_autoguide_cli_writes_samples_for_eval_and_refuses_bad_input(tmp_path, capsys):
    import json
    import numpy as np
    from gaussdiff.autoguide import cli
    from gaussdiff.core import COMMANDS
    assert COMMANDS["autoguide"] == "gaussdiff.autoguide"
    ck = _pixel_run(tmp_path / "run")
    out = tmp_path / "s.npz"
    assert cli(["--ckpt", str(ck), "--weight", "3", "--n", "5", "--steps", "4", "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bad_step"] == 3 and report["weight"] == 3.0 and report["n"] == 5
    with np.load(out) as z: assert z["arr_0"].shape == (5, 6, 6, 1) and z["arr_0"].dtype == np.uint8
    assert cli(["--ckpt", str(ck), "--bad", "2", "--out", str(tmp_path / "t.png")]) == 2
    assert "keeps 2 snapshots" in capsys.readouterr().err
    assert cli(["--ckpt", str(ck), "--weight", "-1", "--out", str(tmp_path / "t.png")]) == 2
    assert "weight" in capsys.readouterr().err
    assert cli(["--ckpt", str(ck), "--out", str(out)]) == 2   # an existing file is kept unless --overwrite
    assert "--overwrite" in capsys.readouterr().err and out.exists()

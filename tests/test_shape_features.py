"Shape features (log size, anisotropy) for the GIR covariance: exact round trip, totality, decoding, and the recipe."
import math

import pytest
import torch

from gaussdiff.diffusion import (GIRNormalizer, SHAPE_V_LIMIT, decode_gir, from_shape_features, gir_to_splats,
                                 to_shape_features)
from gaussdiff.splats import covariance, make_splats, render


def _splats(seed=0):
    "Fitted-looking splats [3,40,8]: random sizes and angles, plus near-isotropic and very elongated ones."
    g = torch.Generator().manual_seed(seed)
    b, n = 3, 40
    mu = torch.rand(b, n, 2, generator=g)
    s1 = torch.rand(b, n, generator=g) * 0.1 + 2e-3
    ratio = torch.rand(b, n, generator=g) * 5 + 1
    ratio[:, :10] = 1 + torch.rand(b, 10, generator=g) * 1e-6        # near-isotropic
    ratio[:, 10:20] = 200 + torch.rand(b, 10, generator=g) * 800     # very elongated (axis ratio 200-1000)
    th = torch.rand(b, n, generator=g) * 2 * math.pi - math.pi
    return make_splats(mu, s1, s1 / ratio, th, colour=torch.rand(b, n, 3, generator=g))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_is_exact(dtype):
    sp = _splats().to(dtype)
    f = to_shape_features(sp)
    assert f.dtype == dtype and f.shape == sp.shape
    assert torch.equal(f[..., :2], sp[..., :2]) and torch.equal(f[..., 5:], sp[..., 5:])
    back = from_shape_features(f)
    assert back.dtype == dtype
    torch.testing.assert_close(covariance(back.double()), covariance(sp.double()), atol=1e-9, rtol=1e-5)
    torch.testing.assert_close(render(back.float(), (28, 28), 3), render(sp.float(), (28, 28), 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(to_shape_features(back), f, atol=1e-5, rtol=1e-5)


def test_features_mean_what_they_say():
    sp = make_splats(torch.tensor([[0.5, 0.5]]), 0.04, 0.01, math.radians(30))
    f = to_shape_features(sp.double())[0]
    l1, l2 = 0.04 ** 2, 0.01 ** 2
    v = 0.5 * math.log(l1 / l2)
    assert abs(f[2] - 0.25 * (math.log(l1) + math.log(l2))) < 1e-6  # make_splats works in float32
    assert abs(f[3] - v * math.cos(math.radians(60))) < 1e-5 and abs(f[4] - v * math.sin(math.radians(60))) < 1e-5
    # a round splat sits at the origin of the anisotropy plane, whatever "angle" it was made with
    assert to_shape_features(make_splats(torch.tensor([[0.5, 0.5]]), 0.03, 0.03, 1.0).double())[0, 3:5].abs().max() < 1e-6


def test_from_shape_features_is_total():
    g = torch.Generator().manual_seed(1)
    for scale in (1, 10, 1e3, 1e30):
        f = torch.randn(4, 50, 8, generator=g) * scale
        out = from_shape_features(f)
        assert torch.isfinite(out).all() and out.dtype == f.dtype
        assert torch.isfinite(covariance(out.double())).all()
        assert torch.equal(out[..., :2], f[..., :2]) and torch.equal(out[..., 5:], f[..., 5:])
    ext = torch.tensor([[0.5, 0.5, 3e38, -3e38, 3e38, 1, 1, 1], [0.5, 0.5, -3e38, 0, 0, 1, 1, 1]])
    assert torch.isfinite(from_shape_features(ext)).all()
    # the anisotropy cap: an over-long (p, q) keeps its direction, with v = SHAPE_V_LIMIT
    back = to_shape_features(from_shape_features(torch.tensor([[0.5, 0.5, -4.0, 300.0, 400.0, 1, 1, 1]], dtype=torch.float64)))
    torch.testing.assert_close(back[0, 3:5], torch.tensor([0.6, 0.8], dtype=torch.float64) * SHAPE_V_LIMIT, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="NaN"): from_shape_features(torch.full((1, 2, 8), math.nan))
    with pytest.raises(ValueError, match=r"\[...,8\]"): to_shape_features(torch.zeros(2, 7))


def test_decode_gir_with_shape_features_equals_cholesky_decode():
    sp = _splats(2)
    f = to_shape_features(sp)
    nc, ns = GIRNormalizer.fit(sp), GIRNormalizer.fit(f)
    torch.testing.assert_close(decode_gir(ns.normalize(f), ns, (28, 28), 3, features="shape"),
                               decode_gir(nc.normalize(sp), nc, (28, 28), 3), atol=1e-5, rtol=0)
    # total on noise too, and the features argument is checked
    z = torch.randn(2, 40, 8, generator=torch.Generator().manual_seed(3)) * 100
    img = decode_gir(z, ns, (28, 28), 1, features="shape")
    assert torch.isfinite(img).all() and img.min() >= 0 and img.max() <= 1
    with pytest.raises(ValueError, match="features"): decode_gir(ns.normalize(f), ns, features="logeig")
    with pytest.raises(ValueError, match="features"): gir_to_splats(f, "polar")


def test_recipe_schedule_and_features_per_profile():
    from gaussdiff.recipes import recipe
    assert (recipe("gir", "mnist", "cpu").schedule, recipe("gir", "mnist", "cpu").gir_features) == ("cosine", "shape")
    assert (recipe("gir", "mnist", "gpu").schedule, recipe("gir", "mnist", "gpu").gir_features) == ("linear", "cholesky")
    assert recipe("gir", "mnist", "smoke").gir_features == "shape"
    for profile in ("smoke", "cpu", "gpu"):
        p = recipe("pixel", "mnist", profile)
        assert p.schedule == "linear" and p.gir_features is None


def test_training_data_converts_and_records_the_features():
    from gaussdiff.sample import decode, gir_splats
    from gaussdiff.recipes import training_data
    xc, nc, mc = training_data("gir", "mnist", n=8, n_splats=150, profile="smoke", verbose=False)
    xs, ns, ms = training_data("gir", "mnist", n=8, n_splats=150, profile="smoke", verbose=False, gir_features="shape")
    assert mc.gir_features == "cholesky" and ms.gir_features == "shape" and ms.space == "gir"
    assert xs.shape == xc.shape and not torch.allclose(xs[..., 2:5], xc[..., 2:5])
    assert xs.reshape(-1, 8).mean(0).abs().max() < 1e-4  # normalised after the conversion
    torch.testing.assert_close(decode(xs, ms, ns), decode(xc, mc, nc), atol=1e-5, rtol=0)
    torch.testing.assert_close(gir_splats(xs, ms, ns), gir_splats(xc, mc, nc),
                               atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="gir_features"):
        training_data("gir", "mnist", n=8, n_splats=150, profile="smoke", verbose=False, gir_features="polar")


def test_generate_returns_cholesky_splats_for_a_shape_model():
    from gaussdiff.sample import generate
    from gaussdiff.diffusion import Schedule
    from gaussdiff.transformer import GaussianTransformer
    sp = _splats(4)
    f = to_shape_features(sp)
    norm = GIRNormalizer.fit(f)
    from gaussdiff.checkpoint import DataInfo
    meta = DataInfo("gir", sample_shape=(40, 8), image_size=(28, 28), gir_features="shape")
    torch.manual_seed(0)
    model = GaussianTransformer(n_features=8, T=10, d_model=16, depth=1, n_heads=2, t_dim=16).eval()
    imgs, splats = generate(model, Schedule(10), norm, meta, n=2, sampler="ddim", steps=3, return_samples=True)
    # the returned splats are Cholesky numbers: rendering them gives the decoded images
    torch.testing.assert_close(render(splats, (28, 28), 1).clamp(0, 1), imgs, atol=1e-5, rtol=0)


def test_cached_run_with_an_old_recipe_is_retrained(tmp_data, capsys, monkeypatch):
    "A finished cached run trained with another schedule or feature form is not reused: retrained, with a reason."
    from dataclasses import asdict
    from gaussdiff import recipes as R
    from gaussdiff.checkpoint import CKPT_FORMAT
    r = R.recipe("gir", "mnist", "smoke")
    calls = []
    monkeypatch.setattr(R, "run", lambda *a, **k: calls.append(1))
    ck = {"format": CKPT_FORMAT, "finished": True, "config": asdict(r.cfg), "model_config": dict(r.model_kw),
          "schedule": {"T": r.T, "kind": r.schedule}, "meta": {"gir_features": r.gir_features}, "space": "gir"}
    assert R.run_differs(ck, r, r.cfg) is None
    assert "gir_features 'cholesky' != 'shape'" in R.run_differs({**ck, "meta": {}}, r, r.cfg)  # pre-feature runs
    assert "schedule" in R.run_differs({**ck, "schedule": {"T": r.T, "kind": "cosine"}}, r, r.cfg)
    rc = R.recipe("gir", "mnist", "cpu")
    ckc = {**ck, "config": asdict(rc.cfg), "model_config": dict(rc.model_kw), "meta": {"gir_features": "shape"},
           "schedule": {"T": 200, "kind": "linear"}}
    assert "schedule" in R.run_differs(ckc, rc, rc.cfg)
    # load_or_train: write the stale checkpoint where the course keeps runs and watch it retrain
    path = R.run_dir("gir", "mnist", "smoke") / "ckpt.pt"
    path.parent.mkdir(parents=True)
    torch.save({**ck, "meta": {}}, path)
    monkeypatch.setattr(R, "load_checkpoint", lambda p, d: "loaded")
    assert R.load_or_train("gir", "mnist", "smoke") == "loaded" and calls == [1]
    assert "not reusing the cached run" in capsys.readouterr().out
    torch.save(ck, path)
    assert R.load_or_train("gir", "mnist", "smoke") == "loaded" and calls == [1]  # the matching run is reused


def test_resume_refuses_another_feature_form(tmp_path):
    from gaussdiff.checkpoint import DataInfo
    from gaussdiff.diffusion import Schedule
    from gaussdiff.layers import TinyDenoiser
    from gaussdiff.train import TrainConfig, train
    data = torch.randn(32, 4, 8)
    cfg = TrainConfig(budget_steps=4, batch_size=8, warmup_steps=1, ckpt_every=2)
    torch.manual_seed(0)
    train(TinyDenoiser(shape=(4, 8), hidden=16, t_dim=8), data, Schedule(10), cfg, space="gir", out_dir=tmp_path,
          meta=DataInfo("gir", gir_features="cholesky"), device="cpu", progress=False)
    with pytest.raises(ValueError, match="gir_features"):
        train(TinyDenoiser(shape=(4, 8), hidden=16, t_dim=8), data, Schedule(10), cfg.__class__(**{**cfg.__dict__, "budget_steps": 6}),
              space="gir", out_dir=tmp_path, resume=True, meta=DataInfo("gir", gir_features="shape"), device="cpu", progress=False)

"Chapter 04 (gaussdiff.diffusion): schedules against diffusers' DDPMScheduler, the GIR normaliser, bad input."
import math

import pytest
import torch

from gaussdiff.diffusion import (GIRNormalizer, Schedule, cosine_betas, decode_gir, linear_betas, model_to_pixels,
                                 noise_explorer, pixels_to_model, renderable)
from gaussdiff.splats import cholesky_factor, covariance, make_splats, render

diffusers = pytest.importorskip("diffusers")
DDPMScheduler = diffusers.DDPMScheduler

ORACLE_KIND = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def oracle(T, kind, **kw):
    "diffusers' scheduler for our (T, kind); clip_sample off (it only matters for step(), not add_noise)."
    return DDPMScheduler(num_train_timesteps=T, beta_schedule=ORACLE_KIND[kind], clip_sample=False, **kw)


# ---- schedules against the oracle ----

@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_matches_diffusers_T1000(kind):
    ours, ref = Schedule(1000, kind), oracle(1000, kind)
    for name in ("betas", "alphas", "alphas_cumprod"):
        a, b = getattr(ours, name), getattr(ref, name)
        assert a.dtype == torch.float32 and a.shape == (1000,)
        torch.testing.assert_close(a, b.float(), rtol=1e-5, atol=1e-7, msg=f"{kind} {name}")


@pytest.mark.parametrize("T", [50, 200, 1000, 4000])
def test_cosine_matches_diffusers_any_T(T):
    torch.testing.assert_close(Schedule(T, "cosine").alphas_cumprod, oracle(T, "cosine").alphas_cumprod,
                               rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("T", [50, 200, 4000])
def test_linear_is_diffusers_with_ends_scaled_by_1000_over_T(T):
    "Documented choice: improved-DDPM scaling of the linear ends; diffusers given the scaled ends agrees."
    ref = oracle(T, "linear", beta_start=1e-4 * 1000 / T, beta_end=0.02 * 1000 / T)
    torch.testing.assert_close(Schedule(T, "linear").betas, ref.betas, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(Schedule(T, "linear").alphas_cumprod, ref.alphas_cumprod, rtol=1e-4, atol=1e-8)
    # ...which keeps the end of the chain near pure noise whatever T is
    assert Schedule(T, "linear").alphas_cumprod[-1] < 1e-3


def test_schedule_endpoints():
    lin, cos = Schedule(1000, "linear"), Schedule(1000, "cosine")
    assert lin.betas[0].item() == pytest.approx(1e-4) and lin.betas[-1].item() == pytest.approx(0.02)
    assert lin.alphas_cumprod[-1].item() == pytest.approx(4.04e-5, rel=0.02)
    assert cos.betas.max().item() == pytest.approx(0.999) and cos.betas.argmax().item() == 999  # the cap
    assert (cos.alphas_cumprod.diff() < 0).all() and (lin.alphas_cumprod.diff() < 0).all()
    torch.testing.assert_close(lin.snr, lin.alphas_cumprod / (1 - lin.alphas_cumprod))
    assert linear_betas(1000).dtype == cosine_betas(1000).dtype == torch.float64


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("shape", [(7, 150, 8), (7, 1, 28, 28), (7, 3, 32, 32)])
def test_q_sample_matches_diffusers_add_noise(kind, shape):
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    t = torch.tensor([0, 1, 49, 500, 998, 999, 123])
    ours = Schedule(1000, kind).q_sample(x0, t, noise)
    torch.testing.assert_close(ours, oracle(1000, kind).add_noise(x0, noise, t), rtol=1e-5, atol=1e-5)
    # the closed form by hand, per sample
    abar = Schedule(1000, kind).alphas_cumprod
    for i, ti in enumerate(t):
        torch.testing.assert_close(ours[i], abar[ti].sqrt() * x0[i] + (1 - abar[ti]).sqrt() * noise[i])


def test_q_step_composes_to_the_closed_form():
    "Eq. 4 applied t+1 times has the mean and variance the closed form promises (exactly, in expectation)."
    s = Schedule(1000, "cosine")
    # Track mean and variance of x_t through eq. 4 analytically: m <- sqrt(a) m, v <- a v + (1 - a)
    m, v = torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    for t in range(400):
        m, v = s.alphas[t].double().sqrt() * m, s.alphas[t].double() * v + s.betas[t].double()
    abar = s.alphas_cumprod[399].double()
    assert m.item() == pytest.approx(abar.sqrt().item() * 0.7, rel=1e-5)
    assert v.item() == pytest.approx(1 - abar.item(), rel=1e-5)
    # and q_step itself does that step (zero noise -> pure shrink; x=0 -> pure noise scale)
    x = torch.full((3, 2), 2.0)
    torch.testing.assert_close(s.q_step(x, 10, torch.zeros_like(x)), s.alphas[10].sqrt() * x)
    torch.testing.assert_close(s.q_step(torch.zeros(3, 2), 10, torch.ones(3, 2)), s.betas[10].sqrt().expand(3, 2))


def test_q_sample_defaults_and_broadcast_t():
    s = Schedule(100, "linear")
    x0 = torch.zeros(4, 5)
    a = s.q_sample(x0, 10, generator=torch.Generator().manual_seed(1))
    b = s.q_sample(x0, torch.full((4,), 10), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert a.std() > 0 and a.dtype == torch.float32


# ---- bad input ----

@pytest.mark.parametrize("T", [0, -3, 2.5, "10", True])
def test_bad_T(T):
    with pytest.raises(ValueError, match="T must be a positive int"):
        Schedule(T)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown schedule kind 'quadratic'"):
        Schedule(100, "quadratic")


@pytest.mark.parametrize("t", [torch.tensor([0, 100]), torch.tensor([-1, 3]), 100, -1])
def test_t_out_of_range(t):
    s = Schedule(100)
    with pytest.raises(ValueError, match=r"timesteps must lie in \[0, 100\)"):
        s.q_sample(torch.zeros(2, 3), t)


def test_t_wrong_dtype_or_shape():
    s = Schedule(100)
    with pytest.raises(ValueError, match="integer timesteps"):
        s.q_sample(torch.zeros(2, 3), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="3 timesteps for a batch of 2"):
        s.q_sample(torch.zeros(2, 3), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"\[B\] integer timesteps"):
        s.q_sample(torch.zeros(2, 3), torch.tensor([[1], [2]]))


def test_x0_wrong_shape_or_values():
    s = Schedule(100)
    with pytest.raises(ValueError, match="x0 must be"):
        s.q_sample(torch.zeros(0, 3), torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="x0 must be a floating-point tensor"):
        s.q_sample(torch.zeros(2, 3, dtype=torch.long), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="noise shape"):
        s.q_sample(torch.zeros(2, 3), torch.tensor([1, 2]), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        s.q_sample(torch.tensor([[math.nan]]), torch.tensor([1]))


# ---- normaliser ----

def raw_gir(B=32, N=150, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.rand(B, N, 2, generator=g), torch.randn(B, N, 3, generator=g) * 0.4 - 3,
                      torch.rand(B, N, 3, generator=g) * 0.8], -1)


def test_normalizer_standardises_and_inverts():
    x = raw_gir()
    n = GIRNormalizer.fit(x)
    z = n.normalize(x)
    flat = z.reshape(-1, 8).double()
    torch.testing.assert_close(flat.mean(0), torch.zeros(8, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(0, unbiased=False), torch.ones(8, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(n.denormalize(z), x, atol=2e-7, rtol=1e-6)
    zz = torch.randn(5, 150, 8)
    torch.testing.assert_close(n.normalize(n.denormalize(zz)), zz, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(n.mean, x.reshape(-1, 8).mean(0), atol=1e-6, rtol=1e-6)
    assert n.normalize(x[0]).shape == (150, 8)  # a single GIR [N,F] works too


def test_normalizer_state_roundtrip(tmp_path):
    n = GIRNormalizer.fit(raw_gir())
    torch.save(n.state_dict(), tmp_path / "norm.pt")
    m = GIRNormalizer.from_state_dict(torch.load(tmp_path / "norm.pt"))
    x = raw_gir(seed=1)
    assert torch.equal(n.normalize(x), m.normalize(x))


def test_loss_is_the_noise_prediction_error_of_q_sample():
    "Schedule.loss draws t then ε from the generator and scores the model on q_sample(x0, t, ε)."
    sched = Schedule(T=50, kind="cosine")
    x0 = torch.randn(6, 5, 8, generator=torch.Generator().manual_seed(1))
    seen = {}
    def model(xt, t):
        seen["xt"], seen["t"] = xt, t
        return xt * 0.5
    loss = sched.loss(model, x0, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    t = torch.randint(0, 50, (6,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    xt = sched.q_sample(x0, t, eps)
    assert torch.equal(seen["t"], t)
    torch.testing.assert_close(seen["xt"], xt)
    torch.testing.assert_close(loss, ((0.5 * xt - eps) ** 2).mean())
    with pytest.raises(ValueError, match="expected"):
        sched.loss(lambda xt, t: xt[:, :2], x0)
    assert all(torch.equal(a, b) for a, b in zip(sched.draws(x0, torch.Generator().manual_seed(7)), (t, eps)))
    torch.testing.assert_close(sched.loss(model, x0, t=t, noise=eps), loss)  # given draws: nothing drawn


def test_normalizer_constant_feature_is_floored():
    x = raw_gir(); x[..., 5:8] = 0.5  # a constant colour: std 0 would divide by zero
    n = GIRNormalizer.fit(x)
    assert (n.std[5:8] > 0).all() and torch.isfinite(n.normalize(x)).all()


def test_normalizer_bad_input():
    n = GIRNormalizer.fit(raw_gir())
    with pytest.raises(ValueError, match=r"\[B,N,F\]"):
        GIRNormalizer.fit(torch.zeros(10, 8))
    with pytest.raises(ValueError, match="empty"):
        GIRNormalizer.fit(torch.zeros(0, 150, 8))
    with pytest.raises(ValueError, match="NaN"):
        GIRNormalizer.fit(torch.full((1, 2, 8), math.nan))
    with pytest.raises(ValueError, match="7 features per splat"):
        n.normalize(torch.zeros(2, 150, 7))
    with pytest.raises(ValueError, match="'mean' and 'std'"):
        GIRNormalizer.from_state_dict({"mean": torch.zeros(8)})
    with pytest.raises(ValueError, match="positive"):
        GIRNormalizer(torch.zeros(8), torch.zeros(8))


# ---- decoding noised GIRs ----

def test_decode_is_total_for_any_finite_vector():
    "Any finite z decodes to finite images in [0,1] with positive-definite covariances."
    n = GIRNormalizer.fit(raw_gir())
    g = torch.Generator().manual_seed(0)
    for z in [torch.randn(3, 150, 8, generator=g) * s for s in (1, 10, 1e3, 1e30)] + [torch.full((1, 150, 8), -3e38)]:
        img = decode_gir(z, n, (28, 28), 3)
        assert img.shape == (len(z), 3, 28, 28) and torch.isfinite(img).all() and 0 <= img.min() and img.max() <= 1
        L = cholesky_factor(renderable(n.denormalize(z)))
        assert (L.diagonal(dim1=-2, dim2=-1) > 0).all() and torch.isfinite(covariance(renderable(n.denormalize(z)))).all()
    with pytest.raises(ValueError, match="NaN"):
        decode_gir(torch.full((1, 150, 8), math.nan), n)


def test_decode_of_clean_gir_is_the_render_and_noise_changes_it():
    g = torch.Generator().manual_seed(0)
    sp = make_splats(torch.rand(2, 150, 2, generator=g), 0.03, colour=torch.rand(2, 150, 3, generator=g) * 0.5)
    n = GIRNormalizer.fit(sp)
    assert torch.equal(renderable(sp), sp)  # real splats are never clamped
    torch.testing.assert_close(decode_gir(n.normalize(sp), n, (32, 32), 3), render(sp, (32, 32), 3), atol=1e-5, rtol=1e-5)
    s = Schedule(1000, "linear")
    z_t = s.q_sample(n.normalize(sp), torch.tensor([500, 500]), generator=g)
    assert (decode_gir(z_t, n, (32, 32), 3) - render(sp, (32, 32), 3)).abs().mean() > 0.01


def test_pixel_scaling_roundtrip():
    x = torch.rand(2, 3, 8, 8)
    assert pixels_to_model(x).min() >= -1 and pixels_to_model(x).max() <= 1
    torch.testing.assert_close(model_to_pixels(pixels_to_model(x)), x)
    assert model_to_pixels(torch.tensor([-5.0, 5.0])).tolist() == [0.0, 1.0]


# ---- the widget, headless ----

def find(widget, cls):
    "The descendant widget carrying a CSS class."
    if cls in getattr(widget, "_dom_classes", ()): return widget
    for c in getattr(widget, "children", ()):
        if (hit := find(c, cls)) is not None: return hit


def test_noise_explorer_redraws_when_t_schedule_or_image_change():
    pytest.importorskip("ipywidgets")
    sp = raw_gir(B=2); n = GIRNormalizer.fit(sp)
    ex = {"mnist": dict(images=torch.rand(2, 1, 28, 28), z=n.normalize(sp), normalizer=n)}
    box = noise_explorer(ex, T=100)
    t, gir, pix = find(box, "gaussdiff-t"), find(box, "gaussdiff-gir"), find(box, "gaussdiff-pixels")
    assert t.max == 99 and gir.value[:4] == pix.value[:4] == b"\x89PNG"
    before = (gir.value, pix.value)
    t.value = 80
    assert gir.value != before[0] and pix.value != before[1]
    at80 = gir.value
    t.value = 0; t.value = 80
    assert gir.value == at80  # fixed noise per image: the same t shows the same frame
    kind = [w for w in box.children[0].children if getattr(w, "description", "") == "schedule"][0]
    kind.value = "cosine"
    assert gir.value != at80


# ---- what the network predicts, and min-SNR weighting ----

@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_v_target_matches_diffusers_get_velocity(kind):
    scaled = dict(beta_start=1e-4 * 5, beta_end=0.02 * 5) if kind == "linear" else {}  # our linear ends scale by 1000/T
    ours, ref = Schedule(200, kind, prediction="v"), oracle(200, kind, **scaled)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 24, 8, generator=g), torch.randn(5, 24, 8, generator=g)
    t = torch.tensor([0, 10, 99, 150, 199])
    torch.testing.assert_close(ours.target(x0, eps, t), ref.get_velocity(x0, eps, t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_to_eps_inverts_the_target(prediction):
    s = Schedule(200, "cosine", prediction=prediction)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 3, 8, generator=g), torch.randn(4, 3, 8, generator=g)
    t = torch.tensor([1, 50, 120, 199])
    torch.testing.assert_close(s.to_eps(s.target(x0, eps, t), s.q_sample(x0, t, eps), t), eps, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_min_snr_weights_match_diffusers_compute_snr(prediction):
    "min(SNR, γ)/SNR for ε (diffusers' train_text_to_image recipe), min(SNR, γ) for x0, min(SNR, γ)/(SNR+1) for v."
    from diffusers.training_utils import compute_snr
    s, ref = Schedule(1000, "linear", prediction=prediction, min_snr_gamma=5.0), oracle(1000, "linear")
    t = torch.tensor([0, 100, 400, 999])
    snr = compute_snr(ref, t)
    want = torch.stack([snr, 5.0 * torch.ones_like(snr)]).min(0)[0]
    want = {"eps": want / snr, "x0": want, "v": want / (snr + 1)}[prediction]
    torch.testing.assert_close(s.loss_weight(t), want.float(), rtol=1e-4, atol=1e-6)


def test_unweighted_eps_loss_is_plain_mse_and_weighted_loss_differs():
    net = torch.nn.Linear(8, 8)
    x0 = torch.randn(16, 4, 8, generator=torch.Generator().manual_seed(2))
    plain = Schedule(100).loss(lambda x, t: net(x), x0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 100, (16,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    torch.testing.assert_close(plain, torch.nn.functional.mse_loss(net(Schedule(100).q_sample(x0, t, eps)), eps))
    weighted = Schedule(100, min_snr_gamma=1.0).loss(lambda x, t: net(x), x0, torch.Generator().manual_seed(3))
    assert weighted < plain  # ε-weights min(SNR, 1)/SNR are <= 1 and < 1 at every low-noise step


@pytest.mark.parametrize("kw,match", [(dict(prediction="noise"), "prediction"), (dict(min_snr_gamma=0.0), "min_snr_gamma"),
                                      (dict(min_snr_gamma=-5), "min_snr_gamma")])
def test_schedule_rejects_bad_prediction_or_gamma(kw, match):
    with pytest.raises(ValueError, match=match): Schedule(100, **kw)


def test_schedule_refuses_a_step_count_beyond_its_limit():
    "Issue 27 (13): Schedule(T=2e9) is refused with its memory and the limit (it ran into the allocator)."
    with pytest.raises(ValueError, match=r"a Schedule of T=2,000,000,000 steps would need about .* GiB of memory, over the limit"):
        Schedule(T=int(2e9))
    assert Schedule(T=100_000).alphas_cumprod.shape == (100_000,)

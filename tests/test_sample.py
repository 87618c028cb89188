"Samplers of gaussdiff.sample checked against diffusers' DDPMScheduler / DDIMScheduler / DPMSolverMultistepScheduler."

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from gaussdiff.checkpoint import DataInfo
from gaussdiff.diffusion import Schedule
from gaussdiff.sample import SAMPLERS, clip_x0, ddim_step, ddpm_step, dpmpp2m_step, half_log_snr, sample, timesteps_for


class _Sched(Schedule):
    "A schedule with exactly diffusers' alphas_cumprod (so the tests check the samplers, not the schedules)."
    def __init__(self, ref, prediction="eps"):
        super().__init__(ref.config.num_train_timesteps, prediction=prediction)
        self.alphas_cumprod = ref.alphas_cumprod.clone()


class _Eps(torch.nn.Module):
    "A fixed, smooth stand-in for a trained ε-network (depends on x and t)."
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, x, t):
        return self.w * x + 0.5 * torch.sin(t.float() / 37.0).view(-1, *[1] * (x.ndim - 1)) * torch.cos(3 * x)


def _ddpm(T=1000, kind="linear", clip=True, spacing="trailing"):
    return DDPMScheduler(num_train_timesteps=T, beta_schedule=kind, clip_sample=clip, clip_sample_range=1.0,
                         variance_type="fixed_small", prediction_type="epsilon", timestep_spacing=spacing)


def _ddim(T=1000, kind="linear", clip=True, spacing="trailing"):
    return DDIMScheduler(num_train_timesteps=T, beta_schedule=kind, clip_sample=clip, clip_sample_range=1.0,
                         prediction_type="epsilon", set_alpha_to_one=True, steps_offset=0, timestep_spacing=spacing)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("T,steps", [(1000, 1000), (1000, 50), (200, 200), (200, 20)])
def test_timesteps_match_diffusers(T, steps, spacing):
    ref = _ddim(T, spacing=spacing); ref.set_timesteps(steps)
    assert timesteps_for(T, steps, spacing) == ref.timesteps.tolist()


@pytest.mark.parametrize("kind", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("t,steps", [(999, 1000), (500, 1000), (1, 1000), (0, 1000), (979, 50), (19, 50)])
def test_ddpm_step_matches_diffusers(kind, clip, t, steps):
    ref = _ddpm(kind=kind, clip=clip); ref.set_timesteps(steps)
    g = torch.Generator().manual_seed(t)
    x, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    out = ref.step(eps, t, x, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    t_prev = t - 1000 // steps
    mine, x0 = ddpm_step(x, eps, t, t_prev, ref.alphas_cumprod, noise, 1.0 if clip else None)
    torch.testing.assert_close(x0, out.pred_original_sample, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine, out.prev_sample, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clipped_eps", [False, True])
@pytest.mark.parametrize("t,steps", [(999, 50), (499, 50), (19, 50), (199, 20)])
def test_ddim_step_matches_diffusers(kind, eta, clipped_eps, t, steps):
    ref = _ddim(kind=kind); ref.set_timesteps(steps)
    g = torch.Generator().manual_seed(t)
    x, eps, noise = (torch.randn(2, 150, 8, generator=g) for _ in range(3))
    out = ref.step(eps, t, x, eta=eta, use_clipped_model_output=clipped_eps,
                   variance_noise=noise if eta > 0 else None)
    mine, x0 = ddim_step(x, eps, t, t - 1000 // steps, ref.alphas_cumprod, eta, noise, 1.0, clipped_eps)
    torch.testing.assert_close(x0, out.pred_original_sample, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine, out.prev_sample, rtol=1e-4, atol=1e-5)


def _diffusers_loop(ref, model, x, steps, generator=None, **step_kw):
    ref.set_timesteps(steps)
    for t in ref.timesteps:
        eps = model(x, torch.full((x.shape[0],), int(t), dtype=torch.long))
        x = ref.step(eps, int(t), x, generator=generator, **step_kw).prev_sample
    return x


@torch.no_grad()
@pytest.mark.parametrize("T,steps", [(100, 100), (100, 20)])
def test_full_ddpm_loop_matches_diffusers(T, steps):
    model, ref = _Eps(), _ddpm(T, kind="squaredcos_cap_v2")
    mine = sample(model, _Sched(ref), (3, 1, 8, 8), steps=steps, sampler="ddpm", clip=1.0,
                  generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(3, 1, 8, 8, generator=g)
    theirs = _diffusers_loop(ref, model, x_T, steps, generator=g)
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)


@torch.no_grad()
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_full_ddim_loop_matches_diffusers(eta):
    model, ref = _Eps(), _ddim(200)
    mine = sample(model, _Sched(ref), (3, 150, 8), steps=25, sampler="ddim", eta=eta, clip=1.0,
                  generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(3, 150, 8, generator=g)
    theirs = _diffusers_loop(ref, model, x_T, 25, generator=g if eta > 0 else None, eta=eta)
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)


def _dpm(T=1000, kind="linear"):
    return DPMSolverMultistepScheduler(num_train_timesteps=T, beta_schedule=kind, algorithm_type="dpmsolver++",
                                       solver_order=2, prediction_type="epsilon", timestep_spacing="trailing",
                                       thresholding=False, lower_order_final=True)


@pytest.mark.parametrize("T,steps", [(1000, 20), (1000, 5), (200, 10), (200, 200)])
def test_dpm_timesteps_match_diffusers(T, steps):
    ref = _dpm(T)
    ref.set_timesteps(steps)
    assert timesteps_for(T, steps) == ref.timesteps.tolist()


def test_half_log_snr_matches_diffusers_lambda_t():
    ref = _dpm(1000, "squaredcos_cap_v2")
    torch.testing.assert_close(half_log_snr(ref.alphas_cumprod), ref.lambda_t, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("T,steps", [(1000, 20), (1000, 5), (1000, 50), (200, 10), (200, 3)])
def test_dpmpp2m_steps_match_diffusers_one_by_one(kind, T, steps):
    """Run diffusers' scheduler; at every step, take our step from the same state with the same ε and history: each
    step agrees (the first-order start, the 2M steps and the last step to σ = 0)."""
    ref = _dpm(T, kind)
    ref.set_timesteps(steps)
    abar = ref.alphas_cumprod.float()
    g = torch.Generator().manual_seed(steps)
    x, data = torch.randn(2, 150, 8, generator=g), torch.rand(2, 150, 8, generator=g)
    x0_last = t_last = None
    scale_last = 1.0
    ts = timesteps_for(T, steps)
    for i, t in enumerate(ref.timesteps.tolist()):  # ε of a network that is nearly right about `data`
        eps = (x - abar[t].sqrt() * data) / (1 - abar[t]).sqrt() + 0.1 * torch.randn(x.shape, generator=g)
        x0 = (x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
        mine = dpmpp2m_step(x, x0, t, ts[i + 1] if i + 1 < len(ts) else -1, abar, x0_last, t_last)
        # diffusers computes in float32: near the cosine schedule's start (ᾱ ≈ 2e-9) x is ~2e3 and x0 comes from a
        # cancellation of such numbers, so rounding scales with the largest state this step or its history used
        scale = max(1.0, x.abs().max().item())
        x = ref.step(eps, t, x).prev_sample
        x0_last, t_last = x0, t
        atol = 1e-5 * max(scale, scale_last, x.abs().max().item())
        torch.testing.assert_close(mine, x, rtol=1e-4, atol=atol, msg=f"step {i} (t={t})")
        scale_last = scale


@torch.no_grad()
@pytest.mark.parametrize("steps", [5, 20])
def test_full_dpmpp2m_loop_matches_diffusers(steps):
    model, ref = _Eps(), _dpm(200, "squaredcos_cap_v2")
    mine = sample(model, _Sched(ref), (3, 150, 8), steps=steps, sampler="dpmpp2m", generator=torch.Generator().manual_seed(4))
    x_T = torch.randn(3, 150, 8, generator=torch.Generator().manual_seed(4))
    theirs = _diffusers_loop(ref, model, x_T, steps)
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)


def test_first_order_dpmpp_is_ddim_and_second_order_beats_it():
    """The first-order step is DDIM η=0. For Gaussian data N(μ, s²) the exact x0-predictor and the probability-flow
    ODE's solution are known in closed form: at 10 and 20 steps DPM-Solver++(2M) lands at least 2× closer to it."""
    from gaussdiff.sample import gaussian_ode_demo
    abar = _ddim(1000, "squaredcos_cap_v2").alphas_cumprod.float()
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
    ddim, x0 = ddim_step(x, eps, 600, 500, abar)
    torch.testing.assert_close(dpmpp2m_step(x, x0, 600, 500, abar), ddim, rtol=1e-5, atol=1e-5)
    for steps in (10, 20):
        err = gaussian_ode_demo(Schedule(1000, "cosine"), steps)
        assert err["dpmpp2m"] < 0.5 * err["ddim"], (steps, err)
    assert gaussian_ode_demo(Schedule(1000, "cosine"), 50)["dpmpp2m"] < 1e-3


def test_samplers_listed():
    assert SAMPLERS == ("ddpm", "ddim", "dpmpp2m", "dpmpp2m-sde")


@pytest.mark.parametrize("kind", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("T,steps", [(1000, 20), (1000, 5), (200, 10), (200, 3)])
def test_sde_dpmpp2m_steps_match_diffusers_one_by_one(kind, T, steps):
    """SDE-DPM-Solver++(2M) against diffusers' `sde-dpmsolver++`: at every step the same state, ε, history and noise
    draw give the same next state (the first-order start, the 2M steps and the last step to σ = 0)."""
    ref = DPMSolverMultistepScheduler(num_train_timesteps=T, beta_schedule=kind, algorithm_type="sde-dpmsolver++",
                                      solver_order=2, prediction_type="epsilon", timestep_spacing="trailing",
                                      thresholding=False, lower_order_final=True)
    ref.set_timesteps(steps)
    abar = ref.alphas_cumprod.float()
    g = torch.Generator().manual_seed(steps)
    x, data = torch.randn(2, 150, 8, generator=g), torch.rand(2, 150, 8, generator=g)
    x0_last = t_last = None
    ts = timesteps_for(T, steps)
    assert ts == ref.timesteps.tolist()
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        eps = (x - abar[t].sqrt() * data) / (1 - abar[t]).sqrt() + 0.1 * torch.randn(x.shape, generator=g)
        z = torch.randn(x.shape, generator=g)
        x0 = (x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
        mine = dpmpp2m_step(x, x0, t, t_prev, abar, x0_last, t_last, noise=z if t_prev >= 0 else None)
        scale = max(1.0, x.abs().max().item())
        x = ref.step(eps, t, x, variance_noise=z).prev_sample
        x0_last, t_last = x0, t
        torch.testing.assert_close(mine, x, rtol=1e-4, atol=1e-5 * max(scale, x.abs().max().item()),
                                   msg=f"step {i} (t={t})")


@torch.no_grad()
def test_sde_sampler_draws_its_noise_from_the_generator_and_ends_at_the_data_prediction():
    "Same generator, same samples; another seed, other samples; the loop's last step returns x0 as the ODE's does."
    model, ref = _Eps(), _dpm(200, "squaredcos_cap_v2")
    run = lambda seed: sample(model, _Sched(ref), (3, 150, 8), steps=10, sampler="dpmpp2m-sde",
                              generator=torch.Generator().manual_seed(seed))
    a, b, c = run(4), run(4), run(5)
    assert torch.equal(a, b) and not torch.allclose(a, c) and torch.isfinite(a).all()
    ode = sample(model, _Sched(ref), (3, 150, 8), steps=10, sampler="dpmpp2m", generator=torch.Generator().manual_seed(4))
    assert not torch.allclose(a, ode)  # the SDE's noise changes the path from the same x_T


@torch.no_grad()
def test_ddim_eta1_equals_respaced_ddpm():
    "DDIM with η=1 and ε re-derived from the clipped x0 is exactly the respaced DDPM posterior."
    ref = _ddpm(200)
    abar = ref.alphas_cumprod
    g = torch.Generator().manual_seed(3)
    x, eps, z = (torch.randn(2, 5, 8, generator=g) for _ in range(3))
    a, _ = ddpm_step(x, eps, 150, 140, abar, z, 1.0)
    b, _ = ddim_step(x, eps, 150, 140, abar, 1.0, z, 1.0, clipped_eps=True)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_trajectory_and_determinism():
    model, ref = _Eps(), _ddpm(50)
    x, tr = sample(model, _Sched(ref), (2, 4, 8), sampler="ddim", steps=10, return_trajectory=True,
                   generator=torch.Generator().manual_seed(5))
    assert tr["x"].shape == (11, 2, 4, 8) and tr["x0"].shape == (11, 2, 4, 8)
    assert tr["t"][0] == 49 and tr["t"][-1] == -1 and torch.equal(tr["x"][-1], x)
    again = sample(model, _Sched(ref), (2, 4, 8), sampler="ddim", steps=10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, again)


@torch.no_grad()
def test_cosine_schedule_stays_finite_only_with_clipping():
    "With ᾱ_T ≈ 1e-8 the unclipped x0 estimate explodes at the first step; clipping bounds it."
    ref = _ddpm(1000, kind="squaredcos_cap_v2")
    abar = ref.alphas_cumprod
    x, eps = torch.randn(1, 64), torch.zeros(1, 64)  # a network that predicts no noise at all
    _, x0_raw = ddpm_step(x, eps, 999, 998, abar)
    _, x0_clip = ddpm_step(x, eps, 999, 998, abar, clip=1.0)
    assert x0_raw.abs().max() > 1e3 and x0_clip.abs().max() <= 1.0


def test_per_feature_clip():
    x0 = torch.tensor([[[-5.0, 5.0, 0.5]]])
    out = clip_x0(x0, ([-1.0, -2.0, 0.0], [1.0, 2.0, 0.25]))
    assert out.tolist() == [[[-1.0, 2.0, 0.25]]]


def test_bad_arguments():
    model, ref = _Eps(), _ddpm(50)
    with pytest.raises(ValueError, match="steps"): timesteps_for(50, 0)
    with pytest.raises(ValueError, match="exceed"): timesteps_for(50, 51)
    with pytest.raises(ValueError, match="sampler"): sample(model, _Sched(ref), (1, 4), sampler="euler")
    with pytest.raises(ValueError, match="eta"): sample(model, _Sched(ref), (1, 4), sampler="ddim", eta=-1)


def test_decode_pixels_crops_padding_and_gif(tmp_path):
    from PIL import Image
    from gaussdiff.sample import decode, save_gif, trajectory_frames
    x = torch.zeros(2, 1, 32, 32); x[:, :, 2:30, 2:30] = 1.0
    img = decode(x, DataInfo("pixel", image_size=(28, 28)))
    assert img.shape == (2, 1, 28, 28) and (img == 1).all()
    model, ref = _Eps(), _ddpm(20)
    _, tr = sample(model, _Sched(ref), (3, 1, 32, 32), return_trajectory=True, clip=1.0)
    frames, ts = trajectory_frames(tr, DataInfo("pixel", image_size=(28, 28)), n_frames=5)
    assert frames.shape == (5, 3, 1, 28, 28) and ts[0] == 19 and ts[-1] == -1
    p = save_gif(frames, tmp_path / "a.gif", nrow=3)
    with Image.open(p) as im: assert im.n_frames == 5


def _pixel_ckpt(tmp_path):
    "A tiny pixel-space checkpoint (MLP denoiser on 1×8×8 'images' shown as 6×6 crops) for CLI tests."
    from gaussdiff.diffusion import Schedule
    from gaussdiff.layers import TinyDenoiser
    from gaussdiff.train import TrainConfig, train
    torch.manual_seed(0)
    data = torch.rand(32, 1, 8, 8) * 2 - 1
    from gaussdiff.checkpoint import DataInfo
    meta = DataInfo("pixel", "toy", image_size=(6, 6), sample_shape=(1, 8, 8), x0_clip=1.0)
    train(TinyDenoiser(shape=(1, 8, 8), hidden=32, t_dim=16), data, Schedule(T=20), TrainConfig(budget_steps=3),
          space="pixel", out_dir=tmp_path, meta=meta, device="cpu", progress=False)
    return tmp_path / "ckpt.pt"


def test_sample_cli_writes_grid_and_gif(tmp_path, capsys):
    import json
    from PIL import Image
    from gaussdiff.sample import cli
    ck = _pixel_ckpt(tmp_path)
    rc = cli(["--ckpt", str(ck), "--sampler", "ddim", "--steps", "5", "--n", "10", "--out", str(tmp_path / "g.png"),
              "--gif", str(tmp_path / "g.gif"), "--device", "cpu"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 5 and report["space"] == "pixel"
    with Image.open(tmp_path / "g.png") as im: assert im.size[0] > 6 * 8
    with Image.open(tmp_path / "g.gif") as im: assert im.n_frames > 2


def test_sample_cli_bad_input(tmp_path, capsys):
    from gaussdiff.sample import cli
    assert cli(["--ckpt", str(tmp_path / "missing.pt")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    assert cli(["--ckpt", str(tmp_path / "bad.pt")]) == 2
    assert "corrupt" in capsys.readouterr().err
    ck = _pixel_ckpt(tmp_path / "run")
    assert cli(["--ckpt", str(ck), "--steps", "0", "--out", str(tmp_path / "x.png")]) == 2
    assert "steps must be" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()



@torch.no_grad()
@pytest.mark.parametrize("ours,theirs", [("x0", "sample"), ("v", "v_prediction")])
def test_x0_and_v_prediction_loops_match_diffusers(ours, theirs):
    "A network that predicts x0 or v samples exactly as diffusers' scheduler with that prediction_type."
    model = _Eps()
    ref = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=True, clip_sample_range=1.0,
                        variance_type="fixed_small", prediction_type=theirs, timestep_spacing="trailing")
    mine = sample(model, _Sched(ref, prediction=ours), (3, 1, 8, 8), steps=20, sampler="ddpm", clip=1.0,
                  generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    x_T = torch.randn(3, 1, 8, 8, generator=g)
    torch.testing.assert_close(mine, _diffusers_loop(ref, model, x_T, 20, generator=g), rtol=1e-4, atol=1e-4)


def test_sample_refuses_non_finite_start_noise_and_guidance_before_the_first_step():
    "Issue 27 (18): an x_T holding NaN/inf failed only after every step; a NaN guidance was silently ignored or made NaN images."
    model, ref = _Eps(), _ddpm(50)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    for x_T in (torch.full((1, 4), float("nan")), torch.tensor([[0.0, float("inf"), 0.0, 0.0]])):
        with pytest.raises(ValueError, match="x_T"): sample(model, _Sched(ref), (1, 4), x_T=x_T)
    for w in (float("nan"), float("inf"), "2"):
        with pytest.raises(ValueError, match="^guidance must be a finite number"): sample(model, _Sched(ref), (1, 4), guidance=w)
    assert not calls

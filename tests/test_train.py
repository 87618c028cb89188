"The model-agnostic trainer: exact resume, EMA against diffusers, LR schedule, checkpoints and bad input."
import math
from pathlib import Path

import pytest
import torch

from gaussdiff.core import save_torch_atomic
from gaussdiff.diffusion import Schedule
from gaussdiff.checkpoint import DataInfo, RunInfo, load_checkpoint, read_checkpoint
from gaussdiff.layers import TinyDenoiser
from gaussdiff.train import EMA, TrainConfig, batch_indices, lr_factor, train

DATA = torch.randn(96, 4, 6, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
SCHED = Schedule(T=50)


def _model(seed=0):
    torch.manual_seed(seed)
    return TinyDenoiser(shape=(4, 6), hidden=32, t_dim=16)


def _cfg(**kw):
    return TrainConfig(**{**dict(budget_steps=24, batch_size=16, warmup_steps=5, ckpt_every=6, lr=1e-3,
                                 ema_decay=0.9), **kw})


def _run(out, **kw):
    cfg = kw.pop("cfg", _cfg())
    return train(_model(), DATA, SCHED, cfg, space="toy", out_dir=out, device="cpu", progress=False, **kw)


def _equal_states(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_resume_reproduces_uninterrupted_run_bit_for_bit(tmp_path):
    ref = _run(tmp_path / "a")

    def crash(step, loss):
        if step == 15: raise KeyboardInterrupt("simulated crash")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", callback=crash)
    assert read_checkpoint(tmp_path / "b" / "ckpt.pt")["step"] == 12  # the last checkpoint before the crash
    res = _run(tmp_path / "b", resume=True)
    assert res.step == ref.step == 24
    assert _equal_states(ref.model, res.model) and _equal_states(ref.ema.model, res.ema.model)
    assert res.history["loss"] == ref.history["loss"] and res.history["lr"] == ref.history["lr"]
    a, b = (read_checkpoint(p / "ckpt.pt")["optimizer"]["state"] for p in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(a[k]["exp_avg_sq"], b[k]["exp_avg_sq"]) for k in a)


def test_extending_a_step_budget_equals_one_longer_run(tmp_path):
    ref = _run(tmp_path / "a", cfg=_cfg(budget_steps=20))
    _run(tmp_path / "b", cfg=_cfg(budget_steps=8))
    res = _run(tmp_path / "b", cfg=_cfg(budget_steps=20), resume=True)
    assert _equal_states(ref.model, res.model)


def test_training_reduces_the_loss(tmp_path):
    res = train(_model(), DATA, SCHED, _cfg(budget_steps=150, ckpt_every=1000), space="toy", device="cpu",
                progress=False)
    first, last = sum(res.history["loss"][:20]) / 20, sum(res.history["loss"][-20:]) / 20
    assert last < 0.8 * first


def test_wall_clock_budget_stops(tmp_path):
    res = train(_model(), DATA, SCHED, _cfg(budget_steps=None, budget_minutes=0.5 / 60), space="toy",
                device="cpu", progress=False)
    assert res.step >= 1 and 0.5 <= res.elapsed_s < 5


def test_ema_matches_diffusers_emamodel():
    from diffusers.training_utils import EMAModel
    net = _model()
    ours, theirs = EMA(net, 0.95), EMAModel(net.parameters(), decay=0.95)
    g = torch.Generator().manual_seed(1)
    for _ in range(30):
        with torch.no_grad():
            for p in net.parameters(): p.add_(torch.randn(p.shape, generator=g))
        ours.update(net); theirs.step(net.parameters())
        assert ours.current_decay() == pytest.approx(theirs.cur_decay_value)
    for a, b in zip(ours.model.parameters(), theirs.shadow_params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_lr_schedule_and_batches():
    assert lr_factor(0, 10) == pytest.approx(0.1) and lr_factor(9, 10) == 1.0 and lr_factor(500, 10) == 1.0
    assert lr_factor(110, 10, decay_steps=110, min_lr_frac=0.1) == pytest.approx(0.1)
    assert lr_factor(60, 10, decay_steps=110, min_lr_frac=0.0) == pytest.approx(0.5)
    epoch = torch.cat([batch_indices(s, 96, 16, seed=3) for s in range(6)])
    assert sorted(epoch.tolist()) == list(range(96))  # one epoch visits every example once
    assert torch.equal(batch_indices(7, 96, 16, 3), batch_indices(7, 96, 16, 3))
    assert not torch.equal(batch_indices(0, 96, 16, 3), batch_indices(6, 96, 16, 3))


def test_checkpoint_loads_for_sampling_with_snapshots(tmp_path):
    res = _run(tmp_path, snapshot_fracs=(0.25, 0.5, 1.0), meta=DataInfo("toy", "toy"))
    assert [s["step"] for s in res.snapshots] == [6, 12, 24]
    model, schedule, normalizer, meta = load_checkpoint(tmp_path / "ckpt.pt", device="cpu")
    assert isinstance(model, TinyDenoiser) and not model.training and normalizer is None
    assert schedule.T == 50 and isinstance(meta, RunInfo) and meta.space == "toy" and meta.dataset == "toy" and meta.finished
    assert [s["step"] for s in meta.snapshots] == [6, 12, 24] and meta.trained_flops() == 24 * meta.train_flops_per_step > 0
    assert _equal_states(model, res.ema.model)
    snap, *_ = load_checkpoint(res.snapshots[0]["path"], device="cpu")
    assert not _equal_states(snap, res.ema.model)
    last, *_ = load_checkpoint(res.snapshots[-1]["path"], device="cpu")  # step 24 is the end: the final EMA weights
    assert _equal_states(last, res.ema.model)
    # a snapshot holds one copy of the weights (the EMA's), the checkpoint four (model, EMA, Adam's two moments)
    assert (tmp_path / "snapshots" / "ema_step0000024.pt").stat().st_size < 0.45 * (tmp_path / "ckpt.pt").stat().st_size
    with pytest.raises(ValueError, match="space"):
        load_checkpoint(tmp_path / "ckpt.pt", device="cpu", space="pixel")


def test_an_epoch_and_a_fraction_on_one_step_make_one_snapshot(tmp_path):
    # 96 examples / batch 16 = 6 steps per epoch: epoch 4 is the budget's end (the gpu recipe's last epoch vs frac 1.0)
    res = _run(tmp_path, snapshot_fracs=(1.0,), snapshot_epochs=(2, 4))
    assert [s["step"] for s in res.snapshots] == [12, 24]
    assert len(list((tmp_path / "snapshots").glob("*.pt"))) == 2
    _run(tmp_path, snapshot_fracs=(1.0,), snapshot_epochs=(2, 4), resume=True)  # resumed at its end: nothing twice
    assert [s["step"] for s in read_checkpoint(tmp_path / "ckpt.pt")["meta"]["_snapshots"]] == [12, 24]
    # a larger budget continues the run, and the end of *its* budget gets its snapshot (Fig 8's last row)
    _run(tmp_path, snapshot_fracs=(1.0,), snapshot_epochs=(2, 4), cfg=_cfg(budget_steps=30), resume=True)
    assert [s["step"] for s in read_checkpoint(tmp_path / "ckpt.pt")["meta"]["_snapshots"]] == [12, 24, 30]


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    _run(tmp_path, cfg=_cfg(budget_steps=6))
    before = (tmp_path / "ckpt.pt").read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")  # save_torch_atomic hands torch.save an open file of its temporary path
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        _run(tmp_path, cfg=_cfg(budget_steps=12), resume=True)
    assert (tmp_path / "ckpt.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="budget"): TrainConfig()
    with pytest.raises(ValueError, match="budget_minutes"): TrainConfig(budget_minutes=0)
    with pytest.raises(ValueError, match="budget_steps"): TrainConfig(budget_steps=0)
    with pytest.raises(FileNotFoundError, match="train one first"): _run(tmp_path / "none", resume=True)
    with pytest.raises(FileNotFoundError): load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"): load_checkpoint(tmp_path / "bad.pt")
    save_torch_atomic({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a gaussdiff checkpoint"): read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="NaN"):
        train(_model(), DATA * float("nan"), SCHED, _cfg(), device="cpu", progress=False)
    _run(tmp_path / "c", cfg=_cfg(budget_steps=6))
    with pytest.raises(ValueError, match="different run.*space"):
        train(_model(), DATA, SCHED, _cfg(budget_steps=12), space="pixel", out_dir=tmp_path / "c", resume=True,
              device="cpu", progress=False)
    with pytest.raises(ValueError, match="different run.*lr"):
        _run(tmp_path / "c", cfg=_cfg(budget_steps=12, lr=5e-4), resume=True)
    with pytest.raises(ValueError, match="model config"):
        torch.manual_seed(0)
        train(TinyDenoiser(shape=(4, 6), hidden=64, t_dim=16), DATA, SCHED, _cfg(budget_steps=12),
              space="toy", out_dir=tmp_path / "c", resume=True, device="cpu", progress=False)


def test_pixel_training_data_pads_mnist_to_32():
    from gaussdiff.recipes import training_data
    x, norm, meta = training_data("pixel", "mnist", n=8, verbose=False)
    assert x.shape == (8, 1, 32, 32) and norm is None and meta.image_size == (28, 28)
    assert x.min() >= -1 and x.max() <= 1 and (x[:, :, :2] == -1).all() and (x[:, :, :, -2:] == -1).all()
    assert meta.sample_shape == (1, 32, 32) and meta.x0_clip == 1.0 and meta.space == "pixel"


def test_recipe_gives_both_spaces_the_same_training_config():
    from gaussdiff.recipes import recipe
    for profile in ("smoke", "cpu", "gpu"):
        g, p = recipe("gir", "mnist", profile), recipe("pixel", "mnist", profile)
        assert g.cfg == p.cfg and (g.T, p.T) == (200, 1000)
    with pytest.raises(ValueError, match="space"): recipe("latent")
    with pytest.raises(ValueError, match="dataset"): recipe("gir", "cifar")


def test_train_cli_trains_resumes_and_refuses_the_other_space(tmp_path, capsys):
    import json
    from gaussdiff.recipes import cli
    out = str(tmp_path / "run")
    base = ["--profile", "smoke", "--n", "8", "--out", out, "--device", "cpu"]
    assert cli(["--space", "pixel", "--budget-steps", "2", *base]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    assert cli(["--space", "pixel", "--budget-steps", "3", "--resume", *base]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    assert cli(["--space", "gir", "--budget-steps", "4", "--resume", *base]) == 2
    assert "different run" in capsys.readouterr().err
    assert cli(["--space", "pixel", "--budget-minutes", "0", *base]) == 2
    assert "budget_minutes must be a finite number > 0" in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "run" / "ckpt.pt")["step"] == 3  # failed calls left the checkpoint alone


def test_pixel_training_data_for_sprites_is_rgb_32():
    from gaussdiff.recipes import training_data
    x, _, meta = training_data("pixel", "sprites", n=4, verbose=False)
    assert x.shape == (4, 3, 32, 32) and meta.image_size == (32, 32) and meta.channels == 3


# ---- the FLOP budget ----

def test_train_step_flops_is_forward_plus_backward_and_touches_nothing():
    from gaussdiff.layers import count_flops
    from gaussdiff.train import train_step_flops
    model, batch = _model(), DATA[:16]
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    step = train_step_flops(model, SCHED, batch)
    fwd = count_flops(model, batch, torch.zeros(16, dtype=torch.long))
    assert 2.5 * fwd <= step <= 3.5 * fwd  # backward ≈ 2 × forward
    assert all(p.grad is None for p in model.parameters()) and all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert torch.equal(rng, torch.get_rng_state())


def test_flop_budget_stops_at_the_step_that_spends_it(tmp_path):
    from gaussdiff.train import train_step_flops
    per_step = train_step_flops(_model(), SCHED, DATA[:16])
    res = _run(tmp_path / "f", cfg=_cfg(budget_steps=None, budget_flops=7.5 * per_step))
    assert res.step == 8 and res.flops_per_step == per_step and res.train_flops == 8 * per_step
    assert read_checkpoint(tmp_path / "f" / "ckpt.pt")["meta"]["train_flops_per_step"] == per_step
    both = _run(tmp_path / "g", cfg=_cfg(budget_steps=5, budget_flops=1e18))  # the first budget reached stops
    assert both.step == 5


@pytest.mark.parametrize("bad", [0, -1.0, math.inf])
def test_flop_budget_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="budget_flops"): TrainConfig(budget_flops=bad)


def test_a_given_budget_replaces_the_recipe_budget_as_a_whole():
    "A FLOP budget given to a recipe run must not leave the recipe's wall-clock budget in force beside it."
    from gaussdiff.recipes import _config, recipe
    r = recipe("gir", "mnist", "cpu")
    cfg = _config(r, 0, {"budget_flops": 1e12})
    assert cfg.budget_flops == 1e12 and cfg.budget_minutes is None and cfg.budget_steps is None
    with pytest.raises(ValueError, match="budget keys"): _config(r, 0, {"budget_hours": 1})


def test_cpu_recipes_spend_equal_training_flops_and_sprites_get_their_own_fit():
    from gaussdiff.recipes import CPU_BUDGET_FLOPS, recipe
    g, p = recipe("gir", "mnist", "cpu"), recipe("pixel", "mnist", "cpu")
    assert g.cfg.budget_flops == p.cfg.budget_flops == CPU_BUDGET_FLOPS and g.cfg.budget_minutes is None
    assert p.model_kw["attn_resolutions"] == (8,)
    s = recipe("gir", "sprites", "cpu")
    assert s.n_splats == 64 and s.cfg.budget_flops == CPU_BUDGET_FLOPS / 2 == recipe("pixel", "sprites", "cpu").cfg.budget_flops
    assert recipe("gir", "mnist", "gpu", "paper").cfg.budget_minutes == 120.0  # the paper's wall-clock protocol on a GPU
    assert recipe("pixel", "sprites", "gpu", "paper").cfg.budget_minutes == 30.0  # issue 16 #12: Sprites are budgeted


def test_train_cli_takes_a_flop_budget(tmp_path, capsys):
    import json
    from gaussdiff.recipes import cli
    out = str(tmp_path / "run")
    assert cli(["--space", "gir", "--budget-flops", "1", "--profile", "smoke", "--n", "8", "--out", out, "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["steps"] == 1 and res["train_flops"] > 1  # the first step already spends the budget


def test_load_or_train_says_loudly_when_it_trains_what_it_could_not_load(tmp_path, capsys):
    "Issue 16 #4: a fresh Colab machine silently retrained models (hours at gpu size) that a chapter meant to load."
    from gaussdiff.recipes import load_or_train
    load_or_train("gir", "mnist", "smoke", device="cpu", budget={"budget_steps": 2}, out_dir=tmp_path / "run",
                  n=8, progress=False, preview=False)
    out = capsys.readouterr().out
    assert "TRAINING IT NOW" in out and "budget_steps=2" in out
    load_or_train("gir", "mnist", "smoke", device="cpu", budget={"budget_steps": 2}, out_dir=tmp_path / "run",
                  n=8, progress=False, preview=False)
    again = capsys.readouterr().out
    assert "TRAINING IT NOW" not in again and "not reusing" not in again  # the second call loads the cached run


# ---- mixed precision by GPU generation (issue 25): bf16 where native, else fp16 + GradScaler ----
@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_training_precision_follows_the_gpu(monkeypatch, capability, dtype):
    import gaussdiff.train as T
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cuda = torch.device("cuda")
    assert T._amp_dtype(_cfg(), cuda) == dtype
    assert T._precision_label(T._amp_dtype(_cfg(), cuda)) == ("fp16 autocast + GradScaler" if capability < (8, 0) else "bf16 autocast")
    assert T._amp_dtype(_cfg(amp=False), cuda) is None and T._amp_dtype(_cfg(), torch.device("cpu")) is None


def test_fp16_gradscaler_path_trains_checkpoints_and_resumes_exactly(tmp_path, monkeypatch):
    """The T4's path run on the CPU: float16 autocast + a live GradScaler (before: the scaler was built for "cuda" and
    disabled itself off CUDA, and autocast was CUDA's). Its scale is checkpointed and a resume is bit-exact."""
    import gaussdiff.train as T
    monkeypatch.setattr(T, "_amp_dtype", lambda cfg, device: torch.float16 if cfg.amp else None)
    ref = _run(tmp_path / "a", cfg=_cfg(budget_steps=12))
    ck = read_checkpoint(tmp_path / "a" / "ckpt.pt")
    assert ck["scaler"] and ck["scaler"]["scale"] > 1  # a live scaler, saved with the run
    assert all(math.isfinite(v) for v in ref.history["loss"])
    fp32 = train(_model(), DATA, SCHED, _cfg(budget_steps=12, amp=False), space="toy", device="cpu", progress=False)
    assert ref.history["loss"] != fp32.history["loss"]  # the steps really ran in float16

    def crash(step, loss):
        if step == 8: raise RuntimeError("simulated crash")
    with pytest.raises(RuntimeError): _run(tmp_path / "b", cfg=_cfg(budget_steps=12), callback=crash)
    res = _run(tmp_path / "b", cfg=_cfg(budget_steps=12), resume=True)
    assert _equal_states(ref.model, res.model) and ref.history["loss"] == res.history["loss"]


def test_expected_time_line_after_warm_up(capsys):
    "Before a long run: steps/s measured after a warm-up and the minutes still to go, printed once."
    import gaussdiff.train as T
    eta = T.ExpectedTime(0, 1000, math.inf, torch.device("cpu"), "float32", progress=True, warmup=10)
    for step in range(1, 12): eta.after_step(step, 0.5 + 0.1 * (step - 1))  # first step 0.5 s, then 10 steps/s
    out, err = capsys.readouterr()
    assert "[train]" not in out, "stdout is a command's JSON: the expected-time line goes to stderr"
    out = err
    assert out.count("[train]") == 1 and "10.00 steps/s" in out and "989 more steps" in out and "1.6 more minutes" in out
    minutes = T.ExpectedTime(0, math.inf, 600, torch.device("cpu"), "float32", progress=False, warmup=10)
    for step in range(1, 12): minutes.after_step(step, 0.1 * step)
    assert "10.0 more minutes" in minutes.line and "about 5,989 more steps" in minutes.line  # 598.9 s left at 10 steps/s
    assert "[train]" in capsys.readouterr().err  # quiet runs still say it when more than two minutes remain


def test_a_changed_budget_continues_the_run_never_restarts_it(tmp_path, monkeypatch, capsys):
    """Issue 25: a Colab session ends, the next one asks for another budget — the course run must go on from its
    checkpoint with the new budget (before: it silently started again from step 0)."""
    import gaussdiff.recipes as R
    real_train, steps = R.train, []
    def record(step, loss):
        steps.append(step)
        if step == 3 and crash: raise RuntimeError("the session ended")
    monkeypatch.setattr(R, "train", lambda *a, **k: real_train(*a, callback=record, **k))
    kw = dict(out_dir=tmp_path / "r", n=8, device="cpu", progress=False, preview=False, ckpt_every=2)
    crash = True
    with pytest.raises(RuntimeError): R.run("gir", "mnist", "smoke", budget={"budget_steps": 4}, **kw)
    crash, steps[:] = False, []
    res = R.run("gir", "mnist", "smoke", budget={"budget_steps": 6}, **kw)
    assert steps[0] == 3 and res.step == 6  # resumed from the step-2 checkpoint, on to the new budget
    assert "resuming the unfinished run at step 2" in capsys.readouterr().out
    steps[:] = []
    res = R.run("gir", "mnist", "smoke", budget={"budget_minutes": 1.0, "budget_steps": 8}, **kw)  # a finished run, extended
    assert steps == [7, 8] and res.step == 8 and "continuing the finished run from step 6" in capsys.readouterr().out
    steps[:] = []
    R.run("gir", "mnist", "smoke", budget={"budget_minutes": 1.0, "budget_steps": 8}, **kw)  # the same budget again
    assert steps[0] == 1 and "starting over from step 0: the run there already finished" in capsys.readouterr().out


def test_the_gpu_session_scale_fits_a_t4_session_and_reaches_fig8s_epochs():
    """Issue 25: 07b's four gpu runs took 2 × 120 + 2 × 30 min (the paper's scale), and 20-minute budgets never reached
    Fig 8's epoch snapshots. The default "session" scale: equal training FLOPs per space, under an hour on a T4 at the
    assumed rate, and every snapshot epoch inside the budget (full MNIST: 60,000 digits; Sprites: 1,556 figures)."""
    from gaussdiff.bench import model_flops
    from gaussdiff.recipes import GPU_SCALES, T4_TFLOPS, recipe
    assert GPU_SCALES == ("session", "paper")
    t4_minutes = 0.0
    for dataset, n in (("mnist", 60_000), ("sprites", 1_556)):
        for space in ("gir", "pixel"):
            r = recipe(space, dataset, "gpu")
            assert r.cfg.budget_minutes is None and r.cfg.budget_flops == recipe("gir", dataset, "gpu").cfg.budget_flops
            channels = 1 if dataset == "mnist" else 3
            step_flops = 3 * model_flops(space, "paper", channels=channels)["gflops"] * 1e9 * r.cfg.batch_size  # fwd + bwd
            steps = r.cfg.budget_flops / step_flops
            assert steps / (n // r.cfg.batch_size) >= max(r.snapshot_epochs), (dataset, space)
            t4_minutes += r.cfg.budget_flops / (T4_TFLOPS * 1e12) / 60
    assert 40 < t4_minutes <= 50  # 07b's training, leaving room for Fig 8's sampling in the hour
    assert recipe("gir", "mnist", "gpu", "paper").snapshot_epochs == (10, 20, 50)
    with pytest.raises(ValueError, match="scale"): recipe("gir", "mnist", "gpu", "colab")


def test_a_recipe_with_a_raised_splat_floor_trains_on_its_own_fits_and_never_reuses_plain_ones(tmp_data):
    "09d's lever as a recipe field: its GIRs come from a floored cache, and a run on plain fits is another run."
    import dataclasses
    from gaussdiff import recipes as R
    from gaussdiff.cache import load_gir
    from gaussdiff.checkpoint import CKPT_FORMAT
    from gaussdiff.cache import FitLimits
    r = dataclasses.replace(R.recipe("gir", "mnist", "smoke"), n=8, fit_limits=FitLimits(0.7))
    x, norm, meta, _ = R.recipe_data(r, verbose=False)
    assert meta.fit_min_extent_px == 0.7 and len(x) == 8
    fits = load_gir("mnist", n=8, n_splats=r.n_splats, steps=15, min_extent_px=0.7)
    assert (fits["splats"][..., [2, 4]].exp() * 28).min() >= 0.7 * (1 - 1e-4)
    ck = {"format": CKPT_FORMAT, "finished": True, "config": dataclasses.asdict(r.cfg), "model_config": dict(r.model_kw),
          "schedule": {"T": r.T, "kind": r.schedule}, "space": "gir", "meta": {"gir_features": r.gir_features}}
    assert "fits' splat floor 0.2 px != 0.7 px" in R.run_differs(ck, r, r.cfg)   # a run from before the floor
    assert R.run_differs({**ck, "meta": meta.as_dict()}, r, r.cfg) is None
    plain = dataclasses.replace(r, fit_limits=FitLimits())
    assert "fits' splat floor 0.7 px != 0.2 px" in R.run_differs({**ck, "meta": meta.as_dict()}, plain, plain.cfg)


def test_a_moved_run_folder_keeps_its_snapshots(tmp_path):
    "A run folder copied elsewhere (to Drive, another machine) loads its snapshots from beside its checkpoint."
    import shutil
    res = _run(tmp_path / "here", snapshot_fracs=(0.5, 1.0), meta=DataInfo("toy", "toy"))
    shutil.move(tmp_path / "here", tmp_path / "there")
    *_, info = load_checkpoint(tmp_path / "there" / "ckpt.pt", device="cpu")
    assert [Path(s["path"]) for s in info.snapshots] == [tmp_path / "there" / "snapshots" / Path(s["path"]).name
                                                        for s in res.snapshots]
    snap, *_ = load_checkpoint(info.snapshots[-1]["path"], device="cpu")
    assert _equal_states(snap, res.ema.model)


def test_the_doll_recipe_trains_on_clamped_floored_fits_and_never_reuses_other_runs(tmp_data):
    "09d: the Dolls' cpu and smoke GIR recipe fits with splats >= 0.7 px and colours in [0, 1]; other fits are other runs."
    import dataclasses
    from gaussdiff import recipes as R
    from gaussdiff.cache import load_gir
    from gaussdiff.checkpoint import CKPT_FORMAT
    from gaussdiff.cache import FitLimits
    for profile in ("smoke", "cpu"):
        r = R.recipe("gir", "dolls", profile)
        assert r.fit_limits == FitLimits(min_extent_px=0.7, clamp_colours=True) == R.DOLL_FIT_LIMITS
    assert R.recipe("gir", "dolls", "gpu").fit_limits == R.recipe("gir", "sprites", "cpu").fit_limits == FitLimits()
    r = dataclasses.replace(R.recipe("gir", "dolls", "smoke"), n=4)
    x, norm, meta, _ = R.recipe_data(r, verbose=False)
    assert meta.fit_clamp_colours is True and meta.fit_min_extent_px == 0.7
    fits = load_gir("dolls", n=4, n_splats=r.n_splats, steps=60, min_extent_px=0.7, clamp_colours=True)
    assert fits["splats"][..., 5:8].min() >= 0 and fits["splats"][..., 5:8].max() <= 1 and len(x) == 4
    ck = {"format": CKPT_FORMAT, "finished": True, "config": dataclasses.asdict(r.cfg), "model_config": dict(r.model_kw),
          "schedule": {"T": r.T, "kind": r.schedule}, "space": "gir",
          "meta": {"gir_features": r.gir_features, "fit_min_extent_px": 0.7}}
    assert "fits' colours clamped to [0, 1]: False != True" in R.run_differs(ck, r, r.cfg)   # a run from before the clamp
    assert R.run_differs({**ck, "meta": meta.as_dict()}, r, r.cfg) is None

"Unit tests for gaussdiff.core: profiles, devices, seeding, image grids, atomic writes, the CLI."
import json, os, random

import numpy as np
import pytest
import torch

from gaussdiff.core import (PROFILES, atomic_path, by_profile, check_images, data_dir, get_device, main, make_grid,
                            resolve_profile, save_grid, save_json, save_results, seed_everything)


# --- profiles -------------------------------------------------------------------------------------------------

def test_resolve_profile_named_and_auto():
    for p in PROFILES: assert resolve_profile(p) == p
    assert resolve_profile("auto") == ("gpu" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown profile"): resolve_profile("fast")


def test_by_profile_picks_and_complains():
    assert by_profile("smoke", smoke=1, cpu=2, gpu=3) == 1
    assert by_profile("gpu", smoke=1, cpu=2, gpu=3) == 3
    assert by_profile("auto", smoke=1, cpu=2, gpu=3) == (3 if torch.cuda.is_available() else 2)
    assert by_profile("cpu", smoke=1, cpu=None, gpu=3) is None  # None is a legitimate choice ("all")
    with pytest.raises(KeyError, match="cpu"): by_profile("cpu", smoke=1, gpu=3)
    with pytest.raises(ValueError): by_profile("huge", smoke=1)


# --- devices and seeding --------------------------------------------------------------------------------------

def test_get_device_auto_and_cpu():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")
    assert get_device("auto").type in ("cuda", "mps", "cpu")


def test_get_device_errors():
    with pytest.raises(ValueError, match="unknown device"): get_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"): get_device("cuda")
    if not (torch.backends.mps.is_available()):
        with pytest.raises(ValueError, match="MPS is not available"): get_device("mps")


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_repeats():
    g1 = seed_everything(123); a = _draws(); r1 = torch.rand(4, generator=g1)
    g2 = seed_everything(123); b = _draws(); r2 = torch.rand(4, generator=g2)
    assert a == b and torch.equal(r1, r2)
    seed_everything(124)
    assert _draws() != a
    for bad in (-1, 1.5, "0"):
        with pytest.raises(ValueError): seed_everything(bad)


# --- image grids ----------------------------------------------------------------------------------------------

def test_make_grid_shape_and_values():
    x = torch.rand(5, 3, 4, 6)
    g = make_grid(x, nrow=3, pad=1, pad_value=1.0)
    assert g.shape == (2 * (4 + 1) + 1, 3 * (6 + 1) + 1, 3) and g.dtype == np.float32
    # image 4 sits in row 1, column 1 of the grid
    np.testing.assert_allclose(g[1 + 5:1 + 5 + 4, 1 + 7:1 + 7 + 6], x[4].permute(1, 2, 0).numpy())
    np.testing.assert_allclose(g[0], 1.0)               # padding
    np.testing.assert_allclose(g[6:10, 15:22], 1.0)     # the empty sixth slot stays pad_value


def test_make_grid_grey_expands_and_nrow_clamps():
    x = torch.linspace(0, 1, 2 * 3 * 3).reshape(2, 1, 3, 3)
    g = make_grid(x, nrow=10, pad=0)
    assert g.shape == (3, 6, 3)
    np.testing.assert_allclose(g[..., 0], g[..., 2])
    np.testing.assert_allclose(g[:, 3:, 1], x[1, 0].numpy())


@pytest.mark.parametrize("bad, msg", [(torch.rand(2, 2, 4, 4), r"\[B,C,H,W\]"), (torch.rand(0, 3, 4, 4), "empty"),
                                      (torch.full((1, 1, 2, 2), float("nan")), "NaN"),
                                      (torch.full((1, 1, 2, 2), 2.0), r"\[0,1\]")])
def test_check_images_rejects(bad, msg):
    with pytest.raises(ValueError, match=msg): check_images(bad)


def test_save_grid_writes_png(tmp_path):
    from PIL import Image
    p = save_grid(torch.rand(4, 3, 8, 8), tmp_path / "g.png", nrow=2, upscale=2)
    assert Image.open(p).size == (2 * (2 * 9 + 1), 2 * (2 * 9 + 1))


# --- atomic writes --------------------------------------------------------------------------------------------

def test_atomic_path_keeps_old_file_when_writer_raises(tmp_path):
    target = tmp_path / "cache.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.bin"]  # no temp file left behind
    with atomic_path(target) as tmp: tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_save_json_round_trip(tmp_path):
    obj = {"b": [1, 2.5, None], "a": {"nested": "x"}, "path": tmp_path}
    p = save_json(obj, tmp_path / "sub" / "r.json")
    back = json.loads(p.read_text())
    assert back == {"b": [1, 2.5, None], "a": {"nested": "x"}, "path": str(tmp_path)}
    assert save_results("x", {"k": 1}, None) is None
    assert json.loads(save_results("x", {"k": 1}, tmp_path).read_text()) == {"k": 1}


def test_data_dir_follows_env(tmp_data):
    assert data_dir() == tmp_data and os.environ["GAUSSDIFF_DATA"] == str(tmp_data)


# --- CLI ------------------------------------------------------------------------------------------------------

def test_main_help_and_unknown(capsys):
    assert main(["--help"]) == 0
    assert "usage: gaussdiff" in capsys.readouterr().out
    assert main([]) == 0
    assert main(["frobnicate"]) == 2
    assert "usage: gaussdiff" in capsys.readouterr().out


def test_main_course_help(capsys):
    assert main(["course", "--help"]) == 0 and "--profile" in capsys.readouterr().out


def test_device_name_is_the_cpu_model_on_cpu():
    from gaussdiff.core import device_name
    name = device_name("cpu")
    assert isinstance(name, str) and name and name != "cuda"
    from pathlib import Path
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and "model name" in cpuinfo.read_text():
        assert name in cpuinfo.read_text()


def test_bf16_native_goes_by_compute_capability_not_emulation(monkeypatch):
    "A T4 (sm 7.5) reports is_bf16_supported() True (emulated): training and timing must take the fp16 path there."
    import torch
    from gaussdiff.core import bf16_native
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert not bf16_native("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    assert bf16_native("cuda") and not bf16_native("cpu")


def test_no_module_decides_bf16_by_is_bf16_supported():
    from conftest import ROOT
    users = [p.name for p in (ROOT / "gaussdiff").glob("*.py") if "is_bf16_supported" in p.read_text()]
    assert users == [], f"decide bf16 with core.bf16_native (compute capability), not is_bf16_supported: {users}"


def test_tf32_sets_matmul_and_conv_together_and_restores():
    "Issue 16 #6: PyTorch's defaults (cuDNN TF32 on, matmul off) would time a U-Net and a transformer in different precisions."
    import torch
    from gaussdiff.core import tf32
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True  # the defaults
    try:
        with tf32(False, torch.device("cuda")):
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        with tf32(True, "cuda"):
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, True)
        with tf32(False, "cpu"):  # a no-op off CUDA
            assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def test_sampling_rows_say_their_precision():
    import torch
    from gaussdiff.compare import evaluate_sampler
    from gaussdiff.diffusion import Schedule
    from gaussdiff.layers import TinyDenoiser
    from gaussdiff.checkpoint import DataInfo
    meta = DataInfo("pixel", image_size=(28, 28), sample_shape=(1, 32, 32), x0_clip=1.0)
    ref = torch.rand(16, 1, 28, 28)
    row, imgs = evaluate_sampler(TinyDenoiser(shape=(1, 32, 32)), Schedule(10), None, meta, ref, "smoke", n=8, steps=5,
                                 kid_subsets=2, kid_subset_size=8)
    assert row["numerics"] == "float32, TF32 off" and 0 <= row["precision"] <= 1 and imgs.shape == (8, 1, 28, 28)


# --- a user's mistake: one line, exit 2, nothing created or changed (issue 27) --------------------------------

@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    "A 3-step pixel checkpoint (MLP on 1×8×8) to point CLIs at."
    from gaussdiff.checkpoint import DataInfo
    from gaussdiff.diffusion import Schedule
    from gaussdiff.layers import TinyDenoiser
    from gaussdiff.train import TrainConfig, train
    out = tmp_path_factory.mktemp("ck")
    torch.manual_seed(0)
    meta = DataInfo("pixel", "toy", image_size=(6, 6), sample_shape=(1, 8, 8), x0_clip=1.0)
    train(TinyDenoiser(shape=(1, 8, 8), hidden=8, t_dim=8), torch.rand(16, 1, 8, 8) * 2 - 1, Schedule(T=10),
          TrainConfig(budget_steps=1), space="pixel", out_dir=out, meta=meta, device="cpu", progress=False)
    return (out / "ckpt.pt").read_bytes()


def _tree(root):
    "Every path under `root` with its size, mtime and bytes: what a refused command must leave as it was."
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_mtime_ns, None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*"))}


TRAIN = ["train", "--space", "pixel", "--profile", "smoke", "--n", "8", "--device", "cpu"]
MISTAKES = {  # issue 27 item: gaussdiff arguments (in a folder holding run/ckpt.pt, a.npz, b.json, a_file, empty.npz)
    "1 gif onto the checkpoint": (["sample", "--ckpt", "run/ckpt.pt", "--gif", "run/ckpt.pt"], "--gif must end in .gif"),
    "1 gif as .txt": (["sample", "--ckpt", "run/ckpt.pt", "--gif", "g.txt"], "--gif must end in .gif"),
    "1 out onto the checkpoint": (["sample", "--ckpt", "run/ckpt.pt", "--out", "run/ckpt.pt"], "--out must end in"),
    "1 out exists": (["sample", "--ckpt", "run/ckpt.pt", "--out", "a.npz"], "already exists: pass --overwrite"),
    "1 bench json onto the checkpoint": (["bench", "--json", "run/ckpt.pt"], "--json must end in .json"),
    "1 bench json exists": (["bench", "--json", "b.json"], "already exists"),
    "4 empty npz": (["eval", "empty.npz"], "EOFError"),
    "6 guidance nan": (["sample", "--ckpt", "run/ckpt.pt", "--out", "s.png", "--guidance", "nan"], "--guidance must be a finite"),
    "6 guidance inf": (["sample", "--ckpt", "run/ckpt.pt", "--out", "s.png", "--guidance", "inf"], "--guidance must be a finite"),
    "7 n a billion": (["sample", "--ckpt", "run/ckpt.pt", "--out", "s.png", "--n", "1000000000"], "--n must be in 1..100000"),
    "8 a run folder as --ckpt": (["sample", "--ckpt", "run", "--out", "s.png"], "is a folder, not a checkpoint: give run/ckpt.pt"),
    "10 budget steps 0": ([*TRAIN, "--out", "new", "--budget-steps", "0"], "budget_steps must be an int >= 1"),
    "10 budget minutes -1": ([*TRAIN, "--out", "new", "--budget-minutes", "-1"], "budget_minutes must be a finite number > 0"),
    "10 ckpt every 0": ([*TRAIN, "--out", "new", "--ckpt-every", "0"], "--ckpt-every must be >= 1"),
    "10 seed -1": ([*TRAIN, "--out", "new", "--seed", "-1"], "--seed must be >= 0"),
    "10 resume nothing": ([*TRAIN, "--out", "new", "--resume"], "nothing to resume"),
    "10 frontier device": (["frontier", "--profile", "smoke", "--device", "mps"], "MPS is not available"),
    "11 resume and overwrite": ([*TRAIN, "--out", "run", "--resume", "--overwrite"], "give one of them"),
    "14 fit seed -1": (["fit", "--n", "4", "--seed", "-1"], "--seed must be >= 0"),
    "15 bench json under a file": (["bench", "--json", "a_file/b.json"], "is a file, not a folder"),
    "15 bench json a folder": (["bench", "--json", "run"], "is a folder"),
    "15 bench modes": (["bench", "--device", "cpu", "--modes", "cuda-graphs"], "can run here: cuda-graphs is a CUDA option"),
    "15 bench e2e": (["bench", "--e2e-steps", "-5"], "--e2e-steps must be >= 0"),
    "16 only without names": (["course", "--only"], "expected at least one argument"),
    "16 only empty": (["course", "--only", ""], "--only needs chapter prefixes"),
    "16 out a file": (["course", "--profile", "smoke", "--only", "00", "--out", "a_file"], "is a file, not a folder"),
    "16 a misspelt command": (["cours"], "unknown command 'cours' (did you mean 'course'?)"),
    "16 an option prefix": (["course", "--profil", "smoke"], "unrecognized arguments: --profil"),
    "16 a prefix in sample": (["sample", "--ckpt", "run/ckpt.pt", "--ou", "x.png"], "unrecognized arguments: --ou"),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_users_mistake_is_one_line_exit_2_and_touches_nothing(case, tiny_ckpt, tmp_path, monkeypatch, capsys):
    if "mps" in MISTAKES[case][0] and get_device("auto").type == "mps": pytest.skip("MPS is available here")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ckpt.pt").write_bytes(tiny_ckpt)
    (tmp_path / "data").mkdir()
    for name, content in (("a.npz", b"old samples"), ("b.json", b"{}"), ("a_file", b"x"), ("empty.npz", b"")):
        (tmp_path / name).write_bytes(content)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GAUSSDIFF_DATA", str(tmp_path / "data"))
    before = _tree(tmp_path)
    argv, msg = MISTAKES[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and msg in last and "error" in last, err
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("module,attr,argv", [("gaussdiff.compare", "evaluate_file", ["eval", "s.npz"]),
                                              ("gaussdiff.recipes", "recipe_data", [*TRAIN, "--out", "r"])])
def test_an_unwritable_data_folder_names_gaussdiff_data(module, attr, argv, monkeypatch, tmp_path, capsys):
    "Item 5: a read-only GAUSSDIFF_DATA (PermissionError where a cache is written) is one line naming the fix."
    import importlib
    def denied(*a, **k): raise PermissionError(13, "Permission denied", "/ro/data/mnist_5k.npz")
    monkeypatch.setattr(importlib.import_module(module), attr, denied)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "set GAUSSDIFF_DATA to a writable folder" in err


def test_lock_liveness_never_sends_a_signal_on_windows(monkeypatch):
    "Portability: on Windows os.kill(pid, 0) is CTRL_C_EVENT, so the owner's liveness is asked through OpenProcess."
    import gaussdiff.commands as core
    def no_kill(*a): raise AssertionError("os.kill called")
    monkeypatch.setattr(core, "_WINDOWS", True)
    monkeypatch.setattr(core.os, "kill", no_kill)
    monkeypatch.setattr(core, "_win_pid_alive", lambda pid: pid == 1234)
    assert core.pid_alive(1234) and not core.pid_alive(999)

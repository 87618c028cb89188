"Caches load without running code, are checked against the request, and written files honour the umask."
import os, shutil

import pytest
import torch

from gaussdiff.cache import encode_dataset, gir_path, load_gir
from gaussdiff.core import save_json, save_torch_atomic


class _Payload:
    "Unpickling this runs a shell command: what a hostile cache file would carry."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))


def test_a_cache_with_a_code_payload_is_refused_without_running_it(tmp_data):
    marker = tmp_data / "pwned"
    path = gir_path("mnist", 8, 12, "train", 3)
    path.parent.mkdir(parents=True)
    torch.save({"splats": _Payload(marker)}, path)
    with pytest.raises(ValueError, match="corrupt or not a plain GIR cache"):
        load_gir(path)
    assert not marker.exists()


def test_a_block_file_with_a_payload_is_ignored_without_running_it(tmp_data):
    marker = tmp_data / "pwned"
    path = gir_path("mnist", 8, 12, "train", 3)
    (path.with_name(path.stem + ".blocks")).mkdir(parents=True)
    torch.save(_Payload(marker), path.with_name(path.stem + ".blocks") / "0000000.pt")
    encode_dataset("mnist", n=8, n_splats=12, steps=3, block=4, progress=False, verbose=False)
    assert not marker.exists() and load_gir(path)["splats"].shape == (8, 12, 8)


def test_a_cache_is_checked_against_what_was_asked(tmp_data):
    sprites = encode_dataset("sprites", n=4, n_splats=12, steps=3, progress=False, verbose=False)
    fake = gir_path("mnist", 4, 12, "train", 3)
    shutil.copy(sprites, fake)   # a sprites cache renamed into the MNIST name
    with pytest.raises(ValueError, match="does not hold what was asked for: name 'sprites'"):
        load_gir("mnist", n=4, n_splats=12, steps=3)
    fake.unlink()
    mnist = encode_dataset("mnist", n=4, n_splats=12, steps=3, progress=False, verbose=False)
    shutil.copy(mnist, gir_path("mnist", 4, 24, "train", 3))   # an N=12 cache under an N=24 name
    with pytest.raises(ValueError, match="n_splats 12 \\(asked for 24\\)"):
        load_gir("mnist", n=4, n_splats=24, steps=3)


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_load_gir_refuses_counts_that_would_trim_silently(tmp_data, n):
    encode_dataset("mnist", n=4, n_splats=12, steps=3, progress=False, verbose=False)
    with pytest.raises(ValueError, match="n must be a positive int"):
        load_gir("mnist", n=n, n_splats=12, steps=3)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        a = save_json({"a": 1}, tmp_path / "r.json")
        b = save_torch_atomic({"t": torch.zeros(2)}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    assert (a.stat().st_mode & 0o777, b.stat().st_mode & 0o777) == (mode, mode)


@pytest.mark.parametrize("args,msg", [(["--n", "0"], "--n must be >= 1"), (["--n", "-5"], "--n must be >= 1"),
                                      (["--steps", "-1"], "--steps must be >= 1"), (["--n-splats", "0"], "--n-splats must be >= 1"),
                                      (["--threads", "0"], "--threads must be >= 1"), (["--bench", "--repeats", "0"], "--repeats must be >= 1"),
                                      (["--device", "cuda"], "CUDA is not available"), (["--dataset", "sprites", "--split", "test"], "no test split"),
                                      (["--n", "999999"], "only")])
def test_fit_cli_errors_are_messages_not_tracebacks(args, msg, capsys, tmp_data):
    import torch
    from gaussdiff.cache import cli
    if "cuda" in args and torch.cuda.is_available(): pytest.skip("CUDA is available here")
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("gaussdiff fit: error:") and msg in err and "Traceback" not in err


def test_course_cli_errors(tmp_path, capsys):
    from gaussdiff.core import main
    assert main(["course", "--profile", "bogus", "--out", str(tmp_path / "o")]) == 2
    assert "profile" in capsys.readouterr().err
    assert main(["course", "--profile", "smoke", "--only", "zz", "--out", str(tmp_path / "o2")]) == 2
    assert "no notebooks matched" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_train_and_sample_refuse_non_finite_settings():
    from gaussdiff.train import TrainConfig
    from gaussdiff.sample import sample
    from gaussdiff.diffusion import Schedule
    for bad in (float("inf"), float("nan"), 0):
        with pytest.raises(ValueError, match="finite number > 0"): TrainConfig(budget_minutes=bad)
    for eta in (float("nan"), float("inf"), 5.0, -0.1):
        with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
            sample(torch.nn.Linear(2, 2), Schedule(10), (1, 2), sampler="ddim", eta=eta)


def test_16_bit_pngs_are_scaled_by_their_bit_depth(tmp_path):
    import numpy as np
    from PIL import Image
    from gaussdiff.data import read_sprite_path
    ramp = np.tile(np.linspace(0, 65535, 32).round().astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    with Image.open(tmp_path / "ramp16.png") as im: assert im.mode.startswith("I")   # PIL reads it as 16/32-bit
    x = read_sprite_path(tmp_path, 32).astype(np.float64) / 255
    assert abs(x.mean() - 0.5) < 0.02 and x[0, :, 0].max() < 0.01 and x[0, :, -1].min() > 0.99


def test_hidden_sidecar_files_are_skipped(tmp_path):
    import numpy as np
    from PIL import Image
    from gaussdiff.data import read_sprite_path
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "._x.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")   # what macOS leaves beside copied files
    assert read_sprite_path(tmp_path, 32).shape == (1, 32, 32, 3)


def test_render_never_returns_nan_for_accepted_splats():
    from gaussdiff.splats import render
    g = torch.Generator().manual_seed(0)
    s = torch.cat([torch.rand(1, 150, 2, generator=g), torch.randn(1, 150, 3, generator=g) * 0.3 - 3.3, torch.rand(1, 150, 3, generator=g)], -1)
    s[0, 0, :2] = torch.tensor([0.5 + 0.5 / 28, 0.5 + 0.5 / 28])   # exactly on a pixel centre
    s[0, 0, 2] = s[0, 0, 4] = -100.0                                # log-scale -100: exp(100) overflows float32
    img = render(s, (28, 28), channels=1, clamp=False)
    assert torch.isfinite(img).all()
    ok = render(s[:, 1:], (28, 28), channels=1, clamp=False)
    assert (img - ok).abs().max() <= s[0, 0, 5:].mean() + 1e-6   # the degenerate splat adds at most its colour, at one pixel


def _toy_train(out, **kw):
    from gaussdiff.diffusion import Schedule
    from gaussdiff.layers import TinyDenoiser
    from gaussdiff.train import TrainConfig, train
    torch.manual_seed(0)
    cfg = kw.pop("cfg", TrainConfig(budget_steps=20, batch_size=8, warmup_steps=2, ckpt_every=1000, lr=1e-3))
    data = torch.randn(64, 2, 8, generator=torch.Generator().manual_seed(0))
    return train(TinyDenoiser(shape=(2, 8), hidden=16, t_dim=8), data, Schedule(10), cfg, space="toy", out_dir=out,
                 device="cpu", progress=False, **kw)


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    import signal
    from gaussdiff.checkpoint import read_checkpoint
    before = signal.getsignal(signal.SIGINT)
    ref = _toy_train(tmp_path / "ref")
    def ctrl_c(step, loss):
        if step == 7: os.kill(os.getpid(), signal.SIGINT)   # what Ctrl-C or Jupyter's interrupt sends
    with pytest.raises(KeyboardInterrupt, match="SIGINT at step 7: checkpoint saved"):
        _toy_train(tmp_path / "b", callback=ctrl_c)
    assert read_checkpoint(tmp_path / "b" / "ckpt.pt")["step"] == 7   # ckpt_every=1000: only the interrupt saved it
    res = _toy_train(tmp_path / "b", resume=True)
    assert all(torch.equal(a, b) for a, b in zip(ref.model.state_dict().values(), res.model.state_dict().values()))
    assert signal.getsignal(signal.SIGINT) is before   # the handlers were put back


def test_a_run_folder_is_locked_and_not_overwritten_by_accident(tmp_path):
    from gaussdiff.checkpoint import run_lock
    from gaussdiff.commands import read_lock
    out = tmp_path / "run"
    _toy_train(out)
    with pytest.raises(ValueError, match="already holds a run \\(step 20\\).*--resume.*--overwrite"):
        _toy_train(out)
    (out / "snapshots").mkdir()
    (out / "snapshots" / "ema_step0000005.pt").write_bytes(b"old")
    (out / ".ckpt.pt.abc123.tmp").write_bytes(b"orphan")
    _toy_train(out, overwrite=True)
    assert not list(out.glob("snapshots/*.pt")) and not list(out.glob(".*.tmp")) and not (out / ".lock").exists()
    (out / ".lock").write_text("1")   # pid 1 is alive: another training holds the folder
    with pytest.raises(ValueError, match="another training \\(pid 1\\)"):
        _toy_train(out, resume=True)
    (out / ".lock").write_text("999999999")   # a dead pid: a stale lock is taken over
    with run_lock(out): assert read_lock(out / ".lock")[0].pid == os.getpid()


def test_train_cli_refuses_a_second_run_into_one_folder(tmp_path, capsys):
    from gaussdiff.recipes import cli
    base = ["--space", "pixel", "--profile", "smoke", "--n", "8", "--out", str(tmp_path / "r"), "--device", "cpu", "--budget-steps", "2"]
    assert cli(base) == 0
    capsys.readouterr()
    assert cli(base) == 2 and "already holds a run" in capsys.readouterr().err
    assert cli(base + ["--overwrite"]) == 0
    capsys.readouterr()
    assert cli(base + ["--n", "-1"]) == 2 and "--n must be >= 1" in capsys.readouterr().err


def test_unwritable_outputs_fail_before_the_work(tmp_path, tmp_data, capsys, monkeypatch):
    from gaussdiff import cache
    from gaussdiff.recipes import cli
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    calls = []
    monkeypatch.setattr(cache, "fit_splats", lambda *a, **k: calls.append(1))
    assert cli(["--space", "pixel", "--profile", "smoke", "--n", "8", "--out", str(blocker / "run"), "--device", "cpu"]) == 2
    assert "cannot write to" in capsys.readouterr().err
    monkeypatch.setenv("GAUSSDIFF_DATA", str(blocker / "data"))
    with pytest.raises(ValueError, match="cannot (write to|create the data folder)"):
        encode_dataset("mnist", n=4, n_splats=12, steps=3, progress=False, verbose=False)
    assert calls == []   # nothing was fitted


def test_bad_fit_and_splat_arguments_are_refused():
    from gaussdiff.data import load_mnist
    from gaussdiff.fit import DEFAULT_LR, fit_splats
    from gaussdiff.splats import make_splats
    x = load_mnist(2, verbose=False)[0]
    for bad in ({**DEFAULT_LR, "position": float("nan")}, {**DEFAULT_LR, "colour": -1.0}, {"shear": float("inf")}):
        with pytest.raises(ValueError, match="learning rates|lr lacks"):
            fit_splats(x, 12, 2, lr=bad, progress=False)
    for sigma in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="finite and > 0"):
            make_splats([0.5, 0.5], sigma)


def test_data_rebuild_keeps_the_old_cache_when_the_rebuild_fails(tmp_data, capsys, monkeypatch):
    import numpy as np
    from gaussdiff import data
    cache = tmp_data / "sprites_crawl.npz"
    with open(cache, "wb") as f: np.savez(f, x=np.zeros((3, 32, 32, 3), np.uint8), version=np.array(data.CRAWL_CUT_VERSION))
    before = cache.read_bytes()
    def offline(*a, **k): raise FileNotFoundError("crawl-tiles-data could not be downloaded (offline)")
    monkeypatch.setattr(data, "find_crawl_tiles", offline)
    assert data.cli(["--rebuild"]) == 2
    assert "the existing caches were kept" in capsys.readouterr().err
    assert cache.read_bytes() == before and len(data.load_sprites(verbose=False)) == 3


def test_unreadable_is_not_called_corrupt_and_is_left_alone(tmp_data, monkeypatch):
    "Root reads every file, so the permission error is simulated; the point is what the loaders do with it."
    import numpy as np
    from gaussdiff import data
    from gaussdiff.checkpoint import read_checkpoint
    data.load_mnist(8, verbose=False)                     # writes data/mnist_5k.npz
    cache = tmp_data / "mnist_5k.npz"
    before = cache.read_bytes()
    def denied(*a, **k): raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(np, "load", denied)
    with pytest.raises(ValueError, match="unreadable.*left alone"):
        data.load_mnist(8, verbose=False)
    assert cache.read_bytes() == before                   # not rebuilt over another user's cache
    monkeypatch.setattr(torch, "load", denied)
    (tmp_data / "ckpt.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="unreadable"): read_checkpoint(tmp_data / "ckpt.pt")
    gp = tmp_data / "g.pt"
    gp.write_bytes(b"x")
    with pytest.raises(ValueError, match="unreadable"): load_gir(gp)


def test_an_interrupted_course_run_is_resumed_not_restarted(tmp_data, monkeypatch):
    "Issue 16 #3: a Colab disconnect (here: SIGINT at step 7) must not cost the run; run() resumes it by default."
    import signal
    from gaussdiff import recipes as R
    from gaussdiff.checkpoint import read_checkpoint
    ref = R.run("pixel", "mnist", "smoke", out_dir=tmp_data / "ref", n=8, progress=False, verbose=False, preview=False)
    real_train = R.train
    def interrupted(*a, **k):
        def ctrl_c(step, loss):
            if step == 7: os.kill(os.getpid(), signal.SIGINT)
        return real_train(*a, callback=ctrl_c, **k)
    monkeypatch.setattr(R, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        R.run("pixel", "mnist", "smoke", out_dir=tmp_data / "b", n=8, progress=False, verbose=False, preview=False)
    monkeypatch.setattr(R, "train", real_train)
    ck = read_checkpoint(tmp_data / "b" / "ckpt.pt")
    assert ck["step"] == 7 and not ck["finished"]
    res = R.run("pixel", "mnist", "smoke", out_dir=tmp_data / "b", n=8, progress=False, verbose=False, preview=False)
    assert res.step == ref.step and res.history["loss"][:7] == ck["history"]["loss"]
    assert all(torch.equal(a, b) for a, b in zip(ref.model.state_dict().values(), res.model.state_dict().values()))


def test_a_full_disk_during_training_is_one_line_and_keeps_the_old_checkpoint(tmp_path, capsys, monkeypatch):
    "Issue 27 item 12: torch.save reports ENOSPC as `RuntimeError: unexpected pos`; a CLI says 'no space left on device'."
    import errno, io
    import gaussdiff.core as core
    from gaussdiff.checkpoint import read_checkpoint
    from gaussdiff.train import TrainConfig
    out = tmp_path / "run"
    _toy_train(out)
    class Full(io.FileIO):   # the disk fills after the first few kilobytes
        def write(self, b):
            if self.tell() > 4096: raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(b)
    monkeypatch.setattr(core, "open", lambda path, mode="r", *a, **k: Full(path, mode.replace("b", "")) if "w" in mode else open(path, mode, *a, **k),
                        raising=False)
    cfg = TrainConfig(budget_steps=30, batch_size=8, warmup_steps=2, ckpt_every=5, lr=1e-3)
    @core.cli_command("gaussdiff train")
    def train_cli(argv): _toy_train(out, resume=True, cfg=cfg)
    assert train_cli([]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(f"gaussdiff train: error: no space left on device writing {out / 'ckpt.pt'}")
    assert read_checkpoint(out / "ckpt.pt")["step"] == 20   # the old checkpoint is whole
    assert not list(out.rglob(".*.tmp"))

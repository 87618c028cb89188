"Checkpoints rebuild only the course's own denoisers: a file cannot name a class to import or arguments to pass."
import os, time

import pytest
import torch

from gaussdiff.checkpoint import MODEL_CLASSES, build_model, load_checkpoint, read_checkpoint
from gaussdiff.diffusion import Schedule
from gaussdiff.layers import TinyDenoiser
from gaussdiff.train import TrainConfig, train


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    train(TinyDenoiser(shape=(2, 8), hidden=8, t_dim=8), torch.randn(16, 2, 8), Schedule(10),
          TrainConfig(budget_steps=2, batch_size=4, warmup_steps=1), space="toy", out_dir=tmp_path, device="cpu", progress=False)
    return tmp_path / "ckpt.pt"


def test_a_checkpoint_naming_popen_runs_nothing(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    ck = read_checkpoint(ckpt)
    evil = dict(ck, model_class="subprocess.Popen", model_config={"args": ["touch", str(marker)]})
    torch.save(evil, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not one of the course's denoisers"):
        load_checkpoint(tmp_path / "evil.pt", device="cpu")
    assert not marker.exists()
    with pytest.raises(ValueError, match="not one of the course's denoisers"):
        build_model(dict(ck, model_class="os.system", model_config={"command": f"touch {marker}"}))
    assert not marker.exists()


def test_model_config_is_checked_before_the_call(ckpt):
    ck = read_checkpoint(ckpt)
    with pytest.raises(ValueError, match="does not take"):
        build_model(dict(ck, model_config={**ck["model_config"], "evil": 1}))
    with pytest.raises(ValueError, match="non-plain"):
        build_model(dict(ck, model_config={**ck["model_config"], "hidden": {"nested": 1}}))
    with pytest.raises(ValueError, match="must be a dict"):
        build_model(dict(ck, model_config=[1, 2]))
    with pytest.raises(ValueError, match="does not build"):
        build_model(dict(ck, model_config={**ck["model_config"], "hidden": -3}))


def test_allowed_classes_and_the_old_tinydenoiser_name(ckpt, tmp_path):
    assert set(MODEL_CLASSES) >= {"gaussdiff.transformer.GaussianTransformer", "gaussdiff.unet.PixelUNet",
                                  "gaussdiff.layers.TinyDenoiser", "gaussdiff.train.TinyDenoiser"}
    ck = read_checkpoint(ckpt)
    torch.save(dict(ck, model_class="gaussdiff.train.TinyDenoiser"), tmp_path / "old.pt")
    model, *_ = load_checkpoint(tmp_path / "old.pt", device="cpu")
    assert isinstance(model, TinyDenoiser)


def test_run_info_is_typed_and_reads_older_checkpoints(ckpt, tmp_path):
    "`load_checkpoint` returns a RunInfo; a checkpoint from before the form was recorded (meta {}) or from a newer course loads."
    from gaussdiff.checkpoint import DataInfo, RunInfo
    _, _, _, info = load_checkpoint(ckpt, device="cpu")
    assert isinstance(info, RunInfo) and info.space == "toy" and info.step == 2 and info.finished
    assert info.train_flops_per_step > 0 and info.trained_flops() == 2 * info.train_flops_per_step
    ck = read_checkpoint(ckpt)
    old = dict(ck, space="gir", meta={"dataset": "mnist", "image_size": [28, 28], "sample_shape": [2, 8], "_snapshots": [{"step": 1}],
                                      "a_newer_field": 7})
    torch.save(old, tmp_path / "old.pt")
    _, _, _, info = load_checkpoint(tmp_path / "old.pt", device="cpu")
    assert info.gir_features == "cholesky"  # GIR runs before the feature form was recorded diffused Cholesky numbers
    assert info.image_size == (28, 28) and info.sample_shape == (2, 8) and info.snapshots == [{"step": 1}]
    assert info.train_flops_per_step == 0 and not hasattr(info, "a_newer_field")
    d = DataInfo("pixel", "sprites", image_size=(32, 32), channels=3, sample_shape=(3, 32, 32), x0_clip=1.0)
    assert d.gir_features is None and DataInfo.from_dict(d.as_dict()) == d and d.as_dict()["image_size"] == [32, 32]


def _nan_weights(ck):
    for w in ck["ema"]["model"].values():
        if w.is_floating_point(): w.fill_(float("nan"))


@pytest.mark.parametrize("tamper,match", [
    (lambda ck: ck.pop("space"), "has no 'space' entry"),
    (lambda ck: ck.pop("meta"), "has no 'meta' entry"),
    (lambda ck: ck.update(step="2"), "has 'step' of type str"),
    (lambda ck: ck["ema"]["model"].update({next(iter(ck["ema"]["model"])): torch.zeros(3, 3)}), "has weights that do not fit TinyDenoiser: size mismatch for"),
    (lambda ck: ck["meta"].update(x0_clip="abc"), "x0_clip='abc'"),
    (lambda ck: ck["meta"].update(guidance=float("nan")), "guidance=nan"),
    (lambda ck: ck["schedule"].update(T=0), "unusable schedule"),
    (_nan_weights, "holding NaN or inf"),
])
def test_tampered_checkpoints_are_refused_as_malformed_naming_what(ckpt, tmp_path, tamper, match):
    "Issue 27 (9, 6): a KeyError, size-mismatch RuntimeError, late TypeError or NaN samples became one ValueError naming the fault."
    ck = read_checkpoint(ckpt)
    tamper(ck)
    torch.save(ck, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match=f"^malformed checkpoint: .*tampered.pt .*{match}"):
        load_checkpoint(tmp_path / "tampered.pt", device="cpu")


def test_a_run_folder_given_as_a_checkpoint_names_its_ckpt_file(ckpt):
    "Issue 27 (8): a folder was called 'corrupt … delete it and retrain'; the message now names <folder>/ckpt.pt."
    with pytest.raises(ValueError, match=r"is a folder, not a checkpoint: give .*ckpt\.pt$"):
        load_checkpoint(ckpt.parent, device="cpu")


# --- the run lock (issue 27 item 2 and "portability"; issue 25 "resume across machines") ----------------------

def _hold_and_log(out, log, barrier):
    "Race for the run lock; while holding it, write 'in' and 'out' to `log` (two holders interleave them)."
    from gaussdiff.checkpoint import run_lock
    barrier.wait()
    try:
        with run_lock(out):
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, b"in\n"); time.sleep(0.005); os.write(fd, b"out\n"); os.close(fd)
    except ValueError: pass   # refused: another holder was alive


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks three racing processes")
def test_three_racing_processes_never_hold_the_run_lock_together(tmp_path):
    "Issue 27 item 2: the lock is created whole (link of a written file); the old code let a rival read pid 0 (9 in 100 trials)."
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    for trial in range(40):
        out, log = tmp_path / f"run{trial}", tmp_path / f"log{trial}"
        out.mkdir()
        if trial % 2: (out / ".lock").write_text("999999999")   # a stale lock every racer wants to break
        barrier = ctx.Barrier(3)
        procs = [ctx.Process(target=_hold_and_log, args=(out, log, barrier)) for _ in range(3)]
        for p in procs: p.start()
        for p in procs: p.join(30)
        events = log.read_text().split()
        assert events and all(events[i:i + 2] == ["in", "out"] for i in range(0, len(events), 2)), (trial, events)
        assert not (out / ".lock").exists()


def test_a_lock_from_another_boot_or_host(tmp_path, capsys):
    "Issue 25: an earlier boot's lock is stale; another host's is refused with its name and fix until its heartbeat is old."
    import json, socket
    from gaussdiff.checkpoint import run_lock
    from gaussdiff.commands import LOCK_STALE_S, boot_id, read_lock
    lock = tmp_path / ".lock"
    if boot_id():   # a live pid, written in another boot of this machine: it is not this process
        lock.write_text(json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), boot="an-earlier-boot", token="t")))
        with run_lock(tmp_path): assert read_lock(lock)[0].boot == boot_id()
        assert "earlier boot" in capsys.readouterr().err and not lock.exists()
    lock.write_text(json.dumps(dict(pid=4321, host="colab-vm-7", boot="b", token="t")))
    with pytest.raises(ValueError, match=f"pid 4321 on host colab-vm-7.*delete {lock}.*stale"):
        with run_lock(tmp_path): pass
    old = time.time() - LOCK_STALE_S - 60   # that host has been silent for longer than a live holder's heartbeat allows
    os.utime(lock, (old, old))
    with run_lock(tmp_path): assert read_lock(lock)[0].host == socket.gethostname()
    assert "colab-vm-7 has not touched it" in capsys.readouterr().err
    lock.write_text(str(os.getpid()))   # an old pid-only lock of a live process still holds (a thread of this one)
    with pytest.raises(ValueError, match="another training"):
        with run_lock(tmp_path): pass

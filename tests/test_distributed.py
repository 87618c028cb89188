"Data-parallel training with torchrun (chapter 07c): K CPU ranks (gloo) compute one process's global batch."
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from gaussdiff.checkpoint import read_checkpoint
from gaussdiff.diffusion import Schedule
from gaussdiff.distributed import RankInfo, Ranks, current_ranks, launch_command, start_ranks

TORCHRUN = Path(sys.executable).with_name("torchrun")
STEPS = 40


def test_rows_split_a_global_batch_evenly_or_refuse():
    assert [Ranks(r, 2).rows(8) for r in range(2)] == [slice(0, 4), slice(4, 8)]
    assert RankInfo().rows(8) == slice(0, 8) and Ranks().main and not Ranks().active
    with pytest.raises(ValueError, match="multiple of 3"):
        Ranks(1, 3).rows(8)
    one = Ranks()  # a plain process: every message is a no-op
    assert one.from_main(2.5, 1.0) == [2.5, 1.0] and one.mean(0.25) == 0.25
    assert current_ranks() == Ranks() and start_ranks("cpu") == Ranks()


def test_loss_of_each_ranks_rows_averages_to_the_batch_loss():
    torch.manual_seed(0)
    net = torch.nn.Linear(6, 6)
    x0 = torch.randn(8, 6)
    model = lambda x, t: net(x)
    for sched in (Schedule(100), Schedule(100, prediction="v", min_snr_gamma=5.0)):
        full = sched.loss(model, x0, torch.Generator().manual_seed(3))
        t, noise = sched.draws(x0, torch.Generator().manual_seed(3))
        rows = [Ranks(r, 2).rows(8) for r in range(2)]
        halves = [sched.loss(model, x0[m], t=t[m], noise=noise[m]) for m in rows]
        torch.testing.assert_close(sum(halves) / 2, full, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(halves[0], halves[1])  # the two ranks really see different rows


def _launch(out, ranks: int, steps: int = STEPS, *extra, threads: int = 1, wait: bool = True):
    cmd = launch_command(["train", "--space", "gir", "--profile", "smoke", "--device", "cpu", "--out", str(out),
                          "--budget-steps", str(steps), "--ckpt-every", "5", *extra], ranks)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if not wait: return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout[r.stdout.index("{"):])


def _gap(a, b) -> float:
    wa, wb = (read_checkpoint(Path(p) / "ckpt.pt")["model"] for p in (a, b))
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "The smoke GIR recipe trained STEPS steps by one process (1 and 2 threads) and by two gloo ranks."
    if not TORCHRUN.exists(): pytest.skip("torchrun is not installed beside this Python")
    tmp = tmp_path_factory.mktemp("ddp")
    return dict(tmp=tmp, one=_launch(tmp / "one", 1), one_2threads=_launch(tmp / "one2", 1, threads=2),
                two=_launch(tmp / "two", 2))


def test_two_ranks_compute_the_one_process_batch(runs):
    tmp = runs["tmp"]
    assert runs["two"]["steps"] == runs["one"]["steps"] == STEPS
    assert runs["two"]["train_flops"] == runs["one"]["train_flops"]  # FLOPs of the global batch, not of one share
    h1, h2 = (read_checkpoint(tmp / d / "ckpt.pt")["history"]["loss"] for d in ("one", "two"))
    assert max(abs(a - b) for a, b in zip(h1[:3], h2[:3])) < 1e-6  # the same first steps: the whole batch's loss
    # Float rounding (the order of sums) differs with the split, as it does between 1 and 2 threads in one process;
    # Adam at the smoke LR lets such differences grow to ~3e-5 in 40 steps, so the noise floor is measured, not assumed.
    floor = _gap(tmp / "one", tmp / "one2")
    gap = _gap(tmp / "one", tmp / "two")
    assert gap < max(3 * floor, 1e-6) and gap < 1e-3, (gap, floor)
    ck = read_checkpoint(tmp / "two" / "ckpt.pt")
    assert ck["finished"] and not any(k.startswith("module.") for k in ck["model"])  # plain (unwrapped) weights
    assert sorted(p.name for p in (tmp / "two" / "snapshots").iterdir()) == sorted(p.name for p in (tmp / "one" / "snapshots").iterdir())


def test_a_killed_two_rank_run_resumes_in_one_process(runs):
    tmp, out = runs["tmp"], runs["tmp"] / "killed"
    proc = _launch(out, 2, wait=False)
    deadline = time.time() + 120
    while not (out / "ckpt.pt").exists() and proc.poll() is None and time.time() < deadline: time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it to both ranks; rank 0's request stops them at one step
    _, err = proc.communicate(timeout=120)
    stopped = read_checkpoint(out / "ckpt.pt")
    assert 0 < stopped["step"] < STEPS and not stopped["finished"], err[-2000:]
    _launch(out, 1, STEPS, "--resume")
    done = read_checkpoint(out / "ckpt.pt")
    assert done["step"] == STEPS and done["finished"]
    floor = _gap(tmp / "one", tmp / "one2")
    assert _gap(out, tmp / "two") < max(3 * floor, 1e-6) and _gap(out, tmp / "one") < max(3 * floor, 1e-6)


def test_a_batch_the_ranks_cannot_share_is_refused_on_every_rank(tmp_path):
    if not TORCHRUN.exists(): pytest.skip("torchrun is not installed beside this Python")
    cmd = launch_command(["train", "--space", "gir", "--profile", "smoke", "--device", "cpu", "--out", str(tmp_path / "run"),
                          "--budget-steps", "2", "--batch-size", "7"], 2)
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    assert r.returncode != 0 and "multiple of 2" in r.stderr and "Traceback" not in r.stderr.split("gaussdiff train: error")[0][-200:]
    assert not (tmp_path / "run" / "ckpt.pt").exists()


# --- the encode on two ranks ------------------------------------------------------------------------------------

FIT = ["fit", "--dataset", "mnist", "--n-images", "22", "--n-splats", "6", "--steps", "2", "--block", "4", "--device", "cpu"]


def _fit(data_dir, ranks: int):
    r = subprocess.run(launch_command(FIT, ranks), capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, GAUSSDIFF_DATA=str(data_dir), OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('"path"') == 1   # one JSON report, from rank 0
    return torch.load(json.loads(r.stdout[r.stdout.index("{"):])["path"], weights_only=True)


def test_two_rank_encode_and_a_resumed_one_equal_the_one_process_cache(tmp_path, monkeypatch, interrupt_fit):
    if not TORCHRUN.exists(): pytest.skip("torchrun is not installed beside this Python")
    import gaussdiff.cache as cache
    one = _fit(tmp_path / "one", 1)
    two = _fit(tmp_path / "two", 2)          # 6 blocks: rank 0 fits 0, 8, 16; rank 1 fits 4, 12, 20
    for k in ("splats", "psnr", "labels"): assert torch.equal(one[k], two[k]), k
    drop = ("fit_seconds", "workers")
    assert {k: v for k, v in one["settings"].items() if k not in drop} == {k: v for k, v in two["settings"].items() if k not in drop}
    assert not list((tmp_path / "two" / "gir").glob("*.blocks"))
    # one process fits two blocks and is interrupted; two ranks finish the rest from its block files
    monkeypatch.setenv("GAUSSDIFF_DATA", str(tmp_path / "resumed"))
    interrupt_fit(at=3)
    with pytest.raises(KeyboardInterrupt):
        cache.encode_dataset("mnist", n=22, n_splats=6, steps=2, block=4, device="cpu", progress=False, verbose=False)
    assert len(list((tmp_path / "resumed" / "gir").glob("*.blocks/*.pt"))) == 2
    resumed = _fit(tmp_path / "resumed", 2)
    for k in ("splats", "psnr"): assert torch.equal(one[k], resumed[k]), k

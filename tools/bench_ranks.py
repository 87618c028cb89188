"""Benchmark: the GIR encode of Fashion-MNIST and the trainer on 1 process vs K gloo ranks (CPU), printed as JSON.

    .venv/bin/python tools/bench_ranks.py [--n 70000] [--ranks 2] [--n-splats 150] [--train-steps 60]

Runs in a private GAUSSDIFF_DATA folder (the real caches are never touched). One process gets K CPU threads, each of
K ranks one, so both use the same cores. The encode is also stopped part-way (SIGTERM to torchrun, as a scheduler preempts a job) and resumed; the resumed cache
must equal the uninterrupted one bit for bit.
"""
import argparse, json, os, resource, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path

import torch

from gaussdiff.distributed import launch_command

def launch(args, ranks, cores, env, kill_after=None):
    "Run a command on `ranks` processes sharing `cores` threads; wall seconds and the JSON it printed (None if killed)."
    env = dict(env, OMP_NUM_THREADS=str(max(1, cores // ranks)))
    t = time.perf_counter()
    p = subprocess.Popen(launch_command(args, ranks), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = p.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:   # a preemption: torchrun passes SIGTERM on to its workers (own sessions) and waits
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=120)
        return time.perf_counter() - t, None
    if p.returncode: raise SystemExit(f"{' '.join(launch_command(args, ranks))} failed:\n{err[-2000:]}")
    return time.perf_counter() - t, json.loads(out[out.index("{"):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=70_000)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--n-splats", type=int, default=150)
    ap.add_argument("--train-steps", type=int, default=60)
    a = ap.parse_args()
    from gaussdiff.data import find_fashion
    tmp = Path(tempfile.mkdtemp(prefix="bench_ranks."))
    (tmp / "fashion-mnist").symlink_to(find_fashion(verbose=False).parents[3])   # the unpacked package, read only
    env = dict(os.environ, GAUSSDIFF_DATA=str(tmp))
    fit = ["fit", "--dataset", "fashion", "--split", "all", "--n-images", str(a.n), "--n-splats", str(a.n_splats), "--device", "cpu"]
    res = dict(n_images=a.n, n_splats=a.n_splats, cores=a.cores, torch=torch.__version__, encode={}, train={})
    caches = {}
    for k in (1, a.ranks):
        s, out = launch(fit, k, a.cores, env)
        caches[k] = tmp / f"cache_{k}.pt"
        os.replace(out["path"], caches[k])
        res["encode"][f"{k}_ranks"] = dict(seconds=round(s, 1), images_per_s=round(a.n / s, 1), mean_psnr=out["mean_psnr"])
        print(f"[bench] encode on {k} rank(s): {a.n / s:.1f} images/s", file=sys.stderr)
    res["encode"]["peak_rss_mb_largest_process"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    # kill part-way, resume: the same cache
    killed_after = 0.4 * res["encode"][f"{a.ranks}_ranks"]["seconds"]
    launch(fit, a.ranks, a.cores, env, kill_after=killed_after)
    blocks = list((tmp / "gir").glob("*.blocks/*.pt"))
    s, out = launch(fit, a.ranks, a.cores, env)
    a_, b_ = torch.load(caches[1], weights_only=True), torch.load(out["path"], weights_only=True)
    same = all(torch.equal(a_[k], b_[k]) for k in ("splats", "psnr")) and torch.equal(torch.load(caches[a.ranks], weights_only=True)["splats"], a_["splats"])
    res["encode"]["resume"] = dict(killed_after_s=round(killed_after, 1), blocks_on_disk_at_kill=len(blocks),
                                   resumed_seconds=round(s, 1), cache_equal_to_one_process=bool(same))
    train = ["train", "--space", "gir", "--profile", "smoke", "--device", "cpu", "--budget-steps", str(a.train_steps),
             "--ckpt-every", str(10 * a.train_steps)]
    for k in (1, a.ranks):
        s, out = launch(train + ["--out", str(tmp / f"run_{k}")], k, a.cores, env)
        res["train"][f"{k}_ranks"] = dict(steps=out["steps"], loop_seconds=out["elapsed_s"], wall_seconds=round(s, 1),
                                          steps_per_s=round(out["steps"] / out["elapsed_s"], 2))
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

"""Training steps per second of chapter 07's cpu-recipe models (pixel U-Net, GIR FiLM, GIR adaLN-Zero) on this
machine, with torch's default threads as chapter 07 trains: what a wall-clock budget buys each model when the machine
is not shared (09_metrics compares models trained for equal wall-clock). Prints JSON.
Usage: .venv/bin/python scripts/bench_train_steps.py [--steps 60] [--profile cpu]"""
import argparse, dataclasses, json, torch
from gaussdiff import train as T
from gaussdiff.diffusion import Schedule
ap = argparse.ArgumentParser(); ap.add_argument("--steps", type=int, default=60); ap.add_argument("--profile", default="cpu")
a = ap.parse_args()
out = {}
for name, space, kw in [("pixel U-Net", "pixel", {}), ("GIR FiLM", "gir", {}), ("GIR adaLN-Zero", "gir", {"conditioning": "adaLN-Zero"})]:
    r = T.recipe(space, "mnist", a.profile)
    x, norm, meta = T.training_data(space, "mnist", r["n"], r["n_splats"], a.profile, verbose=False,
                                    **({"gir_features": r["gir_features"]} if space == "gir" else {}))
    torch.manual_seed(0)
    m = T.make_model(space, a.profile, r["T"], meta["channels"] if space == "pixel" else None, **{**r["model_kw"], **kw})
    cfg = dataclasses.replace(r["cfg"], budget_minutes=None, budget_steps=a.steps)
    res = T.train(m, x, Schedule(T=r["T"], kind=r["schedule"]), cfg, space=space, out_dir=None, normalizer=norm, meta=meta, device="cpu", progress=False)
    out[name] = round(res.step / res.elapsed_s, 1)
print(json.dumps({"profile": a.profile, "steps_per_s": out, "threads": torch.get_num_threads()}))

"""How responsive is chapter 04's noising widget on this machine? Prints JSON: milliseconds per redraw.

    .venv/bin/python scripts/bench_noise_explorer.py [--n-updates 200]

Builds `noise_explorer` headless (no browser) on a few fitted MNIST and Sprites images, then moves the t slider,
switches schedule and image, and times each redraw (one 150-splat render + one pixel blend + two PNG encodes).
"""
import argparse, json, platform, statistics, time

import torch

from gaussdiff.data import load_mnist, load_sprites
from gaussdiff.diffusion import GIRNormalizer, noise_explorer
from gaussdiff.fit import fit_splats


def find(widget, cls):
    if cls in getattr(widget, "_dom_classes", ()): return widget
    for c in getattr(widget, "children", ()):
        if (hit := find(c, cls)) is not None: return hit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-updates", type=int, default=200)
    ap.add_argument("--n-images", type=int, default=4)
    a = ap.parse_args(argv)
    examples = {}
    for name, images in (("mnist", load_mnist(a.n_images, verbose=False)[0]), ("sprites", load_sprites(a.n_images, verbose=False))):
        splats = fit_splats(images, steps=15, progress=False).splats
        norm = GIRNormalizer.fit(splats)
        examples[name] = dict(images=images, z=norm.normalize(splats), normalizer=norm)
    t0 = time.perf_counter(); box = noise_explorer(examples); build_ms = (time.perf_counter() - t0) * 1e3
    slider = find(box, "gaussdiff-t")
    kind, pick = [w for w in box.children[0].children if hasattr(w, "options")]
    g = torch.Generator().manual_seed(0)
    times = {"t slider": [], "schedule": [], "image": []}
    for i in range(a.n_updates):
        t0 = time.perf_counter(); slider.value = int(torch.randint(0, slider.max + 1, (1,), generator=g)); times["t slider"].append(time.perf_counter() - t0)
        if i % 10 == 0:
            t0 = time.perf_counter(); kind.value = kind.options[(kind.index + 1) % len(kind.options)]; times["schedule"].append(time.perf_counter() - t0)
            t0 = time.perf_counter(); pick.index = (pick.index + 1) % len(pick.options); times["image"].append(time.perf_counter() - t0)
    ms = lambda v: {"median_ms": round(statistics.median(v) * 1e3, 2), "p95_ms": round(sorted(v)[int(0.95 * (len(v) - 1))] * 1e3, 2), "n": len(v)}
    print(json.dumps({"build_ms": round(build_ms, 1), **{k: ms(v) for k, v in times.items()},
                      "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
                      "loadavg": [round(x, 2) for x in __import__("os").getloadavg()]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

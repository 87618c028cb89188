"""The README's figures, as small images drawn by one command from small committed data.

    python tools/make_figures.py --from outputs/cpu   # copy the figures' pixels and numbers from a course run, draw
    python tools/make_figures.py                      # draw again from the committed data (docs/figures/data/)
    python tools/make_figures.py --check              # exit 1 when a committed image is not what the data draws

A course run keeps, beside each figure's png, the pixels its panels show (`gaussdiff.core.save_fig` writes
`figures/<name>.npz`). This tool copies the panels the README shows into `docs/figures/data/<figure>.npz` (uint8) and
the numbers it quotes into `docs/figures/data/numbers.json`, then tiles the panels with Pillow: integer scaling and
white gaps only, no fonts and no resampling, so the same data gives the same pixels on any machine
(tests/test_site.py checks the committed pngs against the committed data). Captions live in the README."""
import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FIG_DIR = ROOT / "docs" / "figures"
GAP = 2  # white pixels between panels


@dataclass(frozen=True)
class FigureSpec:
    "One README figure: which course figure it comes from and which of its panels, as rows of panel indices."
    name: str      # docs/figures/<name>.png
    source: str    # the course's figure, outputs/<profile>/figures/<source>.npz
    scale: int     # integer upscaling of small panels
    cols: int = 0  # the source's panels per row (0: one row, or `n_rows` rows)
    rows: tuple = ()  # source rows to keep (with `cols`); empty: all
    n_rows: int = 0   # instead of `cols`: the source's number of panel rows

    def panels(self, arrays: dict) -> list[list[np.ndarray]]:
        "The panels to draw, as rows, from a source figure's `ax<i>_im<j>` arrays (axes in creation order)."
        flat = [arrays[k] for k in sorted(arrays, key=lambda k: int(k.split("_")[0][2:]))]
        cols = self.cols or (len(flat) // self.n_rows if self.n_rows else len(flat))
        grid = [flat[i:i + cols] for i in range(0, len(flat), cols)]
        return [grid[r] for r in (self.rows or range(len(grid))) if r < len(grid)]


FIGURES = (
    FigureSpec("fig1_forward", "04_noise_fig1_forward", 2, cols=6, rows=(0, 1, 4, 5)),  # first image of each set
    FigureSpec("fig2_terminal", "04_noise_fig2_terminal", 3, cols=5),
    FigureSpec("table1_mnist", "03_fit_reconstructions", 2, cols=1, rows=(0,)),
    FigureSpec("fig5_samples", "08_sample_fig5", 1, cols=2),
    FigureSpec("fig6_materialisation", "08_sample_fig6", 2, n_rows=4),
    FigureSpec("fig7_sprites", "08_sample_fig7", 1),
    FigureSpec("fig8_training", "08_sample_fig8", 1, cols=2),
    FigureSpec("fig7_dolls", "09d_fig7_dolls", 2),
    FigureSpec("fig8_dolls", "09d_fig8_dolls", 2, cols=3),
    FigureSpec("dolls_splat_floor", "09d_splat_floor", 2, cols=2),
)


def numbers_from(results: Path) -> dict:
    "The numbers the README's captions quote, from a course run's results/*.json (what exists)."
    def load(name):
        p = results / f"{name}.json"
        return json.loads(p.read_text()) if p.exists() else None
    out = {}
    if (fit := load("03_fit")): out["table1_mnist"] = next(r for r in fit["table1"] if r["dataset"] == "MNIST")
    if (noise := load("04_noise")): out["fig2_terminal"] = noise.get("terminal_blob")
    if (rec := load("07b_recipes")):
        out["fig8_training"] = {space: {k: rec[space][k] for k in ("steps", "train_flops", "snapshots")} for space in ("gir", "pixel")}
    if (dolls := load("09d_dolls")):
        out["fig7_dolls"] = {"kid": {k: round(v["kid"], 2) for k, v in {**dolls["sanity"], **dolls["models"]}.items()},
                             "curve": [{k: round(p[k], 2) if isinstance(p[k], float) else p[k]
                                        for k in ("run", "step", "tflops", "kid")} for p in dolls["curve"]]}
        if "splat_floor" in dolls:
            out["dolls_splat_floor"] = [{k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}
                                        for row in dolls["splat_floor"]]
    if (samp := load("08_sample")):
        out["fig5_samples"] = {k: samp.get(k) for k in ("n_samples", "fig5_sampler", "steps", "sampling_seconds")}
    return out


def copy_data(run: Path, data_dir: Path) -> list[str]:
    "Copy the panels of every README figure that `run` (outputs/<profile>) has into `data_dir`; the names copied."
    data_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for spec in FIGURES:
        src = run / "figures" / f"{spec.source}.npz"
        if not src.exists():
            print(f"make_figures: {src} not found (run its chapter with this course runner); keeping the committed "
                  f"{spec.name}", file=sys.stderr)
            continue
        with np.load(src, allow_pickle=False) as z: rows = spec.panels(dict(z))
        flat = {f"r{r}_c{c}": np.ascontiguousarray(p, dtype=np.uint8)
                for r, row in enumerate(rows) for c, p in enumerate(row)}
        tmp = data_dir / f".{spec.name}.npz.tmp"
        with open(tmp, "wb") as f: np.savez_compressed(f, **flat)
        tmp.replace(data_dir / f"{spec.name}.npz")
        copied.append(spec.name)
    numbers = data_dir / "numbers.json"
    old = json.loads(numbers.read_text()) if numbers.exists() else {}
    new = {**old, **numbers_from(run / "results")}
    (data_dir / ".numbers.json.tmp").write_text(json.dumps(new, indent=1, ensure_ascii=False) + "\n")
    (data_dir / ".numbers.json.tmp").replace(numbers)
    return copied


def load_rows(path: Path) -> list[list[np.ndarray]]:
    "A figure's panels, as rows, from its committed data file."
    with np.load(path, allow_pickle=False) as z:
        keys = sorted(z.files, key=lambda k: tuple(int(p[1:]) for p in k.split("_")))
        rows: dict[int, list] = {}
        for k in keys: rows.setdefault(int(k.split("_")[0][1:]), []).append(z[k])
    return [rows[r] for r in sorted(rows)]


def tile(rows: list[list[np.ndarray]], scale: int) -> np.ndarray:
    "Panels scaled by an integer factor, each centred in a cell of its column's width and its row's height, white gaps."
    rows = [[np.kron(p if p.ndim == 3 else np.repeat(p[..., None], 3, -1), np.ones((scale, scale, 1), np.uint8))
             for p in row] for row in rows]
    n_cols = max(len(r) for r in rows)
    widths = [max(r[c].shape[1] for r in rows if c < len(r)) for c in range(n_cols)]
    heights = [max(p.shape[0] for p in r) for r in rows]
    canvas = np.full((sum(heights) + GAP * (len(rows) + 1), sum(widths) + GAP * (n_cols + 1), 3), 255, np.uint8)
    y = GAP
    for r, row in enumerate(rows):
        x = GAP
        for c, p in enumerate(row):
            oy, ox = y + (heights[r] - p.shape[0]) // 2, x + (widths[c] - p.shape[1]) // 2
            canvas[oy:oy + p.shape[0], ox:ox + p.shape[1]] = p[..., :3]
            x += widths[c] + GAP
        y += heights[r] + GAP
    return canvas


def draw(spec: FigureSpec, data_dir: Path) -> np.ndarray:
    return tile(load_rows(data_dir / f"{spec.name}.npz"), spec.scale)


def draw_all(fig_dir: Path = FIG_DIR) -> list[Path]:
    "Draw every figure whose data is committed into `fig_dir/<name>.png`."
    written = []
    for spec in FIGURES:
        if not (fig_dir / "data" / f"{spec.name}.npz").exists(): continue
        path = fig_dir / f"{spec.name}.png"
        Image.fromarray(draw(spec, fig_dir / "data")).save(path.with_suffix(".tmp.png"), optimize=True)
        path.with_suffix(".tmp.png").replace(path)
        written.append(path)
    return written


def stale(fig_dir: Path = FIG_DIR) -> list[str]:
    "The committed figures whose pixels differ from what their committed data draws (or that have no data)."
    bad = []
    for png in sorted(fig_dir.glob("*.png")):
        spec = next((s for s in FIGURES if s.name == png.stem), None)
        has_data = spec is not None and (fig_dir / "data" / f"{png.stem}.npz").exists()
        if not has_data or not np.array_equal(np.asarray(Image.open(png).convert("RGB")), draw(spec, fig_dir / "data")):
            bad.append(png.name)
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/make_figures.py", description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="run", type=Path, help="a course run's folder to copy the data from, e.g. outputs/cpu")
    ap.add_argument("--check", action="store_true", help="only check that the committed images are what the data draws")
    a = ap.parse_args(argv)
    if a.check:
        bad = stale()
        if bad: print(f"make_figures: stale figures {bad}: run `python tools/make_figures.py`", file=sys.stderr)
        return 1 if bad else 0
    if a.run is not None:
        if not (a.run / "figures").is_dir():
            print(f"make_figures: {a.run}/figures not found: give a course run's folder, e.g. --from outputs/cpu",
                  file=sys.stderr)
            return 2
        print("copied:", ", ".join(copy_data(a.run, FIG_DIR / "data")) or "nothing")
    for p in draw_all(): print(f"{p.relative_to(ROOT)}: {p.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

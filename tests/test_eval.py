"Samples as files (uint8 NHWC .npz under arr_0, the ADM convention), the confident share, and `gaussdiff eval`."
import json

import numpy as np
import pytest
import torch

from gaussdiff.compare import cli as eval_cli, confident_share, evaluate_file
from gaussdiff.data import load_mnist
from gaussdiff.metrics import get_classifier
from gaussdiff.sample import check_sample_path, load_samples, save_samples
from test_sample import _pixel_ckpt


@pytest.fixture(scope="module")
def digits():
    return load_mnist(None, "test", verbose=False)[0][:300]


def test_npz_is_uint8_nhwc_under_arr_0(tmp_path):
    imgs = torch.rand(5, 3, 32, 32)
    path = save_samples(imgs, tmp_path / "s.npz")
    with np.load(path, allow_pickle=False) as z:
        assert list(z.keys()) == ["arr_0"] and z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (5, 32, 32, 3)
    assert (load_samples(path) - imgs).abs().max() <= 0.5 / 255 + 1e-6
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_sample_paths_are_checked_before_work(tmp_path):
    with pytest.raises(ValueError, match=r"\.png .*\.npz"): check_sample_path(tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="folder"): check_sample_path(tmp_path)
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(ValueError, match="folder"): check_sample_path(tmp_path / "d.npz")


def test_load_samples_refuses_pickles_and_wrong_arrays(tmp_path):
    np.savez(tmp_path / "obj.npz", arr_0=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not an .npz of images"): load_samples(tmp_path / "obj.npz")
    np.savez(tmp_path / "f.npz", arr_0=np.zeros((2, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="uint8"): load_samples(tmp_path / "f.npz")
    np.savez(tmp_path / "k.npz", images=np.zeros((2, 8, 8, 1), np.uint8))
    with pytest.raises(ValueError, match="arr_0"): load_samples(tmp_path / "k.npz")
    with pytest.raises(FileNotFoundError): load_samples(tmp_path / "missing.npz")


def test_sample_cli_writes_npz_and_refuses_jpg_before_sampling(tmp_path, capsys):
    from gaussdiff.sample import cli
    ck = _pixel_ckpt(tmp_path)
    assert cli(["--ckpt", str(ck), "--sampler", "ddim", "--steps", "3", "--n", "6", "--out", str(tmp_path / "s.npz"), "--device", "cpu"]) == 0
    capsys.readouterr()
    with np.load(tmp_path / "s.npz") as z: assert z["arr_0"].shape == (6, 6, 6, 1) and z["arr_0"].dtype == np.uint8
    assert cli(["--ckpt", str(ck), "--n", "6", "--out", str(tmp_path / "s.jpg"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert ".png" in err and "sampling" not in err and not (tmp_path / "s.jpg").exists()
    again = ["--ckpt", str(ck), "--sampler", "ddim", "--steps", "3", "--n", "2", "--out", str(tmp_path / "s.npz"), "--device", "cpu"]
    assert cli(again) == 2 and "pass --overwrite" in capsys.readouterr().err   # issue 27 (1): an existing file is kept ...
    with np.load(tmp_path / "s.npz") as z: assert len(z["arr_0"]) == 6
    assert cli([*again, "--overwrite"]) == 0                                   # ... unless --overwrite says so
    with np.load(tmp_path / "s.npz") as z: assert len(z["arr_0"]) == 2


def test_plain_npy_samples_load(tmp_path):
    "Issue 27 (4): `gaussdiff eval plain.npy` was a TypeError; an .npy of uint8 NHWC images is read like arr_0 of an .npz."
    np.save(tmp_path / "plain.npy", np.full((3, 8, 8, 1), 255, np.uint8))
    x = load_samples(tmp_path / "plain.npy")
    assert x.shape == (3, 1, 8, 8) and x.min() == 1.0


def test_confident_share_counts_what_the_classifier_is_sure_of(digits):
    clf = get_classifier("smoke", verbose=False)
    with torch.no_grad(): p, cls = clf(digits).softmax(-1).max(-1)
    for thr in (0.5, 0.9, 0.99):
        got = confident_share(digits, clf, thr)
        sure = p >= thr
        assert got["confident"] == pytest.approx(sure.float().mean().item())
        assert got["class_histogram"] == torch.bincount(cls[sure], minlength=10).tolist()
    assert confident_share(digits, clf, 0.0)["confident"] == 1.0 and confident_share(digits, clf, 1.01)["confident"] == 0.0


def test_eval_cli_prints_json_and_fails_cleanly(tmp_path, digits, capsys):
    path = save_samples(digits[:40], tmp_path / "real.npz")
    res = evaluate_file(path, "mnist", n_ref=200, classifier="smoke")
    assert res["n"] == 40 and "MNIST test split" in res["reference"] and {"fid", "kid", "precision", "recall", "confident"} <= set(res)
    noise = evaluate_file(save_samples(torch.rand(40, 1, 28, 28), tmp_path / "noise.npz"), "mnist", n_ref=200, classifier="smoke")
    assert noise["kid"] > res["kid"] and noise["fid"] > res["fid"]
    assert eval_cli([str(tmp_path / "missing.npz")]) == 2 and "no samples" in capsys.readouterr().err
    save_samples(torch.rand(4, 3, 32, 32), tmp_path / "rgb.npz")
    assert eval_cli([str(tmp_path / "rgb.npz"), "--dataset", "mnist"]) == 2 and "MNIST digits" in capsys.readouterr().err
    assert eval_cli([str(tmp_path / "rgb.npz"), "--dataset", "sprites", "--n-ref", "50", "--net", "smoke"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pixel_kid"] > 0 and out["sprite_kid"] > 0 and "held-out sprites" in out["reference"]
    assert eval_cli([str(tmp_path / "real.npz"), "--dataset", "sprites", "--net", "smoke"]) == 2
    assert "sprites (3, 32, 32)" in capsys.readouterr().err
    # issue 28: every sprite-net preset is a choice, the three-question one included
    assert eval_cli([str(tmp_path / "rgb.npz"), "--dataset", "sprites", "--n-ref", "50", "--net", "coherence-smoke"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sprite_net"]["preset"] == "coherence-smoke" and out["sprite_kid"] > 0


def test_inception_rows_reuse_the_tables_samples():
    "Issue 16 #5: at gpu size 09a drew every model's samples a second time just for the Inception rows."
    import json
    from conftest import NBS
    cells = ["".join(c["source"]) for c in json.load(open(NBS / "09a_compare.ipynb"))["cells"] if c["cell_type"] == "code"]
    inception = next(c for c in cells if c.startswith("inception_rows = []"))
    assert "generate(" not in inception and "protocol_imgs[name]" in inception
    assert any("protocol_imgs.setdefault(name, imgs)" in c for c in cells)
    plans = next(c for c in cells if c.startswith("from tqdm.auto import tqdm\nplans = by_profile("))
    assert 'gpu={"pixel": [("ddpm", 1000, n_eval // 4)' in plans  # the 1000-step pixel row is sized to fit


def test_eval_stdout_is_only_json_when_scoring_prints(capsys, monkeypatch):
    "Training the classifier on first use, or skipping Inception, prints: that goes to stderr, not into the JSON."
    import gaussdiff.compare as C
    def noisy_evaluate(*args):
        print("[metrics] Inception FID/KID skipped")
        return {"n": 6}
    monkeypatch.setattr(C, "evaluate_file", noisy_evaluate)
    assert eval_cli(["samples.npz"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == {"n": 6} and "skipped" in out.err


def test_eval_scores_sprites_in_the_sprite_features_against_the_held_out_third(tmp_path):
    "Issue 28: `gaussdiff eval --dataset sprites` gave pixel KID only, which scores a splat tangle as real."
    from gaussdiff.spritemetric import get_sprite_net, sprite_kid, sprite_split
    split = sprite_split(seed=0)
    net = get_sprite_net(split, "smoke", verbose=False)
    real = evaluate_file(save_samples(split.real[:60], tmp_path / "real.npz"), "sprites", n_ref=200, classifier="smoke")
    noise = evaluate_file(save_samples(torch.rand(60, 3, 32, 32), tmp_path / "noise.npz"), "sprites", n_ref=200,
                          classifier="smoke")
    assert {"sprite_kid", "sprite_kid_std", "precision", "recall", "pixel_kid"} <= set(real)
    assert noise["sprite_kid"] > 10 * max(real["sprite_kid"], real["sprite_kid_std"], 0.01)
    assert noise["recall"] < real["recall"]
    # the same number as 09c's sprite_kid of the saved (uint8-rounded) sprites against the first 200 of the reference
    fake = load_samples(tmp_path / "real.npz")
    expected, _ = sprite_kid(split.reference[:200], fake, net, subsets=50, subset_size=30, seed=0)
    assert real["sprite_kid"] == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_budget_to_reach_inverts_a_log_linear_curve():
    from gaussdiff.compare import budget_to_reach
    pts = [(2.0 ** k * 1e12, 0.3 + 0.06 * k) for k in range(4)]
    assert budget_to_reach(pts, 0.3 + 0.06 * 5) == pytest.approx(32e12, rel=1e-9)
    assert budget_to_reach(pts, 0.42) == pytest.approx(4e12, rel=1e-9)
    assert budget_to_reach([(1e12, 0.5), (2e12, 0.4)], 0.7) is None
    with pytest.raises(ValueError, match="at least 2"): budget_to_reach([(1e12, 0.5)], 0.7)
    with pytest.raises(ValueError, match="positive"): budget_to_reach([(0, 0.1), (1e12, 0.5)], 0.7)


def test_unconditional_recipe_drops_labels_and_guidance_and_keeps_the_rest():
    from gaussdiff.compare import unconditional_recipe
    from gaussdiff.recipes import recipe, training_labels
    cond = recipe("gir", "mnist", "cpu")
    plain = unconditional_recipe(cond)
    assert cond.model_kw["n_classes"] == 10 and cond.guidance > 1
    assert plain.model_kw["n_classes"] == 0 and plain.guidance == 1.0 and training_labels(plain) is None
    assert plain.snapshot_fracs == (0.1, 0.2, 0.5, 1.0) and plain.cfg == cond.cfg and plain.schedule == cond.schedule


def test_sized_pixel_recipe_buys_four_times_the_steps_with_the_same_network():
    from gaussdiff.compare import sized_pixel_recipe
    from gaussdiff.recipes import recipe
    r = recipe("pixel", "mnist", "cpu")
    s = sized_pixel_recipe(r)
    assert s.cfg.batch_size * 4 == r.cfg.batch_size and s.model_kw == r.model_kw and s.cfg.lr == r.cfg.lr
    assert s.cfg.budget_flops == r.cfg.budget_flops and s.snapshot_fracs == ()


def test_patched_pixel_recipe_is_the_sized_one_on_2x2_patches():
    "The patched baseline changes only the U-Net's fold; a checkpoint of it loads back as a patched U-Net."
    from gaussdiff.compare import patched_pixel_recipe, sized_pixel_recipe
    from gaussdiff.recipes import make_model, recipe
    from gaussdiff.train import train_step_flops
    r = recipe("pixel", "mnist", "cpu")
    s, p = sized_pixel_recipe(r), patched_pixel_recipe(r)
    assert p.model_kw == dict(s.model_kw, patch=2) and p.cfg == s.cfg and p.T == s.T and p.n == s.n
    plain, patched = (make_model("pixel", "cpu", T=x.T, channels=1, **x.model_kw) for x in (s, p))
    batch = torch.zeros(8, 1, 32, 32)
    assert 3.5 < train_step_flops(plain, s.make_schedule(), batch) / train_step_flops(patched, p.make_schedule(),
                                                                                       batch) < 4.0
    from gaussdiff.checkpoint import build_model, class_path
    rebuilt = build_model({"model_class": class_path(patched), "model_config": patched.config})
    assert rebuilt.patch == 2 and rebuilt.conv_in.weight.shape == patched.conv_in.weight.shape


def test_load_sized_pixel_refuses_an_unknown_baseline_or_a_non_cpu_profile_before_any_work(tmp_data):
    from gaussdiff.compare import SIZED_PIXEL, load_sized_pixel
    assert set(SIZED_PIXEL) == {"batch8", "patch2-batch8"}
    with pytest.raises(ValueError, match="choose one of \\['batch8', 'patch2-batch8'\\]"):
        load_sized_pixel("patch4", "mnist", "smoke", {})
    with pytest.raises(ValueError, match="use the recipe's pixel run"):
        load_sized_pixel("patch2-batch8", "mnist", "gpu", {})
    assert list(tmp_data.iterdir()) == []  # no run folder made

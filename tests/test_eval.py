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
    assert eval_cli([str(tmp_path / "rgb.npz"), "--dataset", "sprites", "--n-ref", "50"]) == 0
    assert json.loads(capsys.readouterr().out)["pixel_kid"] > 0


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

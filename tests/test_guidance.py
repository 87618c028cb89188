"Class labels and classifier-free guidance: label embedding, label dropout, the guided output, training and sampling."

import pytest
import torch

from gaussdiff.checkpoint import DataInfo, load_checkpoint
from gaussdiff.diffusion import Schedule
from gaussdiff.layers import LabelEmbedding, check_labels, check_train_labels, drop_labels
from gaussdiff.sample import balanced_labels, generate, model_output, sample, sample_labels
from gaussdiff.train import TrainConfig, train
from gaussdiff.transformer import GaussianTransformer
from gaussdiff.unet import PixelUNet


def test_label_dropout_hides_the_asked_share_reproducibly():
    y = torch.arange(20_000) % 10
    g = lambda: torch.Generator().manual_seed(3)
    dropped = drop_labels(y, 0.1, 10, g())
    assert abs((dropped == 10).float().mean().item() - 0.1) < 0.01
    assert torch.equal(dropped[dropped != 10], y[dropped != 10])  # the others are untouched
    assert torch.equal(dropped, drop_labels(y, 0.1, 10, g()))
    assert torch.equal(drop_labels(y, 0.0, 10, g()), y) and bool((drop_labels(y, 1.0, 10, g()) == 10).all())
    with pytest.raises(ValueError, match="dropout"): drop_labels(y, 1.5, 10)


@pytest.mark.parametrize("bad,match", [(torch.tensor([0.5, 1.0]), "integer"), (torch.tensor([1, 2, 3]), "shape"),
                                       (torch.tensor([0, 11]), "classes 0..9"), ([1, 2], "torch.Tensor")])
def test_bad_labels_are_refused_naming_the_fix(bad, match):
    with pytest.raises(ValueError, match=match): check_labels(bad, 2, 10)


def test_no_label_is_none_and_models_without_labels_refuse_them():
    emb = LabelEmbedding(10, 8)
    assert torch.equal(emb(None, 3), emb(torch.full((3,), 10), 3))
    x, t = torch.randn(2, 7, 8), torch.tensor([5, 900])
    plain = GaussianTransformer.smoke()
    assert not any("label" in k for k in plain.state_dict())  # unconditional checkpoints keep their keys
    with pytest.raises(ValueError, match="without class labels"): plain(x, t, torch.tensor([1, 2]))
    for m, xx in ((GaussianTransformer.smoke(n_classes=10), x), (PixelUNet.smoke(channels=1, n_classes=10), torch.randn(2, 1, 32, 32))):
        m.eval()
        with torch.no_grad():
            assert torch.equal(m(xx, t), m(xx, t, torch.tensor([10, 10])))
            assert not torch.allclose(m(xx, t, torch.tensor([1, 2])), m(xx, t), atol=1e-6)


def test_labels_keep_the_transformer_permutation_equivariant():
    m = GaussianTransformer.smoke(n_classes=10).eval()
    with torch.no_grad(): m.label.embed.weight.normal_()  # a label that matters
    x, t, y = torch.randn(3, 11, 8), torch.tensor([1, 50, 999]), torch.tensor([0, 4, 9])
    perm = torch.randperm(11)
    with torch.no_grad(): assert torch.allclose(m(x[:, perm], t, y), m(x, t, y)[:, perm], atol=1e-5)


def test_guided_output_is_the_cfg_combination_of_two_calls():
    m = GaussianTransformer.smoke(n_classes=10).eval()
    with torch.no_grad(): m.label.embed.weight.normal_()
    x, t, y = torch.randn(4, 9, 8), torch.tensor([3, 30, 300, 900]), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        cond, uncond = m(x, t, y), m(x, t)
        assert torch.equal(model_output(m, x, t, y, 1.0), cond)
        assert torch.equal(model_output(m, x, t), uncond)
        assert torch.allclose(model_output(m, x, t, y, 0.0), uncond, atol=1e-5)
        assert torch.allclose(model_output(m, x, t, y, 3.0), uncond + 3 * (cond - uncond), atol=1e-5)


def _two_class_data(n=256):
    "Class 0: every splat feature near +1; class 1: near -1 (what a label must decide)."
    y = torch.arange(n) % 2
    x = (1 - 2 * y.float())[:, None, None] + 0.1 * torch.randn(n, 6, 8, generator=torch.Generator().manual_seed(0))
    return x, y


def test_a_class_conditional_model_draws_the_asked_class_and_guidance_sharpens_it(one_torch_thread):
    torch.manual_seed(0)
    x, y = _two_class_data()
    sched = Schedule(T=50, kind="cosine")
    model = GaussianTransformer.smoke(n_classes=2, T=50)
    cfg = TrainConfig(budget_steps=400, batch_size=32, lr=2e-3, warmup_steps=20, ema_decay=0.9, label_dropout=0.2)
    res = train(model, x, sched, cfg, labels=y, progress=False, device="cpu")
    ema = res.ema.model
    g = lambda: torch.Generator().manual_seed(1)
    asked = torch.tensor([0, 1] * 32)
    plain = sample(ema, sched, (64, 6, 8), generator=g(), labels=asked, clip=3.0)
    guided = sample(ema, sched, (64, 6, 8), generator=g(), labels=asked, guidance=3.0, clip=3.0)
    sign = lambda s: s.mean((1, 2)).sign()
    want = 1 - 2 * asked.float()
    assert (sign(plain) == want).float().mean() >= 0.9
    assert (sign(guided) == want).float().mean() >= (sign(plain) == want).float().mean()
    assert guided.mean((1, 2)).abs().mean() > 0.5
    with pytest.raises(ValueError, match="class-conditional"): train(GaussianTransformer.smoke(n_classes=2, T=50), x, sched, cfg, progress=False)
    with pytest.raises(ValueError, match="no label embedding"): train(GaussianTransformer.smoke(T=50), x, sched, cfg, labels=y, progress=False)
    with pytest.raises(ValueError, match="classes 0..1"): check_train_labels(torch.full((len(x),), 2), len(x), 2)


def test_sample_labels_balanced_none_one_or_each():
    meta = DataInfo("gir", n_classes=10)
    assert sample_labels("balanced", 23, meta).tolist() == balanced_labels(23, 10).tolist() == [i % 10 for i in range(23)]
    assert sample_labels("none", 5, meta) is None and sample_labels("balanced", 5, DataInfo("gir")) is None
    assert sample_labels(7, 4, meta).tolist() == [7] * 4
    for bad in (12, [1, 2], "digits"):
        with pytest.raises(ValueError): sample_labels(bad, 4, meta)
    with pytest.raises(ValueError, match="without class labels"): sample_labels(3, 4, DataInfo("gir"))


def test_smoke_recipe_trains_a_conditional_model_whose_checkpoint_samples_balanced_classes(tmp_path, one_torch_thread):
    from gaussdiff.recipes import recipe, run, training_labels
    r = recipe("gir", "mnist", "smoke")
    assert r.model_kw["n_classes"] == 10 and recipe("gir", "sprites", "smoke").model_kw.get("n_classes") is None
    assert recipe("gir", "mnist", "cpu").guidance > 1 and recipe("gir", "mnist", "gpu").guidance == 1.0  # gpu: the paper's
    labels = training_labels(r)
    assert len(labels) == r.n and set(labels.tolist()) <= set(range(10))
    run("gir", "mnist", "smoke", out_dir=tmp_path / "run", device="cpu", progress=False, preview=False)
    model, sched, norm, meta = load_checkpoint(tmp_path / "run" / "ckpt.pt", "cpu")
    assert meta.n_classes == 10 and meta.guidance == r.guidance and model.n_classes == 10
    a = generate(model, sched, norm, meta, n=12, steps=5, seed=4)  # balanced labels, the stored guidance
    b = generate(model, sched, norm, meta, n=12, steps=5, seed=4, labels=list(range(10)) + [0, 1], guidance=r.guidance)
    assert torch.equal(a, b)
    c = generate(model, sched, norm, meta, n=12, steps=5, seed=4, labels="none")
    assert not torch.equal(a, c)


def test_old_metadata_without_classes_loads_as_unconditional():
    meta = DataInfo.from_dict({"space": "gir", "dataset": "mnist", "sample_shape": [24, 8]})
    assert meta.n_classes == 0 and meta.guidance == 1.0


def test_sample_cli_draws_one_class_with_guidance_and_refuses_bad_labels(tmp_path, capsys, one_torch_thread):
    import json
    import numpy as np
    from gaussdiff.recipes import run
    from gaussdiff.sample import cli
    run("gir", "mnist", "smoke", out_dir=tmp_path / "run", device="cpu", progress=False, preview=False)
    ck = str(tmp_path / "run" / "ckpt.pt")
    assert cli(["--ckpt", ck, "--steps", "4", "--n", "6", "--label", "3", "--guidance", "2.5", "--out", str(tmp_path / "s.npz"), "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["labels"] == "3" and report["guidance"] == 2.5
    with np.load(tmp_path / "s.npz") as z: assert z["arr_0"].shape == (6, 28, 28, 1)
    for bad, why in (("x", "balanced"), ("12", "classes in 0..9")):
        assert cli(["--ckpt", ck, "--steps", "4", "--label", bad, "--out", str(tmp_path / "bad.png"), "--device", "cpu"]) == 2
        assert why in capsys.readouterr().err
    assert not (tmp_path / "bad.png").exists()


def test_generate_refuses_fractional_labels_and_non_finite_guidance():
    "Issue 27 (18): labels [0.5, 1.5] were truncated to [0, 1]; guidance nan/inf ended in FloatingPointError or black images."
    meta = DataInfo("gir", n_classes=10, sample_shape=(4, 8))
    with pytest.raises(ValueError, match="whole class indices"): sample_labels([0.5, 1.5], 2, meta)
    with pytest.raises(ValueError, match="whole class indices"): sample_labels(torch.tensor([True, False]), 2, meta)
    assert sample_labels([0.0, 1.0], 2, meta).tolist() == [0, 1]  # whole numbers stored as floats are classes
    m = GaussianTransformer.smoke(n_classes=10)
    with pytest.raises(ValueError, match="whole class indices"): generate(m, Schedule(10), None, meta, n=2, labels=[0.5, 1.5])
    for w in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="^guidance"): generate(m, Schedule(10), None, meta, n=2, labels=[0, 1], guidance=w)

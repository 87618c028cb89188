"Chapter 09b (gaussdiff.levers): levers are recipes with one change, measured at an equal FLOP budget."
import dataclasses
import math

import pytest
import torch

from gaussdiff.levers import LEVERS, Lever, LeverResult, apply_lever, lever_step_flops, measure_lever, summarise
from gaussdiff.recipes import recipe


def test_apply_lever_changes_one_thing_and_merges_model_kw():
    base = recipe("gir", "mnist", "cpu")
    r = apply_lever(base, LEVERS["GT d128×4"])
    assert r.model_kw["d_model"] == 128 and r.model_kw["depth"] == 4 and r.cfg == base.cfg
    r = apply_lever(base, Lever("cond", "", {"model_kw": {"conditioning": "adaLN-Zero"}}))
    assert r.model_kw == {**base.model_kw, "conditioning": "adaLN-Zero"}  # merged, not replaced
    r = apply_lever(base, LEVERS["batch 128"])
    assert (r.cfg.batch_size, r.cfg.lr) == (128, 2e-3) and r.cfg.ema_decay == base.cfg.ema_decay
    r = apply_lever(base, LEVERS["v-prediction"])
    assert r.make_schedule().prediction == "v" and r.snapshot_fracs == ()
    assert dataclasses.replace(r, prediction="eps", snapshot_fracs=base.snapshot_fracs) == base


def test_a_dearer_step_gets_fewer_steps():
    base = recipe("gir", "mnist", "smoke")
    one = lever_step_flops(base, LEVERS["recipe"])
    assert lever_step_flops(base, LEVERS["v-prediction"]) == one  # the target changes nothing in the arithmetic
    four = lever_step_flops(base, Lever("b32", "", cfg=dict(batch_size=32)))
    assert 3.9 < four / one < 4.1  # smoke batch 8 -> 32


def test_measure_lever_trains_for_the_budget_and_reuses_the_run(tmp_path, monkeypatch, one_torch_thread):
    import gaussdiff.levers
    monkeypatch.setattr(gaussdiff.levers, "lever_dir", lambda lever, profile, seed: tmp_path / f"{lever.name}-{seed}")
    from gaussdiff.metrics import get_classifier
    from gaussdiff.data import load_mnist
    base = recipe("gir", "mnist", "smoke")
    per_step = lever_step_flops(base, LEVERS["recipe"])
    clf, ref = get_classifier("smoke", verbose=False), load_mnist(None, "test", verbose=False)[0][:64]
    res, imgs = measure_lever(base, LEVERS["recipe"], 2.5 * per_step, ref, clf, n=8, seed=0, device="cpu")
    assert res.train_steps == 3 and res.train_flops == 3 * per_step and imgs.shape == (8, 1, 28, 28)
    assert 0 <= res.confident <= 1 and math.isfinite(res.kid)
    again, _ = measure_lever(base, LEVERS["recipe"], 2.5 * per_step, ref, clf, n=8, seed=0, device="cpu")
    assert again.train_seconds == res.train_seconds  # loaded from data/runs/levers, not trained again
    twice, _ = measure_lever(base, LEVERS["2× budget"], 2.5 * per_step, ref, clf, n=8, seed=0, device="cpu")
    assert twice.train_steps == 5


def test_summarise_means_and_spreads_over_seeds():
    def res(lever, seed, conf, kid):
        return LeverResult(lever, "", seed, 1.0, 10, 1e9, 1.0, 5, 8, conf, 0.2, kid, 0.1, 3.0, 0.5, 0.5)
    rows = summarise([res("a", 0, 0.2, 1.0), res("a", 1, 0.4, 0.5), res("b", 0, 0.5, 0.7)])
    assert [r["lever"] for r in rows] == ["b", "a"]  # sorted by confident share
    a = rows[1]
    assert a["seeds"] == 2 and a["confident"] == pytest.approx(0.3) and a["confident_spread"] == pytest.approx(0.2)
    assert a["kid"] == pytest.approx(0.75) and a["kid_spread"] == pytest.approx(0.5)


def test_unconditional_and_class_label_levers_switch_labels_and_guidance():
    from gaussdiff.recipes import recipe, training_labels
    cond = recipe("gir", "mnist", "smoke")
    plain = apply_lever(cond, LEVERS["unconditional"])
    assert plain.model_kw["n_classes"] == 0 and plain.guidance == 1.0 and training_labels(plain) is None
    assert {k: v for k, v in plain.model_kw.items() if k != "n_classes"} == {k: v for k, v in cond.model_kw.items() if k != "n_classes"}
    gpu = recipe("gir", "mnist", "gpu")
    labelled = apply_lever(gpu, LEVERS["class labels"])
    assert "n_classes" not in gpu.model_kw and labelled.model_kw["n_classes"] == 10 and labelled.guidance > 1

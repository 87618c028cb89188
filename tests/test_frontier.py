"Chapter 10a (gaussdiff.frontier): choosing each space's cheapest setting near its best, Table 2's arithmetic, the CLI."
import json

import pytest
import torch

from gaussdiff.checkpoint import DataInfo
from gaussdiff.frontier import (KID_TOLERANCE, Point, call_ms, cheapest_within, cli, equal_kid, equal_quality_table,
                                few_step_check, scorer, settings)


def _p(space, sampler, steps, kid, kid_std=0.001, call=1.0):
    return Point(space, sampler, steps, 64, kid, kid_std, steps * call)


def test_cheapest_within_takes_the_cheapest_point_inside_the_tolerance():
    pts = [_p("gir", "ddpm", 200, 0.100), _p("gir", "ddim", 50, 0.108), _p("gir", "ddim", 10, 0.150),
           _p("gir", "dpmpp2m", 20, 0.109), _p("gir", "dpmpp2m", 5, 0.300)]
    c = cheapest_within(pts)
    assert c["best"].label == "ddpm 200"
    assert c["bound"] == pytest.approx(0.100 * (1 + KID_TOLERANCE))
    assert c["cheapest"].label == "dpmpp2m 20"  # 0.109 <= 0.110, and 20 calls are cheaper than 50
    assert cheapest_within(pts, rel_tol=0.0)["cheapest"].label == "ddpm 200"


def test_tolerance_is_at_least_the_best_points_spread():
    "Settings closer than the best point's KID noise are not different: the bound widens to its spread."
    pts = [_p("pixel", "ddim", 50, 0.010, kid_std=0.02), _p("pixel", "ddim", 10, 0.029)]
    c = cheapest_within(pts)
    assert c["bound"] == pytest.approx(0.030) and c["cheapest"].label == "ddim 10"


def test_equal_kid_holds_both_models_to_the_worse_models_bound():
    "The better model may reach the worse one's quality with a much cheaper setting; the worse one keeps its own."
    points = {"gir": [_p("gir", "ddpm", 200, 0.50), _p("gir", "ddim", 20, 0.90)],
              "pixel": [_p("pixel", "ddpm", 100, 0.20), _p("pixel", "ddim", 5, 0.54), _p("pixel", "ddim", 20, 0.30)]}
    same = equal_kid(points)
    assert same["gir"]["bound"] == same["pixel"]["bound"] == pytest.approx(0.55)
    assert same["gir"]["cheapest"].label == "ddpm 200" and same["pixel"]["cheapest"].label == "ddim 5"
    assert cheapest_within(points["gir"], bound=0.1)["cheapest"] is None  # nothing reaches it


def _c(sampler, steps, kid, confident, kid_std=0.01):
    return Point("gir", sampler, steps, 256, kid, kid_std, steps * 1.0, confident)


def test_few_step_check_holds_short_settings_to_the_long_ddpm_runs_quality():
    "Within 3 points of the longest DDPM run's confident share and 1.3x its KID, in at most 25 calls."
    pts = [_c("ddpm", 50, 0.50, 0.90), _c("ddpm", 200, 0.30, 0.96), _c("dpmpp2m", 20, 0.60, 0.83),
           _c("dpmpp2m-sde", 20, 0.31, 0.945), _c("dpmpp2m-sde", 10, 0.38, 0.92), _c("ddim", 25, 0.42, 0.96),
           _c("ddim", 50, 0.30, 0.96)]
    rows = {r["setting"]: r for r in few_step_check(pts)}
    assert set(rows) == {"dpmpp2m 20", "dpmpp2m-sde 20", "dpmpp2m-sde 10", "ddim 25"}  # 50 calls are not few
    assert all(r["reference"] == "ddpm 200" for r in rows.values())
    assert rows["dpmpp2m-sde 20"]["keeps_quality"] and rows["dpmpp2m-sde 20"]["confident_gap"] == pytest.approx(0.015)
    assert not rows["dpmpp2m 20"]["keeps_quality"]
    assert not rows["dpmpp2m-sde 10"]["keeps_quality"]  # KID 1.27x is inside, 4 points lost are not
    assert not rows["ddim 25"]["keeps_quality"] and rows["ddim 25"]["kid_ratio"] == pytest.approx(1.4)  # KID only
    # a KID below its own noise is held to its spread, not to a meaningless ratio
    noisy = [_c("ddpm", 200, -0.001, None, kid_std=0.01), _c("ddim", 10, 0.012, None)]
    (row,) = few_step_check(noisy)
    assert row["keeps_quality"] and row["kid_ratio"] is None and row["confident_gap"] is None


def test_equal_quality_table_arithmetic():
    g, p = _p("gir", "dpmpp2m", 10, 0.1, call=0.5), _p("pixel", "ddim", 20, 0.2, call=4.0)
    g2, p2 = _p("gir", "ddpm", 200, 0.05, call=0.5), _p("pixel", "ddpm", 100, 0.04, call=4.0)
    own = {"gir": dict(cheapest=g2), "pixel": dict(cheapest=p2)}
    same = {"gir": dict(cheapest=g), "pixel": dict(cheapest=p)}
    e2e = {"gir dpmpp2m 10": 6.0, "pixel ddim 20": 90.0, "gir ddpm 200": 100.0, "pixel ddpm 100": 400.0}
    rows = {r["row"]: r for r in equal_quality_table(own, same, e2e, {"gir": 0.5, "pixel": 4.0}, {"gir": 100.0, "pixel": 60.0})}
    assert rows["paper (A100, as reported)"]["ratio"] == 22
    assert rows["same steps, these models"]["ratio"] == pytest.approx(1000 * 4.0 / (200 * 0.5))
    assert rows["each at its own best, end to end"]["ratio"] == pytest.approx(4.0)
    eq = rows["equal KID, end to end"]
    assert eq["ratio"] == pytest.approx(15.0) and (eq["gir"], eq["pixel"]) == ("dpmpp2m 10", "ddim 20")
    assert rows["equal-KID steps, paper-size models"]["ratio"] == pytest.approx(20 * 60.0 / (10 * 100.0))


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
@pytest.mark.parametrize("space,T", [("gir", 200), ("pixel", 1000)])
def test_settings_cover_every_sampler_within_T(profile, space, T):
    s = settings(space, T, profile)
    assert {smp for smp, _ in s} == {"ddpm", "ddim", "dpmpp2m", "dpmpp2m-sde"}
    assert all(1 <= k <= T for _, k in s) and len(set(s)) == len(s)
    if profile == "gpu": assert ("ddpm", T) in s  # the paper's protocol on a GPU


def test_call_ms_times_every_model_per_image():
    class Net(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.lin = torch.nn.Linear(8, width)
            self.out = torch.nn.Linear(width, 8)

        def forward(self, x, t):
            return self.out(self.lin(x).relu())
    T = type("S", (), {"T": 10})()
    info = DataInfo("gir", sample_shape=(16, 8))
    models = {"small": (Net(8), T, None, info), "big": (Net(1024), T, None, info)}
    ms = call_ms(models, batch=32, repeats=5)
    assert set(ms) == {"small", "big"} and all(v > 0 for v in ms.values())
    assert ms["big"] > ms["small"]


def test_scorer_sprites_uses_pixel_kid_and_zero_for_identical_sets():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(40, 3, 8, 8, generator=g)
    s = scorer("sprites", ref, subsets=5)(ref.clone())
    assert set(s) == {"kid", "kid_std"} and abs(s["kid"]) < 0.05
    far = scorer("sprites", ref, subsets=5)(torch.zeros(40, 3, 8, 8))
    assert far["kid"] > 10 * abs(s["kid"])


def test_sprites_are_scored_in_sprite_features_against_the_nets_unseen_reference(tmp_data):
    "Issue 28: the frontier's sprite KID is 09c's, against the split's reference third (never the net's training third)."
    from gaussdiff.data import load_sprites
    from gaussdiff.frontier import reference_set
    from gaussdiff.spritemetric import get_sprite_net, sprite_kid, sprite_split
    split = sprite_split(seed=0)
    assert torch.equal(reference_set("sprites", 1000, seed=0), split.reference)
    net = get_sprite_net(split, dict(width=4, feat_dim=8, epochs=1, batch_size=16), verbose=False)
    imgs = load_sprites(None, verbose=False)[:40]
    s = scorer("sprites", split.reference, subsets=5, sprite_net=net)(imgs)
    assert s["kid"] == pytest.approx(sprite_kid(split.reference, imgs, net, subsets=5, subset_size=20)[0])


def test_cli_refuses_bad_input_without_a_traceback(tmp_path, capsys):
    assert cli(["--n", "1"]) == 2
    assert "--n must be >= 2" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli(["--json", str(blocker / "out.json"), "--profile", "smoke"]) == 2  # refused before any sampling
    assert "gaussdiff frontier: error: cannot write to" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


def test_gaussdiff_lists_the_frontier_command():
    from gaussdiff.core import COMMANDS
    assert COMMANDS["frontier"] == "gaussdiff.frontier"
    json.dumps({})  # the CLI's output is JSON (see the notebook's smoke run for a whole run)


def test_cli_prints_the_frontier_and_table2_as_json(tmp_path, capsys):
    "The whole `frontier_for` path on the smoke runs (trained first when missing): JSON on stdout and in --json."
    out = tmp_path / "f.json"
    assert cli(["--profile", "smoke", "--n", "4", "--json", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res == json.loads(out.read_text())
    assert set(res["points"]) == {"gir", "pixel"} and res["n"] == 4
    assert res["pixel"] == "recipe" and res["pixel_model"]["patch"] == 1  # the recipe's U-Net unless asked
    for space, pts in res["points"].items():
        assert {p["sampler"] for p in pts} == {"ddpm", "ddim", "dpmpp2m", "dpmpp2m-sde"}
        assert all(p["ms_per_image"] == pytest.approx(p["steps"] * res["call_ms"][space]) for p in pts)
        chosen = res["chosen"][space]
        assert chosen["cheapest"]["kid"] <= chosen["bound"] and chosen["best"]["kid"] <= chosen["cheapest"]["kid"]
        assert {r["setting"] for r in res["few_steps"][space]} == {f"{p['sampler']} {p['steps']}" for p in pts}
    rows = [r["row"] for r in res["table2"]]
    assert rows == ["paper (A100, as reported)", "same steps, these models", "each at its own best, end to end",
                    "equal KID, end to end", "equal-KID steps, paper-size models"]
    assert res["equal_kid"]["gir"]["bound"] == res["equal_kid"]["pixel"]["bound"]


def test_cli_frontier_against_the_sized_pixel_baseline(capsys):
    "--pixel sized: chapter 09a's 2×2-patch, batch-8 U-Net, trained for the GIR run's budget, replaces the recipe's."
    from gaussdiff.checkpoint import load_checkpoint
    from gaussdiff.compare import budget_of
    from gaussdiff.recipes import load_or_train, run_dir
    assert cli(["--profile", "smoke", "--n", "4", "--pixel", "sized"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["pixel"] == "sized" and res["pixel_model"]["patch"] == 2 and res["pixel_model"]["batch_size"] == 8
    assert {p["sampler"] for p in res["points"]["pixel"]} == {"ddpm", "ddim", "dpmpp2m", "dpmpp2m-sde"}
    sized = load_checkpoint(run_dir("pixel", "mnist", "smoke").parent / "mnist-pixel-patch2-batch8-smoke" / "ckpt.pt")
    gir = load_or_train("gir", "mnist", "smoke", progress=False)
    assert sized[3].step == res["pixel_model"]["train_steps"] and sized[0].patch == 2
    assert budget_of(sized[3].config) == budget_of(gir[3].config)  # the same budget as the GIR model it faces


def test_sized_pixel_baseline_is_refused_outside_the_cpu_budget_before_any_work(capsys, monkeypatch):
    import gaussdiff.frontier as F
    monkeypatch.setattr(F, "load_or_train", lambda *a, **k: pytest.fail("loaded or trained a run"))
    assert cli(["--profile", "gpu", "--pixel", "sized"]) == 2
    assert "use the recipe's U-Net (--pixel recipe)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="pixel must be one of"): F.frontier_for("mnist", "smoke", pixel="patched")


def test_cli_stdout_is_only_json_when_the_work_prints(tmp_path, capsys, monkeypatch):
    "On a clean clone the smoke runs are trained on first use, which prints: that goes to stderr, not into the JSON."
    import gaussdiff.frontier as F
    def noisy_frontier(*args, **kw):
        print("[recipes] no cached gir run of mnist: TRAINING IT NOW")
        return {"n": 4}
    monkeypatch.setattr(F, "frontier_for", noisy_frontier)
    assert cli(["--profile", "smoke"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == {"n": 4} and "TRAINING IT NOW" in out.err


def test_call_ms_charges_a_guided_model_both_of_its_calls():
    "A guided class-conditional model costs two network passes per image and step: call_ms times what sampling calls."
    from gaussdiff.transformer import GaussianTransformer
    seen = []
    model = GaussianTransformer.smoke(n_classes=10, T=10).eval()
    model.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    sched = type("S", (), {"T": 10})()
    guided, plain = DataInfo("gir", sample_shape=(6, 8), n_classes=10, guidance=2.0), DataInfo("gir", sample_shape=(6, 8), n_classes=10)
    call_ms({"guided": (model, sched, None, guided)}, batch=4, repeats=2, rounds=1)
    assert set(seen) == {8}  # 4 images with their labels and 4 with none, in one batch
    seen.clear()
    call_ms({"conditional": (model, sched, None, plain)}, batch=4, repeats=2, rounds=1)
    assert set(seen) == {4}

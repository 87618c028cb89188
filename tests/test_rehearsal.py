"The gpu profile rehearsed on this machine: chapters 07-10 with the gpu settings and budgets cut to seconds."
import json, shutil

import pytest

from conftest import NBS, ROOT
from gaussdiff.core import by_profile
from gaussdiff.course import run_course

SHARED = ("mnist_5k.npz", "sprites_crawl.npz", "crawl-tiles", "gir", "metrics")  # read-mostly caches of the checkout


def test_rehearsal_keeps_gpu_settings_and_cuts_sizes():
    from gaussdiff.recipes import make_model, recipe
    gpu, reh = recipe("gir", "mnist", "gpu", "paper"), recipe("gir", "mnist", "rehearsal")
    assert (reh.T, reh.schedule, reh.gir_features, reh.n_splats, reh.model_kw) == (gpu.T, gpu.schedule, gpu.gir_features, 150, {})
    assert (reh.cfg.lr, reh.cfg.ema_decay, reh.cfg.warmup_steps) == (gpu.cfg.lr, gpu.cfg.ema_decay, gpu.cfg.warmup_steps)
    assert reh.cfg.budget_steps == 8 and reh.cfg.budget_minutes is None and gpu.cfg.budget_minutes == 120
    assert sum(p.numel() for p in make_model("gir", "rehearsal", 200).parameters()) == 55_271_432  # the paper's GT
    assert by_profile("rehearsal", smoke=1, cpu=2, gpu=3) == 3


def test_course_rehearsal_needs_the_gpu_profile(tmp_path):
    with pytest.raises(ValueError, match="--profile gpu"):
        run_course("cpu", tmp_path, only=["00"], rehearsal=True)


@pytest.mark.slow
def test_gpu_rehearsal_of_chapters_07_to_10(tmp_path, monkeypatch):
    data = tmp_path / "data"  # its own runs/ (paper-size checkpoints, ~5 GB), the checkout's data and fits shared
    data.mkdir()
    for name in SHARED:
        src = ROOT / "data" / name
        if name in ("gir", "metrics"): src.mkdir(parents=True, exist_ok=True)  # fits and classifiers land in the checkout's
        if src.exists(): (data / name).symlink_to(src)
    monkeypatch.setenv("GAUSSDIFF_DATA", str(data))
    try:
        out = run_course("gpu", tmp_path / "out", only=["07", "08", "09", "10"], nbs_dir=NBS, rehearsal=True,
                         site=False)  # the site has its own test (test_site.py)
        res = {p.stem: json.loads(p.read_text()) for p in (out / "results").glob("*.json")}
        assert res["07b_recipes"]["gir"]["params"] == 55_271_432 and res["07b_recipes"]["gir"]["steps"] == 8
        assert [s["step"] for s in res["07b_recipes"]["gir"]["snapshots"]] == [2, 4, 8]  # epochs 0.5, 1, 2; one at the end
        assert res["07b_recipes"]["sprites"]["pixel"]["steps"] == 8
        assert {r["model"] for r in res["09a_compare"]["table"]} >= {"pixel U-Net", "GIR FiLM", "GIR adaLN-Zero"}
        assert res["09a_compare"]["equal_budget"]["GIR adaLN-Zero"] == res["09a_compare"]["equal_budget"]["GIR FiLM"]
        assert {r["lever"] for r in res["09b_levers"]["table"]} == {"recipe", "course features"}
        assert res["10_timing"]["runs"][0]["preset"] == "paper"
    finally:
        shutil.rmtree(data / "runs", ignore_errors=True)

"gaussdiff.bench: Table 2 as JSON. Structure and loose bounds only: timings on a shared CI machine are not asserted tightly."
import contextlib, json

import pytest
import torch

from gaussdiff import bench as B
from gaussdiff.layers import count_flops, count_params
from gaussdiff.transformer import GaussianTransformer
from gaussdiff.unet import PixelUNet


# Timings run on one torch thread (conftest's one_torch_thread): a busy 2-core machine makes multi-threaded CPU
# kernels erratic.
@pytest.fixture(scope="module")
def res(one_torch_thread):
    return B.bench_models("smoke", "cpu", batch=2, repeats=2, warmup=1, e2e_steps=3, progress=False)


def test_schema_and_machine(res):
    for k in ("device", "device_name", "torch", "threads", "batch", "preset", "modes", "flop_convention", "timing",
              "models", "rows", "skipped", "ratios", "end_to_end", "summary", "paper", "wall_s"):
        assert k in res, k
    assert res["device"] == "cpu" and res["torch"] == torch.__version__ and res["threads"] >= 1
    assert res["paper"]["total_speedup"] == 22 and res["paper"]["gir"]["gflops"] == 4.0
    json.loads(json.dumps(res))  # JSON-ready


def test_rows_values(res):
    rows = {(r["model"], r["mode"]): r for r in res["rows"]}
    assert set(rows) == {("gir", "fp32"), ("pixel", "fp32")}  # the CPU runs fp32 only
    gt, unet = rows["gir", "fp32"], rows["pixel", "fp32"]
    assert gt["steps"] == 200 and unet["steps"] == 1000
    for r in (gt, unet):
        assert r["ms_per_step"] > 0 and r["ms_min"] <= r["ms_per_step"] and len(r["ms_all"]) == 2
        assert r["total_s"] == pytest.approx(r["ms_per_step"] * r["steps"] / 1e3, rel=1e-3)
        assert r["ddim_total_s"] and all(v == pytest.approx(r["ms_per_step"] * int(k) / 1e3, rel=1e-3) for k, v in r["ddim_total_s"].items())
        assert r["tflops_achieved"] > 0 and r["batch"] == 2 and r["dtype"] == "float32"
    ratio = res["summary"]["total_ratio"]["fp32"]
    assert ratio == pytest.approx(unet["total_s"] / gt["total_s"], rel=1e-2)
    assert res["summary"]["per_step_ratio"]["fp32"] == pytest.approx(unet["ms_per_step"] / gt["ms_per_step"], rel=1e-2)
    assert res["summary"]["meets_paper_22x"] == (ratio >= 22)
    paper_pair = [r for r in res["ratios"] if r["gir"] == "ddpm 200" and r["pixel"] == "ddpm 1000"]
    assert len(paper_pair) == 1 and paper_pair[0]["ratio"] == pytest.approx(ratio, rel=1e-3)
    assert any(r["gir"] == "ddim 25" for r in res["ratios"]) and any(r["pixel"] == "ddim 50" for r in res["ratios"])


def test_skipped_modes_have_reasons(res):
    if torch.cuda.is_available(): pytest.skip("CPU-only expectation")
    skipped = {(s["model"], s["mode"]) for s in res["skipped"]}
    assert skipped == {(k, m) for k in ("gir", "pixel") for m in B.MODES if m != "fp32"}
    assert all("CUDA" in s["reason"] for s in res["skipped"])


def test_flops_match_count_flops(res):
    for kind, m, x in [("gir", GaussianTransformer.smoke(), torch.randn(1, 150, 8)), ("pixel", PixelUNet.smoke(), torch.randn(1, 3, 32, 32))]:
        info = res["models"][kind]
        assert info["params"] == count_params(m)
        assert info["gflops"] == pytest.approx(count_flops(m.eval(), x, torch.zeros(1, dtype=torch.long)) / 1e9, rel=1e-3)
        assert info["gflops"] == pytest.approx(info["gflops_analytic"], rel=1e-3)


def test_paper_preset_counts():
    "The paper presets counted on the meta device (instant): 55.3M / 15.6 GFLOPs and 35.7M / 12.4 GFLOPs."
    gt, unet = B.model_flops("gir", "paper"), B.model_flops("pixel", "paper")
    assert gt["params"] / 1e6 == pytest.approx(55.3, abs=0.1) and gt["gflops"] == pytest.approx(15.56, abs=0.05)
    assert unet["params"] / 1e6 == pytest.approx(35.7, abs=0.1) and unet["gflops"] == pytest.approx(12.4, abs=0.1)


def test_end_to_end_rows(res):
    e2e = res["end_to_end"]
    assert {(e["model"], e["sampler"]) for e in e2e} == {("gir", "ddpm"), ("gir", "ddim"), ("pixel", "ddpm"), ("pixel", "ddim")}
    for e in e2e:
        assert e["steps_run"] == 3 and e["extrapolated"] and e["measured_s"] > 0
        assert e["total_s"] == pytest.approx(e["measured_s"] / 3 * e["steps"], rel=1e-2)
        assert e["measured_over_predicted"] > 0


def test_per_step_times_steps_predicts_sampling(one_torch_thread):
    "Loose: sampling 20 steps costs about 20 forward steps (the sampler's update is cheap), within 10×."
    for kind in ("gir", "pixel"):
        m = B.bench_model(kind, "smoke")
        x, t = B.example_inputs(kind, 2)
        ms = B.time_step(m, x, t, repeats=5, warmup=2)["ms"]
        e = B.end_to_end(m, kind, 2, "ddpm", steps=20)
        assert not e["extrapolated"] and e["steps_run"] == 20
        assert 0.1 < (e["measured_s"] * 1e3) / (ms * 20) < 10, (kind, ms, e)


def test_table2(res):
    rows = B.table2(res)
    assert len(rows) == 4 and {r["model"] for r in rows} == set(B.NAMES.values())
    paper = [r for r in rows if r["source"].startswith("paper")]
    assert {r["ms_per_step"] for r in paper} == {1.2, 5.4} and max(r["ratio"] for r in paper) == pytest.approx(22.5)
    ours = [r for r in rows if r["source"].startswith("ours")]
    assert max(r["ratio"] for r in ours) == pytest.approx(res["summary"]["total_ratio"]["fp32"], rel=2e-2)
    with pytest.raises(ValueError, match="not measured"): B.table2(res, "bf16-autocast")


def test_cli_json_stdout_and_file(tmp_path, capsys, one_torch_thread):
    out = tmp_path / "sub" / "bench.json"
    rc = B.cli(["--preset", "smoke", "--device", "cpu", "--batch", "2", "--repeats", "1", "--warmup", "0",
                "--e2e-steps", "1", "--threads", "1", "--quiet", "--json", str(out)])
    cap = capsys.readouterr()
    assert rc == 0
    printed, written = json.loads(cap.out), json.loads(out.read_text())   # stdout is only the JSON
    assert printed == written and written["preset"] == "smoke" and written["threads"] == 1
    assert written["command_wall_s"] > 0 and "--json" in written["command"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["bench.json"]  # atomic: no temporary file left


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_cuda_without_cuda(capsys):
    rc = B.cli(["--device", "cuda", "--preset", "smoke", "--quiet"])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == "" and "CUDA is not available" in cap.err and "Traceback" not in cap.err


@pytest.mark.parametrize("args, msg", [(["--preset", "huge"], "unknown preset"), (["--batch", "0"], "batch"),
                                       (["--modes", "fp64"], "unknown mode"), (["--repeats", "0"], "repeats"),
                                       (["--device", "tpu"], "unknown device"), (["--threads", "0"], "threads"),
                                       (["--batch", "two"], "invalid int")])
def test_cli_bad_args(args, msg, capsys):
    assert B.cli(["--quiet", *args]) == 2
    assert msg in capsys.readouterr().err


def test_api_errors():
    m = B.bench_model("gir", "smoke"); x, t = B.example_inputs("gir", 2)
    with pytest.raises(ValueError, match="repeats"): B.time_step(m, x, t, repeats=0)
    with pytest.raises(ValueError, match="unknown mode"): B.time_step(m, x, t, mode="fp8")
    with pytest.raises(ValueError, match="unknown model"): B.bench_model("vae", "smoke")
    with pytest.raises(ValueError, match="unknown preset"): B.bench_models("large", "cpu")
    with pytest.raises(ValueError, match="batch"): B.bench_models("smoke", "cpu", batch=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA option"): B.time_step(m, x, t, mode="tf32")
        assert B.skip_reason("fp32", "cpu") is None and "CUDA" in B.skip_reason("compile", "cpu")


def test_a_failing_mode_is_skipped_and_the_rest_still_runs(monkeypatch, one_torch_thread):
    "A timing mode that raises is recorded as skipped; the end-to-end rows of the other modes still come out."
    monkeypatch.setattr(B, "skip_reason", lambda mode, device: None if mode in ("fp32", "bf16-autocast") else "not here")
    real = B.make_step
    def flaky(model, x, t, mode="fp32"):
        if mode == "bf16-autocast": raise RuntimeError("no kernel for this dtype")
        return real(model, x, t, mode)
    monkeypatch.setattr(B, "make_step", flaky)
    res = B.bench_models("smoke", "cpu", batch=2, modes="fp32,bf16-autocast", repeats=1, warmup=0, e2e_steps=1)
    assert any(s["mode"] == "bf16-autocast" and s["reason"].startswith("failed: RuntimeError") for s in res["skipped"])
    assert {r["mode"] for r in res["rows"]} == {"fp32"} and {e["mode"] for e in res["end_to_end"]} == {"fp32"}


# ---- T4 honesty (issue 25): the modes and rows each GPU generation gets, with the GPU mocked ----
def _mock_gpu(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


@pytest.mark.parametrize("capability, runs, dtypes", [
    ((7, 5), {"fp32", "fp16-autocast", "compile", "cuda-graphs"},
     {"fp32": "float32", "fp16-autocast": "float16 autocast", "compile": "float16 autocast", "cuda-graphs": "float16 autocast"}),
    ((8, 0), set(B.MODES), {"fp32": "float32", "tf32": "float32 (TF32 matmuls)", "fp16-autocast": "float16 autocast",
                            "bf16-autocast": "bfloat16 autocast", "compile": "bfloat16 autocast"}),
    ((9, 0), set(B.MODES), {"tf32": "float32 (TF32 matmuls)", "bf16-autocast": "bfloat16 autocast", "cuda-graphs": "bfloat16 autocast"}),
])
def test_rows_each_gpu_generation_gets(monkeypatch, capability, runs, dtypes):
    "A T4 (7.5) gets an fp16 row and no 'tf32' row (it would be plain fp32) nor bf16; Ampere and Hopper get them all."
    _mock_gpu(monkeypatch, capability)
    dev = torch.device("cuda")
    reasons = {m: B.skip_reason(m, dev) for m in B.MODES}
    assert {m for m, r in reasons.items() if r is None} == runs
    assert reasons == {m: B.skip_reason(m, "cuda", capability) for m in B.MODES}  # the explicit capability agrees
    # the rows bench_models would write, its timing and model calls stubbed (no GPU here)
    monkeypatch.setattr(B, "make_step", lambda *a: None)
    monkeypatch.setattr(B, "precision", lambda mode, device: contextlib.nullcontext())
    monkeypatch.setattr(B, "time_calls", lambda steps, *a: {k: dict(ms=2.0, ms_min=2.0, ms_all=[2.0]) for k in steps})
    res = dict(preset="smoke", batch=2, rows=[], skipped=[], models={k: dict(params=1, gflops=1.0) for k in B.NAMES})
    B._time_modes(res, {k: None for k in B.NAMES}, {k: (None, None) for k in B.NAMES}, list(B.MODES), reasons, dev, 1, 0, None)
    assert {r["mode"] for r in res["rows"]} == runs and {s["mode"] for s in res["skipped"]} == set(B.MODES) - runs
    got = {r["mode"]: r["dtype"] for r in res["rows"]}
    assert all(got[m] == d for m, d in dtypes.items())
    if capability < (8, 0):
        assert "plain float32" in next(s["reason"] for s in res["skipped"] if s["mode"] == "tf32")
        assert "bfloat16" not in "".join(got.values())  # nothing is labelled bf16 where it would be emulated


@pytest.mark.parametrize("capability, mixed", [((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_autocast_dtype_follows_the_gpu(monkeypatch, capability, mixed):
    _mock_gpu(monkeypatch, capability)
    assert B.autocast_dtype("fp16-autocast", "cuda") == torch.float16
    assert B.autocast_dtype("compile", "cuda") == B.autocast_dtype("cuda-graphs", "cuda") == mixed
    assert B.autocast_dtype("fp32", "cuda") is None and B.autocast_dtype("tf32", "cuda") is None
    assert B.autocast_dtype("fp16-autocast", "cpu") is None  # autocast is a CUDA mode here


def test_end_to_end_uses_fp16_where_bf16_is_skipped(monkeypatch):
    "The T4's end-to-end rows: fp32 and fp16-autocast (before: fp32 only, bf16 being skipped)."
    calls = []
    monkeypatch.setattr(B, "end_to_end", lambda m, kind, b, sampler, steps, e2e, mode, *a, **k: calls.append(mode) or
                        dict(total_s=1.0, mode=mode))
    res = dict(batch=2, end_to_end=[], rows=[dict(model=k, mode=m, ms_per_step=1.0) for k in B.NAMES for m in ("fp32", "fp16-autocast")])
    reasons = {m: B.skip_reason(m, "cuda", (7, 5)) for m in B.MODES}
    B._end_to_end_rows(res, {k: None for k in B.NAMES}, list(B.MODES), reasons, 2, 150, 3, 0, None)
    assert set(calls) == {"fp32", "fp16-autocast"} and len(calls) == 8

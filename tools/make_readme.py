"""README.md is generated from nbs/index.ipynb (Quarto, which nbdev_readme needs, cannot be installed offline).
Markdown cells are copied; code cells become fenced python blocks; cells tagged `hide` (or starting `#| hide`) are
skipped.
The index's path-map cell (the one starting with `PATH_MAP_MARK`) is first rewritten from `gaussdiff.course.CHAPTERS`."""
import json
import sys
from pathlib import Path

PATH_MAP_MARK = "<!-- path map: made from gaussdiff.course.CHAPTERS by tools/make_readme.py; edit the table there -->"


def render_readme(index_nb) -> str:
    nb = json.loads(Path(index_nb).read_text())
    parts = ["<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->"]
    for cell in nb["cells"]:
        src = "".join(cell["source"]).strip()
        if not src or "hide" in cell.get("metadata", {}).get("tags", []) or src.startswith("#| hide"): continue
        parts.append(src if cell["cell_type"] == "markdown" else f"```python\n{src}\n```")
    return "\n\n".join(parts) + "\n"


def path_map_cell() -> str:
    "The text of the index's path-map cell, made from the chapter table."
    from gaussdiff.course import path_map_markdown
    return PATH_MAP_MARK + "\n\n" + path_map_markdown()


def sync_path_map(index_nb) -> bool:
    "Rewrite the index's path-map cell from the chapter table; True when it changed."
    path = Path(index_nb)
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "".join(c["source"]).startswith(PATH_MAP_MARK))
    new = path_map_cell().splitlines(keepends=True)
    if cell["source"] == new: return False
    cell["source"] = new
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    if sync_path_map(root / "nbs" / "index.ipynb"): print("nbs/index.ipynb: path map rewritten from CHAPTERS")
    (root / "README.md").write_text(render_readme(root / "nbs" / "index.ipynb"))
    print("README.md written")

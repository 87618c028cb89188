"""README.md is generated from nbs/index.ipynb (Quarto, which nbdev_readme needs, cannot be installed offline).
Markdown cells are copied; code cells become fenced python blocks; cells tagged `hide` (or starting `#| hide`) are skipped."""
import json
from pathlib import Path


def render_readme(index_nb) -> str:
    nb = json.loads(Path(index_nb).read_text())
    parts = ["<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->"]
    for cell in nb["cells"]:
        src = "".join(cell["source"]).strip()
        if not src or "hide" in cell.get("metadata", {}).get("tags", []) or src.startswith("#| hide"): continue
        parts.append(src if cell["cell_type"] == "markdown" else f"```python\n{src}\n```")
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    (root / "README.md").write_text(render_readme(root / "nbs" / "index.ipynb"))
    print("README.md written")

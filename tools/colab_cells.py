"""Write the two Colab cells into every chapter notebook (nbs/NN*_*.ipynb), identical in each; idempotent.

    python tools/colab_cells.py           # rewrite the cells where they differ; prints the notebooks it changed
    python tools/colab_cells.py --check   # exit 1 (naming them) if a notebook's cells differ from these

1. "Keep your work on Drive" (optional, a Colab checkbox): mounts Google Drive and points GAUSSDIFF_DATA at
   MyDrive/gaussdiff-data, so data caches, GIR fits and trained runs outlive the Colab machine.
2. Install: `%pip install "gaussdiff[course] @ git+<git_url>@v<version>"`, the release this notebook belongs to
   (settings.ini's git_url and version; a release bumps the version, reruns this script and tags v<version>).
   GAUSSDIFF_SOURCE overrides the source: a pip URL, or a wheel's path (turned into the file:// URL pip needs).
   pip's own output stays visible; a failed install stops the notebook with the next step. Colab's torch is kept.
Both do nothing outside Colab. Drive comes first so that GAUSSDIFF_SOURCE may name a wheel on Drive.
A chapter's Colab cells are its code cells mentioning `google.colab`: they are replaced in place, or, in a new
chapter, inserted after its `#| default_exp` cell (else before its `parameters` cell).
"""
import configparser, hashlib, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "google.colab"   # what makes a cell one of these (and no other cell of a chapter mentions it)

DRIVE_CELL = '''#| hide
# Colab only, optional: keep your work on Google Drive. A Colab machine forgets its disk when the session ends;
# with Drive the data caches, GIR fits and trained runs (GAUSSDIFF_DATA) stay in MyDrive/gaussdiff-data, so a later
# chapter or session loads them instead of redoing them. Untick the box to keep everything on this machine.
keep_work_on_drive = True  # @param {type:"boolean"}
import os, sys
if "google.colab" in sys.modules and keep_work_on_drive:
    try:
        from google.colab import drive
        drive.mount("/content/drive")   # Colab asks for permission once per session
        os.environ.setdefault("GAUSSDIFF_DATA", "/content/drive/MyDrive/gaussdiff-data")
    except Exception as e:  # declined or unavailable: the course still runs, its work stays on this machine
        print(f"Drive not mounted ({type(e).__name__}: {e}); this session keeps its work on the Colab machine only.")
    print("gaussdiff keeps its data in", os.environ.get("GAUSSDIFF_DATA", "~/.cache/gaussdiff on this machine"))'''

INSTALL_CELL = '''#| hide
# Colab only: install gaussdiff {version}, the release this notebook was written for (Colab's own torch is kept).
# Does nothing anywhere else. GAUSSDIFF_SOURCE, set in a cell above, overrides where it comes from: a pip URL
# (git+https://...@<commit>) or a wheel's path (on Drive, say).
import os, sys
if "google.colab" in sys.modules:
    from pathlib import Path
    from IPython import get_ipython
    source = os.environ.get("GAUSSDIFF_SOURCE", "git+{git_url}@v{version}")
    # pip takes a path only as a file:// URL
    if "://" not in source: source = Path(source).expanduser().resolve().as_uri()
    os.environ["GIT_TERMINAL_PROMPT"] = "0"   # a wrong or private URL fails instead of waiting for a password
    %pip install "gaussdiff[course] @ {{source}}"
    if get_ipython().user_ns.get("_exit_code", 0) != 0:
        raise SystemExit(f"pip could not install gaussdiff from {{source}} (its message is above). Next step: set "
                         "os.environ['GAUSSDIFF_SOURCE'] in a cell above to a reachable copy (a git URL with @commit, "
                         "or a wheel's path) and run this cell again.")'''


def settings(root=ROOT) -> configparser.SectionProxy:
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(Path(root) / "settings.ini", encoding="utf-8")
    return cfg["DEFAULT"]


def colab_cells(root=ROOT) -> list[str]:
    "The sources of the two cells, in notebook order: Drive, then install (pinned to settings.ini's version)."
    s = settings(root)
    return [DRIVE_CELL, INSTALL_CELL.format(version=s["version"], git_url=s["git_url"])]


def chapters(root=ROOT) -> list[Path]:
    return sorted((Path(root) / "nbs").glob("[0-9][0-9]*_*.ipynb"))   # index.ipynb is the README, not a chapter


def _src(cell) -> str: return "".join(cell["source"])


def _code_cell(nb_path: Path, role: int, src: str) -> dict:
    cid = hashlib.sha1(f"{nb_path.stem}:colab{role}".encode()).hexdigest()[:8]   # stable: reruns change nothing
    return {"cell_type": "code", "execution_count": None, "id": cid, "metadata": {}, "outputs": [],
            "source": src.splitlines(keepends=True)}


def _insert_at(cells: list) -> int:
    "Where a chapter without Colab cells gets them: after `#| default_exp`, else before `parameters`, else after the title."
    for i, c in enumerate(cells):
        if c["cell_type"] == "code" and _src(c).lstrip().startswith("#| default_exp"): return i + 1
    for i, c in enumerate(cells):
        if "parameters" in c.get("metadata", {}).get("tags", []): return i
    return 1 if cells and cells[0]["cell_type"] == "markdown" else 0


def with_colab_cells(nb: dict, nb_path: Path, sources: list[str]) -> dict:
    "The notebook with its Colab cells replaced by `sources` (at the first old one's place, or `_insert_at`)."
    cells = nb["cells"]
    old = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and MARK in _src(c)]
    at = old[0] if old else _insert_at(cells)
    kept = [c for i, c in enumerate(cells) if i not in old]
    at -= sum(i < at for i in old)
    new = [_code_cell(nb_path, k, s) for k, s in enumerate(sources)]
    return dict(nb, cells=kept[:at] + new + kept[at:])


def _dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"   # nbdev_clean's layout


def update(root=ROOT, check: bool = False) -> list[Path]:
    "Rewrite (or with `check`, only list) the chapters whose Colab cells differ from `colab_cells()`."
    sources, changed = colab_cells(root), []
    for p in chapters(root):
        text = p.read_text(encoding="utf-8")
        nb = json.loads(text)
        new = with_colab_cells(nb, p, sources)
        if new == nb: continue
        changed.append(p)
        if not check: p.write_text(_dump(new), encoding="utf-8")
    return changed


if __name__ == "__main__":
    check = "--check" in sys.argv[1:]
    changed = update(check=check)
    for p in changed: print(("differs: " if check else "updated: ") + str(p.relative_to(ROOT)))
    if check and changed:
        print("run `python tools/colab_cells.py` to write the Colab cells", file=sys.stderr); sys.exit(1)

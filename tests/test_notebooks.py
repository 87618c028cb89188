"Every chapter notebook runs top to bottom under papermill in the smoke profile."
from pathlib import Path

import papermill as pm
import pytest

from conftest import NBS
from test_fast_track import check_smoke_outputs

OUTPUT_CHECKS = {"00_fast_track": check_smoke_outputs}  # notebook -> what its smoke run must write under out_dir

NOTEBOOKS = sorted(NBS.glob("[0-9][0-9]*_*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_smoke(nb: Path, tmp_path):
    out = tmp_path / "out"
    pm.execute_notebook(str(nb), str(tmp_path / nb.name), parameters=dict(profile="smoke", out_dir=str(out)),
                        kernel_name="python3", cwd=str(NBS), progress_bar=False,
                        execution_timeout=900)  # a cell that hangs fails the test instead of the whole CI run
    if nb.stem in OUTPUT_CHECKS: OUTPUT_CHECKS[nb.stem](out)

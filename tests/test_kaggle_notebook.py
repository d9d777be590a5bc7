"""notebooks/kaggle.ipynb: its code cells run here on the CPU, in order, on tiny synthetic competition files laid
out as Kaggle mounts them (/kaggle/input/<competition>/), with this Python's own torch (no install).

    .venv/bin/python -m pytest -q tests/test_kaggle_notebook.py
"""
import json
import zipfile

import pandas as pd

from competition import SLUG
from tests.conftest import REPO, kaggle_zip, synthetic_rows

NOTEBOOK = REPO / "notebooks" / "kaggle.ipynb"


def code_cells() -> list[str]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_the_notebook_runs_from_kaggle_input_to_a_submission(tmp_path, monkeypatch, capsys):
    source = kaggle_zip(tmp_path / "c.zip", *synthetic_rows(n_train=280), with_private_labels=False)
    competition = tmp_path / "input" / SLUG
    with zipfile.ZipFile(source) as z:
        z.extractall(competition)  # Kaggle mounts the competition's files as a folder
    output = tmp_path / "output"
    output.mkdir()
    for key, value in {"FER_KAGGLE_INPUT": tmp_path / "input", "FER_WORKDIR": tmp_path / "working",
                       "FER_OUTPUT": output, "FER_REPO": REPO, "FER_INSTALL": "0",
                       "FER_ARGS": "--device cpu --models baseline_cnn --k 2 --epochs 1 --nproc 1"}.items():
        monkeypatch.setenv(key, str(value))
    namespace = {}
    for cell in code_cells():
        assert "!" not in [line.lstrip()[:1] for line in cell.splitlines()]  # no shell magics: plain Python
        exec(compile(cell, str(NOTEBOOK), "exec"), namespace)
    out = capsys.readouterr().out
    assert "competition.run_all --from" in out and str(competition) in out
    submission = pd.read_csv(output / "submission.csv")
    assert len(submission) == 28 and submission.iloc[:, -1].between(0, 6).all()
    assert (tmp_path / "working" / "folds" / "baseline_cnn" / "fold1" / "done.json").exists()


def test_the_kaggle_requirements_keep_the_notebooks_torch():
    lines = [ln.split("#")[0].strip() for ln in (REPO / "requirements-kaggle.txt").read_text().splitlines()]
    names = {ln.split(">")[0].split("=")[0].split("<")[0].strip().lower() for ln in lines if ln}
    assert "timm" in names and not names & {"torch", "torchvision"}
    assert not any("==" in ln for ln in lines if ln)  # no pins that would replace the image's packages

"""run_command: a user error is one line and exit 2; a bug keeps its traceback and exits 1. Each command's main
ends through it.

    .venv/bin/python -m pytest -q tests/test_errors.py
"""
import pytest

from competition import data, download, folds, report, submit
from competition.atomic import LockedError
from competition.blending import FitError
from competition.data import DataError
from competition.errors import SettingsError, run_command
from competition.kaggle_cli import KaggleError
from competition.submission import SubmissionError
from tests.fake_runs import make_dataset


def test_a_user_error_is_one_line_and_exit_2(capsys):
    def command(argv):
        raise SettingsError(f"folds/folds.csv: made for other data (argv {argv}). Run `./run.sh folds` again.")
    assert run_command(command, ["--k", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("error: folds/folds.csv: made for other data (argv ['--k', '5']). "
                            "Run `./run.sh folds` again.\n")
    assert captured.out == ""


@pytest.mark.parametrize("bug", [ValueError("bad shape (3,) vs (4,)"), RuntimeError("CUDA error"), KeyError("logits")])
def test_any_other_exception_keeps_its_traceback_and_exits_1(capsys, bug):
    def command(argv):
        raise bug
    assert run_command(command) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert f"{type(bug).__name__}: {bug}" in err and "error:" not in err


def test_success_is_exit_0_and_a_returned_code_is_kept():
    assert run_command(lambda argv: None) == 0
    assert run_command(lambda argv: 3) == 3


@pytest.mark.parametrize("error", [DataError, SubmissionError, KaggleError, report.ReportError, LockedError, FitError])
def test_every_user_error_is_one_line_and_exit_2(error, capsys):
    def command(argv):
        raise error("data/fer2013.npz: row 3 has 2303 pixels, not 2304. Run ./run.sh download --force.")
    assert run_command(command) == 2
    assert capsys.readouterr().err == "error: data/fer2013.npz: row 3 has 2303 pixels, not 2304. " \
                                      "Run ./run.sh download --force.\n"


@pytest.mark.parametrize("command, argv", [
    (data, []), (download, ["--from", "nowhere.zip"]), (folds, []), (submit, ["-m", "x"]), (report, []),
])
def test_each_command_reports_a_missing_dataset_as_one_line_and_exit_2(command, argv, capsys):
    assert command.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_a_bug_inside_a_command_is_a_traceback_and_exit_1(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a user error")
    monkeypatch.setattr(folds, "load_dataset", broken)
    assert folds.main([]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: a bug, not a user error" in err


def test_folds_k_below_2_is_a_user_error(tmp_path, capsys):
    make_dataset(tmp_path)
    assert folds.main(["--k", "1"]) == 2
    assert capsys.readouterr().err == "error: --k must be at least 2, got 1. Use --k 5, the default.\n"

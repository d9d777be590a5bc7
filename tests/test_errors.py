"""run_command: a user error is one line and exit 2; a bug keeps its traceback and exits 1. Each command's main
ends through it.

    .venv/bin/python -m pytest -q tests/test_errors.py
"""
import pytest

from competition import data, download, folds, report, submit
from competition.atomic import LockedError
from competition.blending import FitError
from competition.data import DataError
from competition.errors import QUOTE_CHARS, SettingsError, UserError, quote, run_command
from competition.kaggle_cli import KaggleError
from competition.recipes import parse_overrides
from competition.submission import SubmissionError, validate_submission
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


# ---------------------------------------------------------------- messages quote a bounded part of the input

MB = "x" * 1_000_000  # a 1 MB line or cell


def test_quote_keeps_short_input_and_cuts_long_input_saying_how_long():
    assert quote("Training") == "'Training'"
    cut = quote(MB)
    assert len(cut) < QUOTE_CHARS + 40 and cut.startswith("'xxx") and "1000002 characters in all" in cut


def fer_with(tmp_path, header="emotion,pixels,Usage", label="0", usage="Training", pixels=None):
    path = tmp_path / "fer2013.csv"
    pixels = pixels or " ".join(["7"] * 2304)
    path.write_text(f"{header}\n{label},{pixels},{usage}\n")
    return path


def write(path, text):
    path.write_text(text)
    return path


LONG_INPUT = {  # what reads the input -> the call that must refuse it, quoting at most QUOTE_CHARS of it
    "a csv's header line (unrecognised)": lambda t: data.prepare(write(t / "mine.csv", MB + "\n1\n")),
    "fer2013.csv's header (a missing column)": lambda t: data.prepare(fer_with(t, header=f"emotion,pixels,{MB}")),
    "an emotion cell": lambda t: data.prepare(fer_with(t, label=MB)),
    "a Usage cell": lambda t: data.prepare(fer_with(t, usage=MB)),
    "a 5000-digit pixel value": lambda t: data.prepare(fer_with(t, pixels="9" * 5000 + " 7" * 2303)),
    "a fold in folds.csv": lambda t: folds.read_folds(write(t / "folds.csv", f"row,fold\n0,{MB}\n")),
    "a line of a submission": lambda t: validate_submission(write(t / "s.csv", f"Emotion\n{MB}\n"), 1),
    "a --set value": lambda t: parse_overrides([f"lr={MB}"]),
}


@pytest.mark.parametrize("source", LONG_INPUT)
def test_a_message_quotes_at_most_a_short_part_of_any_input(tmp_path, source):
    with pytest.raises(UserError) as err:
        LONG_INPUT[source](tmp_path)
    message = str(err.value)
    assert len(message) < 600, message[:300]
    assert "characters in all" in message

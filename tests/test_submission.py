"""Submission format and validation; `python -m competition.submit` with the real kaggle CLI against the fake.

    .venv/bin/python -m pytest -q tests/test_submission.py

The submit tests reuse the loopback fake and the isolated environment of tests/test_kaggle_cli.py (its
fixtures are imported below), applied to os.environ because competition.submit runs as a command.
"""
import os

import numpy as np
import pytest

from competition import SLUG, paths, submit
from competition.submission import SubmissionError, format_submission, validate_submission, write_submission
from fake_kaggle import SUBMITTED_MESSAGE
from test_kaggle_cli import KEY, env, fake, server  # noqa: F401  (fixtures: env needs server, fake is its state)
from tests.fake_runs import make_dataset

GOOD = "Emotion\n0\n6\n3\n"
BAD = {
    # name: (text, what the message must say)
    "too few rows": ("Emotion\n0\n6\n", "2 rows of labels, expected 3"),
    "too many rows": ("Emotion\n0\n6\n3\n1\n", "4 rows of labels, expected 3"),
    "non-integer": ("Emotion\n0\n3.0\n3\n", "line 3: '3.0' is not an integer label 0..6"),
    "a word": ("Emotion\n0\nHappy\n3\n", "line 3: 'Happy' is not an integer"),
    "label 7": ("Emotion\n0\n7\n3\n", "line 3: '7' is not an integer label 0..6"),
    "label -1": ("Emotion\n-1\n6\n3\n", "line 2: '-1' is not an integer label 0..6"),
    "empty value": ("Emotion\n0\n\n3\n", "line 3: empty value"),
    "blank line at the end": ("Emotion\n0\n6\n3\n\n", "line 5: empty value"),
    "extra column": ("Emotion\n0\n6,1\n3\n", "line 3: '6,1' has 2 columns"),
    "extra header column": ("Id,Emotion\n0\n6\n3\n", "line 1: 'Id,Emotion' has 2 columns"),
    "numeric header": ("3.5\n0\n6\n3\n", "line 1: '3.5' is not an integer"),
    "empty file": ("", "the file is empty"),
}


@pytest.mark.parametrize("case", BAD)
def test_validation_refuses_each_kind_of_bad_file(case, tmp_path):
    text, expected = BAD[case]
    with pytest.raises(SubmissionError, match="ensemble") as caught:
        validate_submission(text, 3)
    assert expected in str(caught.value)
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SubmissionError, match=f"^{path}: "):  # the file is named
        validate_submission(path, 3)


@pytest.mark.parametrize("n_rows", [0, -1])
@pytest.mark.parametrize("text", ["Emotion\n", "", "0\n"])
def test_validation_refuses_a_dataset_without_test_rows(text, n_rows, tmp_path):
    with pytest.raises(SubmissionError, match=rf"^submission: cannot be checked against {n_rows} test rows.*"
                                              r"`./run.sh download --force`"):
        validate_submission(text, n_rows)
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(SubmissionError, match=f"^{path}: cannot be checked"):
        validate_submission(path, n_rows)
    with pytest.raises(SubmissionError, match="cannot be checked against 0 test rows"):
        format_submission(np.array([], dtype=int))


@pytest.mark.parametrize("text, n_rows, rows", [("Emotion\n", 3, 0), ("Emotion\n0\n", 7178, 1), (GOOD, 2, 3)])
def test_validation_refuses_any_other_row_count(text, n_rows, rows):
    with pytest.raises(SubmissionError, match=f"{rows} rows of labels, expected {n_rows}"):
        validate_submission(text, n_rows)


@pytest.mark.parametrize("text", [GOOD, "0\n6\n3\n", "Emotion\r\n0\r\n6\r\n3\r\n", "Emotion\n0\n6\n3"])
def test_validation_accepts_header_or_none_lf_or_crlf(text):
    validate_submission(text, 3)


def test_format_without_example_writes_the_emotion_header():
    assert format_submission(np.array([0, 6, 3])) == GOOD


def test_format_copies_the_example_header_and_crlf_endings():
    text = format_submission([4, 1, 6], "Label\r\n0\r\n0\r\n0\r\n")
    assert text == "Label\r\n4\r\n1\r\n6\r\n"
    assert format_submission([4, 1, 6], "0\n0\n0") == "4\n1\n6"  # no header, no final newline: copied too


@pytest.mark.parametrize("example, expected", [
    ("Emotion\n0\n0\n", "has 2 rows but test.csv has 3"),
    ("Id,Emotion\n1,0\n2,0\n3,0\n", "has 2 columns"),
    ("", "is empty"),
])
def test_format_refuses_an_example_it_cannot_follow(example, expected):
    with pytest.raises(SubmissionError, match=expected):
        format_submission([0, 1, 2], example)


def test_format_refuses_labels_outside_0_to_6():
    with pytest.raises(SubmissionError, match="'7' is not an integer label"):
        format_submission([0, 7, 2])


def test_a_bad_file_is_never_written(tmp_path):
    old, new = tmp_path / "submission.csv", tmp_path / "new.csv"
    old.write_text(GOOD)
    with pytest.raises(SubmissionError):
        write_submission("Emotion\n0\n9\n3\n", 3, new, old)
    assert old.read_text() == GOOD and not new.exists()
    write_submission("Emotion\n1\n1\n1\n", 3, new, old)
    assert new.read_text() == old.read_text() == "Emotion\n1\n1\n1\n"


# --- python -m competition.submit, with the real kaggle CLI against the loopback fake ---------------------


@pytest.fixture
def kaggle_env(env, monkeypatch):
    """os.environ becomes test_kaggle_cli's isolated environment: fake credentials, the fake as proxy."""
    for name in set(os.environ) - set(env):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def submission(tmp_path, kaggle_env):
    fd = make_dataset(tmp_path)
    path = paths.submissions_dir() / "submission.csv"
    write_submission(format_submission(np.arange(len(fd.test_labels)) % 7, fd.example_submission),
                     len(fd.test_labels), path)
    return path


def test_submit_sends_exactly_the_file(fake, submission, capsys):
    assert submit.main(["-m", "bn_cnn, 3 folds"]) == 0
    out = capsys.readouterr().out
    assert SUBMITTED_MESSAGE in out and KEY not in out
    assert fake.submissions == [{"competition": SLUG, "bytes": submission.read_bytes(),
                                 "description": "bn_cnn, 3 folds"}]


def test_submit_to_a_closed_competition_says_so_and_exits_2(fake, submission, capsys):
    fake.accepting_submissions = False
    assert submit.main([str(submission), "-m", "late"]) == 2
    err = capsys.readouterr().err
    assert "no longer accept" in err and f"still valid locally: {submission}" in err and KEY not in err
    assert fake.submissions == []


def test_a_bad_file_is_refused_before_any_request(fake, submission, capsys):
    submission.write_text(submission.read_text() + "3\n")  # one row too many
    assert submit.main(["-m", "x"]) == 2
    assert "57 rows of labels, expected 56" in capsys.readouterr().err
    assert fake.requests == []


def test_submit_without_the_dataset_says_how_to_get_it(fake, kaggle_env, tmp_path, capsys):
    path = tmp_path / "s.csv"
    path.write_text(GOOD)
    assert submit.main([str(path), "-m", "x"]) == 2
    assert "no prepared dataset" in capsys.readouterr().err
    assert fake.requests == []

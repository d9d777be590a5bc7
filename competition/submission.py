"""The submission file format, in one place: write it, and check a file before it is written or sent.

    from competition.submission import format_submission, validate_submission, write_submission
    text = format_submission(test_labels_pred, data.example_submission)   # one label 0..6 per test.csv row
    write_submission(text, n_test_rows, path)                            # validates first, then atomic write
    validate_submission(Path("submissions/submission.csv"), 7178)         # raises SubmissionError

No official format is known: the organisers' 2013 baseline
wrote one integer per line, in test.csv order, with no Id column and no header. So:
  - when the download had example_submission.csv, it wins: we copy its header (its first line, if that
    line is not an integer), its row count (which must equal test.csv's) and its line endings;
  - otherwise we write one predicted label per test.csv row, in order, under the one-line header `Emotion`
    (the example file in tests has it, and a word is harmless where a header is expected; a header-less
    file would lose its first prediction to a parser that expects one).
Validation accepts both forms (an integer first line means no header). A file that fails it is never
written and never sent.
"""
import re
from pathlib import Path

import numpy as np

from competition import CLASSES, NUM_CLASSES
from competition.atomic import atomic_write_text
from competition.errors import UserError, quote

HEADER = "Emotion"
LABELS_HINT = ", ".join(f"{i} {c}" for i, c in enumerate(CLASSES))
REDO = "Write it again with `./run.sh ensemble` (python -m competition.ensemble)."
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_COLUMN_NAME = re.compile(r"[A-Za-z_][\w ]*")


class SubmissionError(UserError):
    """A submission file is malformed: the message names the file, the line, what is wrong and what to do."""


def _is_integer(line: str) -> bool:
    return bool(_INTEGER.fullmatch(line))


def example_rows(example: str) -> int:
    """Rows of labels in example_submission.csv: its non-blank lines, less a header (a first line that is not
    an integer). This is the number of test rows the competition expects."""
    lines = example.lstrip("\ufeff").splitlines()
    header = bool(lines) and not _is_integer(lines[0])
    return sum(1 for line in lines[header:] if line.strip())


def _example_layout(example: str, n_rows: int) -> tuple[str | None, str, bool]:
    """(header or None, line ending, ends with a line ending) of example_submission.csv, checked."""
    lines = example.lstrip("\ufeff").splitlines(keepends=True)
    if not lines:
        raise SubmissionError("example_submission.csv is empty. Download the competition files again.")
    ending = "\r\n" if lines[0].endswith("\r\n") else "\n"
    first = lines[0].rstrip("\r\n")
    header = None if _is_integer(first) else first
    if header is not None and "," in header:
        raise SubmissionError(f"example_submission.csv: header {quote(header)} has {header.count(',') + 1} columns; this "
                              f"harness writes one label column. Adapt competition/submission.py to that format.")
    rows = example_rows(example)
    if rows != n_rows:
        raise SubmissionError(f"example_submission.csv has {rows} rows but test.csv has {n_rows}: the files seem to "
                              f"come from different downloads. Run `./run.sh download --force` again.")
    return header, ending, lines[-1].endswith(("\n", "\r"))


def format_submission(labels, example: str | None = None) -> str:
    """Text of a submission: one predicted label (0..6) per test row, in test.csv order."""
    labels = np.asarray(labels)
    if example is None:
        header, ending, final = HEADER, "\n", True
    else:
        header, ending, final = _example_layout(example, len(labels))
    lines = ([header] if header is not None else []) + [str(int(v)) for v in labels]
    text = ending.join(lines) + (ending if final else "")
    validate_submission(text, len(labels))
    return text


def _read(source: str | Path) -> tuple[str, str]:
    """(name for messages, text) of a path or of text already in memory."""
    if isinstance(source, str):
        return "submission", source
    path = Path(source)
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file. {REDO}")
    try:
        return str(path), path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise SubmissionError(f"{path}: not UTF-8 text ({quote(str(err))}). {REDO}") from err


def _check_row(name: str, number: int, line: str) -> None:
    where = f"{name}: line {number}"
    if "," in line:
        raise SubmissionError(f"{where}: {quote(line)} has {line.count(',') + 1} columns; a submission has one column, "
                              f"the predicted label. {REDO}")
    if not line.strip():
        raise SubmissionError(f"{where}: empty value; every test row needs a predicted label. {REDO}")
    if not _is_integer(line) or not 0 <= int(line) < NUM_CLASSES:
        raise SubmissionError(f"{where}: {quote(line.strip())} is not an integer label 0..6 ({LABELS_HINT}). {REDO}")


def validate_submission(source: str | Path, n_rows: int) -> None:
    """Raise SubmissionError unless `source` (a Path, or the text itself) holds exactly n_rows labels 0..6."""
    name, text = _read(source)
    if n_rows <= 0:  # a dataset without test rows: no file is a valid submission to it, not even an empty one
        raise SubmissionError(f"{name}: cannot be checked against {n_rows} test rows; the dataset needs test.csv's "
                              f"rows. Run `./run.sh download --force` to get the complete competition files.")
    lines = [line.rstrip("\r") for line in text.lstrip("\ufeff").split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the line ending after the last row
    if not lines:
        raise SubmissionError(f"{name}: the file is empty; expected {n_rows} labels, one per test.csv row. {REDO}")
    first = 1
    if not _is_integer(lines[0]):  # a header line
        if "," in lines[0] or not _COLUMN_NAME.fullmatch(lines[0].strip()):
            _check_row(name, 1, lines[0])  # not an integer, so it raises: extra column, empty or not a label
        first = 2
    for number, line in enumerate(lines[first - 1:], start=first):
        _check_row(name, number, line)
    rows = len(lines) - (first - 1)
    if rows != n_rows:
        raise SubmissionError(f"{name}: {rows} rows of labels, expected {n_rows} (one per test.csv row, in order). "
                              f"{REDO}")


def write_submission(text: str, n_rows: int, *targets: Path) -> None:
    """Validate `text`, then write it atomically to every target: a bad file is never written."""
    validate_submission(text, n_rows)
    for target in targets:
        atomic_write_text(target, text)

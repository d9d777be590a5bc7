"""User errors and the one runner every command ends through.

A user error is something the person at the keyboard can fix (a missing file, a bad flag, a locked fold):
it prints one line `error: ...` naming the file and what to do, and exits 2. A message shows at most
QUOTE_CHARS characters of any input (`quote`). Anything else is a bug in
the harness or a library: it keeps its traceback and exits 1, so it is never hidden behind a one-liner.

    from competition.errors import UserError, run_command
    sys.exit(run_command(main))
"""
import argparse
import sys
import traceback

QUOTE_CHARS = 80  # the most characters of any input (a header, a cell, a flag) that a message shows


def quote(value, limit: int = QUOTE_CHARS) -> str:
    """Input shown in a message, as its repr, cut to `limit` characters and then saying how long it was: a
    100 MB line in a bad file must not become a 100 MB error message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters in all)"


class UserError(Exception):
    """Base of every error that the user can fix; the message says what to do."""


class SettingsError(UserError):
    """Flags, recipes or an existing run's settings that do not fit together."""


class OldSpelling(argparse.Action):
    """A flag's old spelling, kept working: it sets the new flag's value and says once that it was renamed.
        p.add_argument("--seed", dest="seeds", action=OldSpelling, new="--seeds", help=argparse.SUPPRESS)"""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is now {self.new} (the old spelling still works)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def run_command(main, argv=None) -> int:
    """main(argv) -> exit code; a UserError becomes `error: ...` and exit 2, anything else a traceback and 1."""
    try:
        return main(argv) or 0
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 (a bug: show all of it)
        traceback.print_exc()
        return 1

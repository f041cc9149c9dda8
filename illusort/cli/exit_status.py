"""illusort's exit codes, in one place: the `--help` epilog is written from this enum and the
README's "Exit codes" paragraph says the same (tests/test_cli_definition.py checks both)."""
from __future__ import annotations

import sys
from enum import IntEnum

from .rendering import echo


class ExitStatus(IntEnum):
    """An exit code and what it means to the user."""

    def __new__(cls, code: int, meaning: str):
        status = int.__new__(cls, code)
        status._value_ = code
        status.meaning = meaning
        return status

    SUCCESS = 0, "done"
    ERROR = 1, "error (one line says why)"            # click.ClickException's code
    USAGE = 2, "wrong command line"                   # click.UsageError's code
    SKIPPED = 3, "done but --strict and some file was skipped"
    INTERRUPTED = 130, "interrupted (run the same command again to resume)"   # 128 + SIGINT


def leave(status: ExitStatus) -> None:
    """End the command with STATUS (as a plain int: what every caller of `main` expects)."""
    sys.exit(int(status))


def epilog() -> str:
    """'Exit codes: 0 done, 1 error (...), ...' for `illusort --help`."""
    return "Exit codes: " + ", ".join(f"{status.value} {status.meaning}" for status in ExitStatus) + "."


def exit_if_strict(strict: bool, skipped: int, said: str = f"file(s) skipped (exit code {ExitStatus.SKIPPED.value})") -> None:
    """`--strict`: the command did its work, but SKIPPED files make the exit code 3."""
    if strict and skipped:
        echo(f"strict: {skipped} {said}", err=True)
        leave(ExitStatus.SKIPPED)

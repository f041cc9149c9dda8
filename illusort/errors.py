"""The one exception base of every failure illusort reports to the user as a one-line error.

The CLI's one handler (`cli/group.py`) turns an `IllusortError` into `Error: <message>` and exit code 1; any
other exception is a bug and keeps its traceback. Each module's error class derives from
it (and from the built-in class it always had, so `except ValueError` code still works).
This module imports nothing, so every command can use it without loading torch.
"""
from __future__ import annotations


class IllusortError(Exception):
    """A failure the user can fix; the message says what went wrong and what to do."""


class InputError(IllusortError, ValueError):
    """A command line that cannot work: a missing folder, a wrong kind of path, a reserved name."""


class MissingPath(InputError, FileNotFoundError):
    """A folder or file given on the command line that does not exist (or is the wrong kind)."""


class ModelError(IllusortError, ValueError):
    """A model name or file that cannot be used; the message says why and what to do."""


class SortError(IllusortError, ValueError):
    """A sort that cannot be done as asked; the message says why and what to do."""

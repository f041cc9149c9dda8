"""The one progress bar: on stderr, and only when stderr is a terminal (a log file or a pipe
gets no bar lines)."""
from __future__ import annotations

import sys


def progress_bar(iterable=None, *, enabled: bool = True, **options):
    """A tqdm bar (or a silent stand-in) on stderr; `options` go to tqdm (total, desc, unit, initial)."""
    from tqdm import tqdm

    show = enabled and sys.stderr.isatty()
    return tqdm(iterable, disable=not show, file=sys.stderr, dynamic_ncols=True, **options)

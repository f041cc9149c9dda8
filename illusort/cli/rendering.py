"""What the commands print, shared: every line goes through `echo`, so every name in it
reaches the terminal escaped (`terminal.shown`: file names come from shared folders)."""
from __future__ import annotations

import sys

import click

from ..terminal import shown


def echo(text="", err: bool = False) -> None:
    """Print one line: every name in it reaches the terminal escaped (`terminal.shown`)."""
    click.echo(shown(text), err=err)


def one_line(error) -> str:
    """An error as one printable line (`terminal.shown`: names in it may hold escapes)."""
    return shown(error)


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 picture', '2 pictures'."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def show_progress(quiet: bool) -> bool:
    """Progress bars only for a person watching: never with -q, never into a log file or pipe."""
    return not quiet and sys.stderr.isatty()


def embedding_line(summary) -> str:
    """What embedding did: '18 images: 2 embedded, 0 reused by content, 16 unchanged, ...'."""
    return (f"{plural(summary.files, 'image')}: {summary.embedded} embedded, {summary.reused} reused by content, "
            f"{summary.unchanged} unchanged, {summary.removed} removed from index, {len(summary.skipped)} skipped")


def report_embedding(summary, as_json: bool = False, always: bool = False) -> None:
    """The embedding line when the run changed something (`always`: `embed`, which is asked
    for it), and each skipped file once: the run that first finds it says so."""
    if not as_json and (always or summary.changed):
        echo(embedding_line(summary), err=True)
    for path, reason in summary.new_skips[:20]:
        echo(f"  skipped {path}: {reason}", err=True)
    if len(summary.new_skips) > 20:
        echo(f"  ... and {len(summary.new_skips) - 20} more skipped", err=True)


def clustering_line(clustering) -> str:
    """'18 images -> 3 characters (sizes 6, 6, 6), 0 unsorted (0.0%)', in the words `sort`
    uses (with --faces a picture counts once per face embedded)."""
    import numpy as np

    labels = clustering.labels
    sizes = sorted(np.bincount(labels[labels >= 0]).tolist(), reverse=True) if clustering.n_clusters else []
    listed = ", ".join(map(str, sizes[:15])) + (", ..." if len(sizes) > 15 else "")
    noise = int((labels == -1).sum())
    return (f"{plural(len(labels), 'image')} -> {plural(clustering.n_clusters, 'character')}"
            + (f" (sizes {listed})" if sizes else "") + f", {noise} unsorted ({clustering.noise_share:.1%})")


def folder_sizes(sizes: dict[str, int], shown_at_most: int = 12) -> str:
    """The folders of a sort summary, as `Rem 6, character-001 40, ...`: named folders (known
    characters, your names) first, so none is cut off behind larger numbered ones; then by size."""
    from ..status import NUMBERED

    order = sorted(sizes, key=lambda f: (bool(NUMBERED.fullmatch(f)), -sizes[f], f))
    return (", ".join(f"{f} {sizes[f]}" for f in order[:shown_at_most])
            + (", ..." if len(order) > shown_at_most else ""))

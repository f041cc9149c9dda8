"""The commands that look at a sort or search a folder, changing nothing in OUT: `status`,
`report`, `review` (the local app: its changes are `corrections` calls) and `query`."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..terminal import command
from .definition import (in_option, json_option, model_options, quiet_option, settings_from, sorted_output_command,
                         threshold_option)
from .exit_status import exit_if_strict
from .rendering import echo, plural, report_embedding, show_progress


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@json_option()
def status(path, as_json):
    """Where the sort of PATH stands (its output folder, or the folder that was sorted): model,
    pictures indexed and skipped, folders, unsorted pictures with the character each is
    nearest to, the last run, and what a re-run would change. Changes nothing."""
    from ..status import status as read_status
    from ..suggest import suggestions

    info = read_status(path)
    info["fixes"] = [s.as_dict() for s in suggestions(Path(info["out"]))] if info["out"] else []
    if as_json:
        click.echo(json.dumps(info, indent=1))
        return
    echo(f"{info['folder']} -> {info['out'] or '(no output folder)'}" + (f" ({info['mode']})" if info['mode'] else ""))
    echo(f"model: {info['model'] or 'none yet'}" + (f", faces {info['faces']}" if info['faces'] else "")
         + (f"; last run {info['last_run']}" if info['last_run'] else ""))
    echo(f"pictures: {info['indexed']} indexed, {len(info['skipped'])} skipped")
    for item in info["skipped"][:10]:
        echo(f"  skipped {item['path']}: {item['reason']}")
    echo(f"characters: {len(info['named'])} named, {len(info['numbered'])} numbered; "
         f"{info['unsorted']} unsorted" + (f", {info['not_a_character']} set aside" if info['not_a_character'] else ""))
    for folder, count in info["folders"].items():
        echo(f"  {folder}: {count}")
    show_fixes(info["fixes"])
    echo(rerun_line(info))


def show_fixes(fixes: list[dict], shown: int = 30) -> None:
    """The suggested fixes of `status`, surest first, each with the command that takes it."""
    if not fixes:
        return
    echo("suggested fixes, surest first: illusort accept OUT N... takes them, illusort reject OUT N... says no")
    for s in fixes[:shown]:
        echo(f"  {s['number']:>3}. {describe_fix(s)} ({s['similarity']:.2f})   {s['command']}")
    if len(fixes) > shown:
        echo(f"  ... {len(fixes) - shown} more (--json lists all)")


def describe_fix(s: dict) -> str:
    files = s["files"]
    return {"place": lambda: f"{files[0]} -> {s['folder']}",
            "move": lambda: f"{files[0]} -> {s['folder']} (from {s['other']})",
            "merge": lambda: f"same character? {s['other']} into {s['folder']}",
            "split": lambda: f"split {s['folder']}: {plural(len(files), 'picture')} to {s['other']}"}[s["kind"]]()


def rerun_line(info: dict) -> str:
    """What `sort` would do now, with the command that does it."""
    rerun = info["rerun"]
    if info["out"] is None:
        return (f"no sort stands (none made yet, or undone): `{info['sort_again']}` places the "
                f"{plural(info['indexed'], 'picture')} indexed without embedding them again"
                + ("" if rerun["up_to_date"] else " and embeds what is new or changed"))
    if rerun["up_to_date"]:
        return f"a re-run would change nothing: no new, changed or deleted pictures   ({info['sort_again']})"
    parts = [f"{len(rerun['new'])} new", f"{len(rerun['changed'])} changed", f"{len(rerun['deleted'])} deleted"]
    renamed = ", ".join(f"{a} -> {b}" for a, b in rerun["renamed_folders"].items())
    also = [f"folders renamed by hand: {renamed}" if renamed else "",
            f"{plural(len(rerun['missing']), 'file')} deleted from the output by hand"
            + (" (made again)" if info["mode"] != "move" else "") if rerun["missing"] else "",
            f"{plural(len(rerun['corrections']), 'picture')} not yet where your corrections put them"
            if rerun["corrections"] else "",
            "the pictures were clustered anew (by a sort into another output) since this one"
            if rerun["reclustered"] else ""]
    return (f"a re-run would take in: {', '.join(parts)} pictures" + "".join(f"; {a}" for a in also if a)
            + f"   ({info['sort_again']})")


@click.command()
@quiet_option("No progress bar.")
@sorted_output_command
def report(out, quiet, index_path, source):
    """Write OUT/report.html: each character as a contact sheet, the unsorted images, and what
    is new since the last report (thumbnails cached in OUT/.illusort-thumbs)."""
    from ..report import write_report
    from ..status import find_sort

    find_sort(out, "report")
    path, stats = write_report(out, progress=show_progress(quiet), source=source, index_path=index_path)
    echo(f"{path}: {plural(stats['characters'], 'character')}, {plural(stats['images'], 'image')}, "
         f"{stats['new']} new")


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--no-browser", is_flag=True, help="Print the address only; do not open a browser.")
@sorted_output_command
def review(out, port, no_browser, index_path, source):
    """Fix the sort in OUT with clicks: serves a page on 127.0.0.1 (the address printed carries a
    token) with each character's contact sheet, the unsorted pictures' suggestions, and every
    fix one click or key (name, merge, move, not a character, undo). Ctrl-C stops it."""
    from ..review import Review, serve
    from ..status import find_sort

    find_sort(out, "review")
    serve(Review(out, source, index_path), port, browser=not no_browser, echo=lambda text: click.echo(text))


@click.command()
@click.argument("references", nargs=-1, required=True, type=click.Path(path_type=Path))
@in_option("folder", "Folder to search (embedded incrementally first). Default: the sorted folder the current "
                     "folder belongs to (its output folder, or a folder with an index); never the current "
                     "folder just because you are in it.")
@click.option("--top", "-k", type=click.IntRange(1), default=None, help="At most this many results.")
@threshold_option("Minimum cosine similarity. Default: picked for precision on the folder searched, where about "
                  "one picture of another character would pass (from the model card; none for untrained models).")
@click.option("--link", type=click.Path(path_type=Path), default=None,
              help="Also gather the matches into this folder as symlinks.")
@json_option("Print JSON: 'folder' searched, and per match 'path' (inside it), 'file' (as the text shows it), "
             "'score'.")
@click.option("--no-update", is_flag=True,
              help="Search the index as it is: skip looking for new or changed files (fast on huge folders).")
@model_options
def query(references, folder, top, threshold, link, as_json, no_update, **kwargs):
    """Find every image of the character in REFERENCES (one or more images) in a folder."""
    from .. import workflow

    settings = settings_from(kwargs)
    workflow.check_references(list(references))
    folder, note = workflow.find_search_folder(folder)
    if note:
        echo(f"note: {note}", err=True)
    if link:
        from ..sort import check_output

        check_output(folder, link, "symlink")
    found = workflow.query(list(references), folder, settings, top, threshold, update=not no_update)
    summary, hits = found.summary, found.matches
    if no_update:
        echo(f"searched the index as it is: {plural(summary.files, 'picture')} (new files not looked for)", err=True)
    else:
        report_embedding(summary)
    if found.threshold is None and top is None:
        hits = hits[:20]
        echo("note: the model has no calibrated threshold; showing the 20 best (use --top/--threshold)", err=True)
    if as_json:
        click.echo(json.dumps(query_summary(found, folder, hits), indent=1))
    else:
        echo(query_heading(found, threshold is None, len(references)), err=True)
        shown = hits or found.nearest
        if shown:
            echo("score  picture")
        for path, score in shown:
            echo(f"{score:.3f}  {Path(folder) / path}")
    if link:
        result = workflow.link_matches(folder, [p for p, _ in hits], link, settings.index)
        echo(f"{result.created} new links in {link} ({sum(result.folders.values())} in all); "
             f"undo with: {command('illusort', 'undo', link)}", err=True)
    exit_if_strict(kwargs["strict"], len(summary.skipped))


def query_summary(found, folder: Path, hits: list) -> dict:
    """`query --json`."""
    def listed(matches):
        return [{"path": p, "file": str(Path(folder) / p), "score": s} for p, s in matches]

    return {"folder": str(folder), "threshold": found.threshold, "pictures": found.pictures,
            "matches": listed(hits), "nearest": listed(found.nearest)}


def query_heading(found, default: bool, references: int) -> str:
    """What `query` searched and what passed: the threshold used and how many reach it."""
    if found.threshold is None:
        return f"best matches among {plural(found.pictures, 'picture')} (the model has no threshold):"
    why = (f"the default for {plural(found.pictures, 'picture')} and {plural(references, 'reference')}: "
           "about one picture of another character passes; --threshold to change" if default else "--threshold")
    if not found.passed:
        return (f"no picture reaches similarity {found.threshold:.3f} ({why}); "
                f"the {len(found.nearest)} nearest, below it:")
    shown = f", the best {len(found.matches)} shown" if len(found.matches) < found.passed else ", best first"
    return (f"{found.passed} of {plural(found.pictures, 'picture')} reach similarity {found.threshold:.3f} "
            f"({why}){shown}:")


COMMANDS = (status, report, review, query)

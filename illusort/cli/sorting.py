"""The commands that embed, cluster and sort a folder, and take a sort back: `embed`,
`cluster`, `sort`, `undo`."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from ..manifest import MODES
from ..terminal import command
from .definition import (cluster_options, cluster_options_from, given_cluster_options, json_option, library_options,
                         model_options, out_option, recluster_option, settings_from, sorted_output_command,
                         threshold_option)
from .exit_status import exit_if_strict
from .rendering import clustering_line, echo, folder_sizes, plural, report_embedding

RESERVED_FOLDERS = ("unsorted", "not-a-character")


@click.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--ray", "use_ray", is_flag=True,
              help="Embed on Ray (pip install 'illusort[ray]'): a local instance, or --ray-address's cluster, "
                   "whose nodes see FOLDER at the same path.")
@click.option("--ray-address", default=None, metavar="ADDRESS", help="Ray cluster to join ('auto', ray://host:port).")
@click.option("--ray-actors", type=click.IntRange(1), default=None, help="Model replicas (default: one per CPU).")
@model_options
def embed(folder, use_ray, ray_address, ray_actors, **kwargs):
    """Embed every image below FOLDER into its index (incremental; resumes when interrupted)."""
    from .. import workflow

    runner = None
    settings = settings_from(kwargs)
    if use_ray or ray_address:
        from ..distributed import ray_runner

        workflow.check_folder(folder)
        try:
            runner = ray_runner(ray_address, ray_actors, settings.model)
        except RuntimeError as error:
            raise click.ClickException(str(error)) from None
    workflow.check_folder(folder)
    workflow.check_not_output(folder, "embed")
    workflow.check_settings(settings)
    model, index, summary = workflow.embed(folder, settings, runner=runner)
    index.close()
    echo(f"model {model.card.get('name') or model.model_id} ({model.model_id}); index {index.path}", err=True)
    report_embedding(summary, always=True)
    exit_if_strict(kwargs["strict"], len(summary.skipped))


@click.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Assignment CSV (path, face, cluster, probability). Default: DIR/.illusort/clusters.csv.")
@model_options
@cluster_options
@recluster_option
def cluster(folder, output, recluster, **kwargs):
    """Group FOLDER's images into characters (embeds first, incrementally)."""
    from .. import workflow

    notes = given_cluster_options(kwargs)
    options = cluster_options_from(kwargs)
    settings = settings_from(kwargs)
    workflow.check_folder(folder)
    workflow.check_not_output(folder, "cluster")
    workflow.check_settings(settings)
    workflow.check_has_pictures(folder)
    model, index, summary = workflow.embed(folder, settings)
    report_embedding(summary)
    with index:
        rows, clustering = workflow.cluster(index, model, recluster, **library_options(options))
    output = output or index.path.parent / "clusters.csv"
    workflow.write_assignment(output, rows, clustering)
    for note in ignored_options(notes, clustering):
        echo(f"note: {note}", err=True)
    echo(clustering_line(clustering))
    echo(f"assignment written to {output}", err=True)
    exit_if_strict(kwargs["strict"], len(summary.skipped))


@click.command()
@click.argument("folder", type=click.Path(path_type=Path), required=False)
@out_option("Output folder (default: FOLDER-sorted beside FOLDER).")
@click.option("--mode", type=click.Choice(MODES), default="symlink", show_default=True,
              help="How files get into the character folders.")
@click.option("--dry-run", is_flag=True,
              help="Show what would change in OUT (per folder); write nothing, not even the index.")
@click.option("--undo", is_flag=True, help="Reverse the sort in OUT (same as: illusort undo OUT).")
@click.option("--known", type=click.Path(path_type=Path), default=None, metavar="REFS",
              help="Folder of REFS/<name>/<reference images>: images close enough to a reference go to OUT/<name>/ "
                   "(never forced: the rest are clustered).")
@threshold_option("--known: cosine similarity an image needs to join a known character (default: the model "
                  "card's 1%-false-accept point; higher = fewer, surer matches).", type=click.FloatRange(-1, 1))
@json_option("Print one JSON object (what was done, or planned).")
@model_options
@cluster_options
@recluster_option
def sort(folder, out, mode, dry_run, undo, known, threshold, as_json, recluster, **kwargs):
    """Sort FOLDER into per-character folders: OUT/character-NNN/ and OUT/unsorted/.

    Never overwrites or loses a file. Re-running adds new images to the existing characters
    and keeps names and corrections (illusort name / merge / move, or folders renamed by hand)."""
    if undo:  # FOLDER is OUT, or with --out the sorted folder (then the manifest must name it)
        if (out or folder) is None:
            raise click.UsageError("give the output folder to undo: illusort undo OUT")
        return undo_output(out or folder, as_json, folder if out else None, kwargs["index_path"])
    if folder is None:
        raise click.UsageError("Missing argument 'FOLDER' (the folder of pictures to sort).")
    from .. import workflow

    notes = given_cluster_options(kwargs)
    options = cluster_options_from(kwargs)
    run = workflow.sort_folder(folder, out, settings_from(kwargs), mode, dry_run, known, threshold, recluster,
                               **library_options(options))
    report_embedding(run.summary, as_json)
    notes = ignored_options(notes, run.clustering)
    if as_json:
        click.echo(json.dumps(sort_summary(run, folder, mode, dry_run, notes), indent=1))
    else:
        show_sort(run, mode, dry_run, notes)
        if dry_run:
            return
    if run.result is None:  # a dry run: nothing was made
        return
    if run.result.conflicts:
        echo(f"warning: {plural(len(run.result.conflicts), 'name')} already taken by other files "
             "were left alone", err=True)
    for src, reason in run.result.unavailable[:20]:
        echo(f"warning: not sorted {src}: {reason}", err=True)
    if len(run.result.unavailable) > 20:
        echo(f"  ... and {len(run.result.unavailable) - 20} more not sorted", err=True)
    if not as_json:
        echo(f"next: {command('illusort', 'report', run.out)}   (or: {command('illusort', 'status', run.out)})", err=True)
    exit_if_strict(kwargs["strict"], len(run.summary.skipped) + len(run.result.unavailable))


def sorted_folders(run) -> tuple[dict, Counter, list[str]]:
    """(created/removed/kept counts, entries per folder, the character folders) of a sort or its plan."""
    changes = plan_and_result(run)
    folders = run.result.folders if run.result else Counter(entry_folder(e.dest) for e in changes["final"])
    return changes, folders, sorted(f for f in folders if f not in RESERVED_FOLDERS)


def sort_summary(run, folder, mode: str, dry_run: bool, notes: list[str]) -> dict:
    """`sort --json`: what was done, or planned."""
    changes, folders, characters = sorted_folders(run)
    return {
        "folder": str(Path(folder).resolve()), "out": str(Path(run.out).resolve()), "mode": mode, "dry_run": dry_run,
        "model": run.model, "model_id": run.model_id, "pictures": len({e.src for e in run.planned}),
        "characters": len(characters), "folders": dict(sorted(folders.items())), "unsorted": folders.get("unsorted", 0),
        "created": changes["created"], "removed": changes["removed"], "kept": changes["kept"],
        "skipped": [{"path": p, "reason": r} for p, r in run.summary.skipped],
        "not_sorted": [{"path": p, "reason": r} for p, r in (run.result.unavailable if run.result else [])],
        "notes": notes}


def show_sort(run, mode: str, dry_run: bool, notes: list[str]) -> None:
    """What a sort did (or a dry run would do), in words."""
    changes, folders, characters = sorted_folders(run)
    for note in notes:
        echo(f"note: {note}", err=True)
    sizes = folder_sizes({f: folders[f] for f in characters})
    echo(f"sorted {plural(len({e.src for e in run.planned}), 'image')} into {plural(len(characters), 'character')}"
         + (f" ({sizes})" if sizes else "")
         + f", {folders.get('unsorted', 0)} unsorted; model {run.model}")
    echo(f"{run.out}: " + ("dry run, would make: " if dry_run else "")
         + f"{changes['created']} new, {changes['removed']} removed, {changes['kept']} kept")
    if dry_run:
        show_plan(run, mode)


def entry_folder(dest: str) -> str:
    return dest.rsplit("/", 1)[0] if "/" in dest else ""


def plan_and_result(run) -> dict:
    if run.result is not None:
        return {"created": run.result.created, "removed": run.result.removed, "kept": run.result.kept}
    changes = run.changes()
    return {"created": len(changes["new"]), "removed": len(changes["removed"]), "kept": changes["kept"],
            "final": changes["final"]}


def show_plan(run, mode: str) -> None:
    """A dry run: per folder, what it would hold and what changes; then the first new entries."""
    changes = run.changes()
    new = Counter(entry_folder(e.dest) for e in changes["new"])
    gone = Counter(entry_folder(e.dest) for e in changes["removed"])
    total = Counter(entry_folder(e.dest) for e in changes["final"])
    for folder in sorted(set(total) | set(gone), key=lambda f: (f in RESERVED_FOLDERS, -total[f], f)):
        delta = ", ".join(x for x in (f"+{new[folder]}" if new[folder] else "",
                                      f"-{gone[folder]}" if gone[folder] else "") if x)
        echo(f"  {folder or '.'}: {total[folder]}" + (f" ({delta})" if delta else ""))
    for entry in changes["new"][:50]:
        echo(f"{mode} {entry.src} -> {run.out / entry.dest}")
    if len(changes["new"]) > 50:
        echo(f"... {len(changes['new']) - 50} more")
    if not changes["new"] and not changes["removed"]:
        echo("nothing would change (dry run: nothing written)")


def ignored_options(options_given: dict, clustering) -> list[str]:
    """Notes for options the user gave (`definition.given_cluster_options`) that had no effect
    on this clustering."""
    from ..cluster import AUTO_AGGLOMERATIVE, UMAP_MIN_ITEMS, effective_min_cluster_size

    if "reused" in clustering.params:   # an unchanged folder's clustering, made (and noted) before
        return []
    notes, n = [], len(clustering.labels)
    hdbscan = clustering.params.get("algorithm") == "hdbscan"
    if hdbscan and options_given.get("algorithm") == "auto" and AUTO_AGGLOMERATIVE[0] <= n <= AUTO_AGGLOMERATIVE[1]:
        notes.append("this model has no calibrated similarity (it was trained on too few characters to set one, or "
                     "never trained on characters), so pictures were grouped by how densely they gather (HDBSCAN) "
                     "instead of at a similarity the model was checked at; --similarity 0.5 groups them at a "
                     "similarity you choose")
    if options_given.get("strictness") and not options_given.get("paper") and hdbscan and n < UMAP_MIN_ITEMS:
        notes.append(f"--strictness has no effect below {UMAP_MIN_ITEMS} pictures (this sort has {n})")
    used_by = {"similarity": "average linkage", "min_samples": "HDBSCAN", "paper": "HDBSCAN"}
    algorithm = clustering.params.get("algorithm")
    for option, owner in used_by.items():
        if options_given.get(option) and algorithm and (owner == "HDBSCAN") != hdbscan:
            flag = "--paper-selection" if option == "paper" else f"--{option.replace('_', '-')}"
            notes.append(f"{flag} applies to {owner} only; these {n} pictures were clustered by {algorithm} "
                         f"(--algorithm {'hdbscan' if owner == 'HDBSCAN' else 'agglomerative'} to use it)")
    requested = options_given.get("min_cluster_size")
    if requested:
        used = effective_min_cluster_size(n, requested)
        if used < requested:
            notes.append(f"--min-cluster-size {requested} was lowered to {used} for {n} pictures "
                         "(at most an eighth of the folder)")
    return notes


def undo_output(out: Path, as_json: bool = False, source: Path | None = None,
                index_path: Path | None = None) -> None:
    from ..sort import undo_sort
    from ..status import find_sort

    find_sort(out, "undo")
    undone, left = undo_sort(out, source, index_path)
    if as_json:
        click.echo(json.dumps({"out": str(out), "undone": undone, "left": left}))
        return
    echo(f"undone {plural(undone, 'entry', 'entries')}"
         + (f"; {left} changed since and left in place" if left else f"; {out} holds no sort any more"))


@click.command()
@json_option("Print JSON.")
@click.option("--last", is_flag=True, help="Take back only the last correction (name, merge, move, accept, reject).")
@sorted_output_command
def undo(out, as_json, last, index_path, source):
    """Reverse the sort in OUT: remove what it made (moved files go back); keep what you changed since.
    With --last, take back only your last correction of OUT (again for the one before)."""
    if not last:
        undo_output(out, as_json, source, index_path)
        return
    from .. import corrections
    from ..status import find_sort

    find_sort(out, "undo")
    what = corrections.undo_last(out, index_path, source)
    echo(json.dumps({"out": str(out), "undone": what}) if as_json else f"taken back: {what}")


COMMANDS = (embed, cluster, sort, undo)

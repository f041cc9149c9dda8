"""What each CLI command does, as functions: embed, cluster, sort and query a folder.

`cli.py` only parses options and prints; everything here can be called from Python.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .cluster import Clustering, assign_to_clusters, cluster_embeddings
from .embed import EmbedSummary, default_workers, embed_folder, embed_images
from .images import BadImage, read_image
from .index import Index, Row, default_index_path
from .query import match_known, rank
from .corrections import record_renames
from .sort import (SortResult, apply_sort, assign_folders, check_output, plan_entries, previous_folders,
                   read_manifest, take_renames)
from .weights import LoadedModel, ModelError, load_model, resolve_device, with_faces, with_precision


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


def check_folder(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder {root} does not exist" if not root.exists() else f"{root} is not a folder")
    return root


def open_index(root: Path, settings: Settings) -> tuple[LoadedModel, Index]:
    """The model and DIR's index, as they are (nothing embedded)."""
    root = check_folder(root)
    model = with_faces(load_model(settings.model, settings.layer, resolve_device(settings.device)), settings.faces)
    model = with_precision(model, settings.precision)
    return model, Index(settings.index or default_index_path(root))


def embed(root: Path, settings: Settings, exclude: Path | None = None,
          runner=None) -> tuple[LoadedModel, Index, EmbedSummary]:
    """Bring DIR's index up to date; returns the model, the open index and what was done.
    `runner`: where the images are embedded (see `embed.embed_folder`; default here)."""
    model, index = open_index(root, settings)
    with index.writing():
        summary = embed_folder(root, model, index, batch_size=settings.batch_size,
                               workers=default_workers(settings.faces) if settings.workers is None else settings.workers,
                               progress=settings.progress, exclude=exclude, runner=runner)
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
    run = json.dumps({"model": model.model_id, **options}, sort_keys=True)
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
            labels[new], probabilities[new] = assign_to_clusters(vectors[old], labels[old], vectors[new],
                                                                 model.threshold)
        clustering = Clustering(labels, probabilities, {"reused": len(old), "placed": len(new), **options})
        history = {"full": history["full"], "added": history["added"] + len(new)}
    else:
        clustering = cluster_embeddings(vectors, **options)
        history = {"full": len(keys), "added": 0}
    index.save_clustering(run, keys, clustering.labels, clustering.probabilities)
    index.set_meta(f"clustered {run}", history)
    return clustering


def with_model_threshold(options: dict, model: LoadedModel) -> dict:
    """Agglomerative clustering cuts at the model card's calibrated similarity unless told otherwise."""
    if options.get("algorithm") == "agglomerative" and options.get("similarity") is None:
        return {**options, "similarity": model.threshold}
    return options


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


def sort(root: Path, out: Path | None, settings: Settings, mode: str = "symlink", dry_run: bool = False,
         known: Path | None = None, threshold: float | None = None, recluster: bool = False, **cluster_options):
    """Embed (incrementally), cluster, and build OUT's character folders.

    Images close to a reference in `known` (KNOWN/<name>/<images>, at the model card's
    `known_threshold` unless `threshold`) go to <name>; the rest are clustered. The user's
    corrections (`name`, `merge`, `move`, folders renamed by hand) hold over both.
    Returns (plan entries, SortResult or None for a dry run, clustering, embed summary)."""
    root = check_folder(root)
    out = Path(out) if out else default_output(root)
    check_output(root, out, mode)  # refuse bad output folders before any work
    known_refs = known_references(known, settings) if known else None
    model, index, summary = embed(root, settings)
    with index:
        if not dry_run:
            record_renames(index, root, take_renames(root, out))
        rows, vectors = index.embeddings(model.model_id)
        decided = index.decisions()
        keys = [(r.path, r.face) for r in rows]
        matched = {}
        if known_refs:
            threshold = model.known_threshold if threshold is None else threshold
            if threshold is None:
                raise ModelError(f"{model.model_id} has no calibrated threshold: give --threshold for --known")
            names, references = known_refs
            matched = {i: name for i, name in enumerate(match_known(references, names, vectors, threshold)) if name}
        free = [i for i in range(len(rows)) if i not in matched]
        clustering = cluster_rows(index, model, [keys[i] for i in free],
                                  vectors[free] if free else np.zeros((0, 1), np.float32), cluster_options, recluster)
    labels = np.full(len(rows), -1)
    labels[free] = clustering.labels
    folders = assign_folders(keys, labels, decided, matched, previous_folders(read_manifest(out)))
    planned = plan_entries(root, [r.path for r in rows], folders, [r.face for r in rows])
    if dry_run:
        return planned, None, clustering, summary
    result: SortResult = apply_sort(root, out, planned, mode, settings.progress)
    return planned, result, clustering, summary


def known_references(folder: Path, settings: Settings) -> tuple[list[str], np.ndarray]:
    """(names, vectors) of KNOWN/<name>/<images>, embedded through KNOWN's own index (its
    largest face when faces are cropped)."""
    folder = check_folder(folder)
    model, index, summary = embed(folder, replace(settings, index=None))
    with index:
        rows, vectors = index.embeddings(model.model_id)
    keep = [i for i, r in enumerate(rows) if r.face == 0 and "/" in r.path]
    if not keep:
        raise FileNotFoundError(f"{folder} holds no reference images in sub-folders: give KNOWN/<name>/<images>")
    return [rows[i].path.split("/", 1)[0] for i in keep], vectors[keep]


def query(references: list[Path], root: Path, settings: Settings, top: int | None = None,
          threshold: float | None = None, update: bool = True) -> tuple[list[tuple[str, float]], float | None,
                                                                        EmbedSummary]:
    """Images of ROOT ranked by similarity to the reference images (the model card's threshold
    by default); `update=False` searches the index as it is, without scanning ROOT for new
    files first. Returns ([(path, score)], threshold used, embed summary)."""
    if update:
        model, index, summary = embed(root, settings)
    else:
        (model, index), summary = open_index(root, settings), EmbedSummary()
    images = []
    for ref in references:
        try:
            images.append(read_image(ref)[0])
        except BadImage as error:
            raise BadImage(f"reference {ref}: {error}") from None
    ref_vectors = embed_images(model, images)
    with index:
        keys, vectors = index.search_vectors(model.model_id)
    threshold = model.threshold if threshold is None else threshold
    best: dict[str, float] = {}
    for i, score in rank(ref_vectors, vectors, threshold=threshold):
        best.setdefault(keys[i][0], score)  # an image's best face
    hits = list(best.items())[:top] if top else list(best.items())
    return hits, threshold, summary


def link_matches(root: Path, paths: list[str], out: Path) -> SortResult:
    """Gather query matches into OUT as symlinks, with a manifest (so `sort --undo OUT` works)."""
    manifest = check_output(root, out, "symlink")
    planned = plan_entries(root, paths, [""] * len(paths))
    if manifest:  # earlier matches stay: a second query adds to the folder
        planned += [e for e in manifest["entries"] if e.dest not in {p.dest for p in planned}]
    return apply_sort(root, out, planned, "symlink", progress=False)

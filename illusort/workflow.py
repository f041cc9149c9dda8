"""What each CLI command does, as functions: embed, cluster, sort and query a folder.

`cli.py` only parses options and prints; everything here can be called from Python.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .cluster import Clustering, cluster_embeddings
from .embed import EmbedSummary, default_workers, embed_folder, embed_images
from .images import BadImage, read_image
from .index import Index, Row, default_index_path
from .query import rank
from .sort import SortResult, apply_sort, check_output, folder_names, plan_entries, previous_folders
from .weights import LoadedModel, load_model, resolve_device, with_faces


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


def check_folder(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder {root} does not exist" if not root.exists() else f"{root} is not a folder")
    return root


def embed(root: Path, settings: Settings, exclude: Path | None = None) -> tuple[LoadedModel, Index, EmbedSummary]:
    """Bring DIR's index up to date; returns the model, the open index and what was done."""
    root = check_folder(root)
    device = resolve_device(settings.device)
    model = with_faces(load_model(settings.model, settings.layer, device), settings.faces)
    index = Index(settings.index or default_index_path(root))
    with index.writing():
        summary = embed_folder(root, model, index, batch_size=settings.batch_size,
                               workers=default_workers() if settings.workers is None else settings.workers,
                               progress=settings.progress, exclude=exclude)
    return model, index, summary


def cluster(index: Index, model: LoadedModel, **options) -> tuple[list[Row], Clustering]:
    rows, vectors = index.embeddings(model.model_id)
    return rows, cluster_embeddings(vectors, **with_model_threshold(options, model))


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
         **cluster_options):
    """Embed (incrementally), cluster, and build OUT's character folders.

    Returns (plan entries, SortResult or None for a dry run, clustering, embed summary)."""
    root = check_folder(root)
    out = Path(out) if out else default_output(root)
    manifest = check_output(root, out, mode)  # refuse bad output folders before any work
    model, index, summary = embed(root, settings)
    with index:
        rows, clustering = cluster(index, model, **cluster_options)
    paths = [r.path for r in rows]
    names = folder_names(paths, clustering.labels, previous_folders(manifest))
    planned = plan_entries(root, paths, [names[int(label)] for label in clustering.labels])
    if dry_run:
        return planned, None, clustering, summary
    result: SortResult = apply_sort(root, out, planned, mode, settings.progress)
    return planned, result, clustering, summary


def query(references: list[Path], root: Path, settings: Settings, top: int | None = None,
          threshold: float | None = None) -> tuple[list[tuple[str, float]], float | None, EmbedSummary]:
    """Images of ROOT ranked by similarity to the reference images (the model card's threshold
    by default). Returns ([(path, score)], threshold used, embed summary)."""
    model, index, summary = embed(root, settings)
    images = []
    for ref in references:
        try:
            images.append(read_image(ref)[0])
        except BadImage as error:
            raise BadImage(f"reference {ref}: {error}") from None
    ref_vectors = embed_images(model, images)
    with index:
        rows, vectors = index.embeddings(model.model_id)
    threshold = model.threshold if threshold is None else threshold
    best: dict[str, float] = {}
    for i, score in rank(ref_vectors, vectors, threshold=threshold):
        best.setdefault(rows[i].path, score)  # an image's best face
    hits = list(best.items())[:top] if top else list(best.items())
    return hits, threshold, summary


def link_matches(root: Path, paths: list[str], out: Path) -> SortResult:
    """Gather query matches into OUT as symlinks, with a manifest (so `sort --undo OUT` works)."""
    manifest = check_output(root, out, "symlink")
    planned = plan_entries(root, paths, [""] * len(paths))
    if manifest:  # earlier matches stay: a second query adds to the folder
        planned += [e for e in manifest["entries"] if e.dest not in {p.dest for p in planned}]
    return apply_sort(root, out, planned, "symlink", progress=False)

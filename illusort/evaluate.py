"""Scoring a model on a labelled folder `<character>/<images...>`: the product's scoreboard.

Two numbers, computed exactly as the sources did (see `metrics`): AMI of the clustering that
`sort` would produce (the paper) and EER of same/different-character pairs (the blog), plus
ARI, the noise share, the number of clusters and the EER per character-frequency bucket.

`evaluate_folder` goes through the same index and clustering as `sort`, so its score is the
score of what the user gets. `layer_table` is the paper's Table 1 (VGG16 conv1..fc2): all
seven layers from one forward pass per batch, outside the index.
"""
from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np

from .errors import IllusortError, MissingPath
from . import metrics
from .images import find_images
from .workflow import with_model_threshold

SELECTIONS = ("all", "train", "dev", "test")


class EvaluationError(IllusortError, ValueError):
    """A folder or model that cannot be evaluated as asked; the message says why."""


# ---- which images, which characters ------------------------------------------------------

def labelled_images(root: Path, depth: int = 1, exclude: Path | None = None) -> list[tuple[str, str]]:
    """(relative path, character) for every image inside a character folder of `root`.

    The character is the first `depth` path components (depth 2 for a root of sources,
    `source/character/...`); images may sit in sub-folders of their character folder.
    Images with no character folder cannot be scored: they are counted and skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingPath(f"folder {root} does not exist" if not root.exists() else f"{root} is not a folder")
    found, loose = [], 0
    for rel in find_images(root, exclude, links="any"):
        if len(rel.parts) <= depth:
            loose += 1
            continue
        found.append((rel.as_posix(), "/".join(rel.parts[:depth])))
    if loose:
        warnings.warn(f"{loose} images in {root} are not inside a character folder and are ignored",
                      stacklevel=2)
    return found


def select_characters(items: list[tuple[str, str]], card: dict, characters: str = "all",
                      model_name: str = "the model") -> list[tuple[str, str]]:
    """Keep the images of one part of the model's train/dev/test split (from its card).

    Scores on `test` characters are the honest ones: the model never saw them. `all` keeps
    everything (optimistic for a model trained on some of these characters)."""
    if characters not in SELECTIONS:
        raise EvaluationError(f"--characters must be one of {', '.join(SELECTIONS)}, not {characters!r}")
    if characters == "all":
        return items
    split = card.get("split") or {}
    if characters not in split:
        raise EvaluationError(
            f"{model_name} has no train/dev/test split of characters in its model card, so "
            f"'--characters {characters}' cannot be applied; use '--characters all' (models trained "
            "by `illusort train` record their split)")
    wanted = {str(c) for c in split[characters]}
    kept = [(p, c) for p, c in items if c in wanted]
    present = {c for _, c in kept}
    if not kept:
        raise EvaluationError(
            f"none of the {len(wanted)} {characters} characters of {model_name} has images in this folder; "
            "evaluate the folder the model was trained on (a character is the first --label-depth "
            "folder(s) below it, as in training)")
    if len(present) < len(wanted):
        warnings.warn(f"{len(wanted) - len(present)} of the {len(wanted)} {characters} characters of "
                      f"{model_name} have no images in this folder", stacklevel=2)
    return kept


def _card_preview(spec: str | None) -> dict | None:
    """The model card without loading the weights, when that is cheap (built-in models, or a
    card JSON beside the checkpoint); None when only loading the checkpoint would tell."""
    from .weights import BUILTIN, DEFAULT_MODEL, FALLBACK_MODEL, find_model_file

    if spec is None:
        spec = DEFAULT_MODEL if find_model_file(DEFAULT_MODEL) else FALLBACK_MODEL
    if spec in BUILTIN:
        return {}
    path = find_model_file(spec)
    if path is None or not path.with_suffix(".json").exists():
        return None
    try:
        return json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None


def _check_selection_early(items, spec, characters) -> None:
    """Refuse an impossible --characters before embedding a whole folder."""
    card = _card_preview(spec) if characters != "all" else None
    if card is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            select_characters(items, card, characters, spec or "the default model")


def _trained_on(card: dict, labels) -> int:
    """How many of the scored characters the model was trained on (0 when unknown)."""
    train = {str(c) for c in (card.get("split") or {}).get("train", [])}
    return len(set(labels) & train)


# ---- scoring -------------------------------------------------------------------------------

def _check_scorable(labels: list[str]) -> None:
    values, counts = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
    if len(values) < 2 or counts.max() < 2:
        raise EvaluationError(f"{len(labels)} images of {len(values)} character{'' if len(values) == 1 else 's'}: "
                              "scoring needs at least two characters and a character with two or more images")


def score(vectors: np.ndarray, labels: list[str], cluster_options: dict, seed: int = 0):
    """AMI/ARI/noise/clusters of the clustering plus EER overall and per bucket. With labels
    `SOURCE/CHARACTER` from several sources (`--label-depth 2`), the EER is over pairs inside
    one source (the honest headline: pairs of two games are easy), with the all-pairs EER,
    each source's EER and their mean beside it.

    Returns (scores dict, clustering). Clustering is seeded (`seed` unless the options name
    one), so the same folder and model always score the same."""
    from .cluster import cluster_embeddings

    _check_scorable(labels)
    options = dict(cluster_options)
    if options.get("seed") is None:
        options["seed"] = seed
    clustering = cluster_embeddings(vectors, **options)
    result = metrics.clustering_scores(labels, clustering.labels)
    result.update(metrics.source_scores(vectors, labels, seed))
    result["cluster_params"] = clustering.params
    return result, clustering


def save_curve(path: Path, vectors: np.ndarray, labels: list[str], rate: float, threshold: float,
               title: str, seed: int = 0) -> Path:
    """FAR and FRR against the similarity threshold, the EER point marked, as a PNG; over pairs
    inside one source when the labels come from several (as `score` computes the EER).

    Uses a bare matplotlib Figure (Agg), so no GUI backend or global pyplot state is touched."""
    from matplotlib.figure import Figure

    groups = [metrics.source_of(x) for x in labels]
    try:
        scores, same, weights, _ = metrics.scored_pairs(vectors, labels, seed, groups if len(set(groups)) > 1 else None)
    except ValueError:  # no source holds two characters: all pairs, as `score` fell back to
        scores, same, weights, _ = metrics.scored_pairs(vectors, labels, seed)
    thresholds, far, frr = metrics.error_curves(scores, same, weights)
    if len(thresholds) > 4000:  # plotting millions of steps gains nothing
        keep = np.unique(np.linspace(0, len(thresholds) - 1, 4000).astype(np.int64))
        thresholds, far, frr = thresholds[keep], far[keep], frr[keep]
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    ax.plot(thresholds, far, label="FAR (other character accepted)", color="tab:red")
    ax.plot(thresholds, frr, label="FRR (same character rejected)", color="tab:blue")
    ax.plot([threshold], [rate], "o", color="black")
    ax.annotate(f"EER {rate:.1%} at {threshold:.4f}", (threshold, rate), textcoords="offset points",
                xytext=(8, 8))
    ax.set_xlabel("cosine similarity threshold (accept when score >= threshold)")
    ax.set_ylabel("error rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path


def slug(text: str) -> str:
    """A model id as a file name (ids hold ':' and '@')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _write_assignments(path: Path, paths, labels, clustering) -> Path:
    """path, character, cluster, probability: which characters were merged or split."""
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        out = csv.writer(f)
        out.writerow(["path", "character", "cluster", "probability"])
        for p, c, k, prob in zip(paths, labels, clustering.labels, clustering.probabilities):
            out.writerow([p, c, int(k), f"{prob:.3f}"])
    return path


def _inside(path: Path | None, root: Path) -> Path | None:
    """`path` when it lies inside `root` (its curves must not be read as images), else None."""
    if path is None:
        return None
    path, root = Path(path).resolve(), Path(root).resolve()
    return path if path == root or root in path.parents else None


# ---- the two evaluations ------------------------------------------------------------------

def evaluate_folder(root: Path, settings, cluster_options: dict, characters: str = "all",
                    out_dir: Path | None = None, seed: int = 0, depth: int = 1) -> dict:
    """Score `settings.model` on a labelled folder, through the index and clustering `sort` uses.

    Returns {'model', 'images', 'characters', 'selection', 'ami', 'ari', 'noise', 'clusters',
    'eer', 'threshold', 'pairs', 'buckets', ...}; with `out_dir`, also writes the FAR/FRR curve
    PNG ('curve'), the per-image assignment CSV ('assignments') and the result JSON there."""
    from . import workflow

    exclude = _inside(out_dir, root)
    items = labelled_images(root, depth, exclude)
    _check_selection_early(items, settings.model, characters)
    model, index, summary = workflow.embed(root, settings, exclude=exclude, links="any")
    with index:
        rows, vectors = index.embeddings(model.model_id)
    items = select_characters(items, model.card, characters, model.model_id)
    character_of = dict(items)
    keep = [k for k, row in enumerate(rows) if row.face == 0 and row.path in character_of]
    paths = [rows[k].path for k in keep]
    labels = [character_of[p] for p in paths]
    vectors = vectors[keep] if keep else np.zeros((0, 0), np.float32)
    result, clustering = score(vectors, labels, with_model_threshold(cluster_options, model), seed)
    skipped = [[p, reason] for p, reason in summary.skipped if p in character_of]
    result = {"model": model.model_id, "selection": characters, "images": len(paths),
              "characters": len(set(labels)), "trained_on": _trained_on(model.card, labels),
              "skipped": len(skipped), "skipped_files": skipped, "embedding": summary.line(), **result}
    if out_dir is not None:
        out_dir = Path(out_dir)
        name = f"{slug(model.model_id)}-{characters}"
        result["curve"] = str(save_curve(out_dir / f"{name}-far-frr.png", vectors, labels, result["eer"],
                                         result["threshold"], f"{model.model_id} on {Path(root).resolve().name} "
                                         f"({characters} characters, {len(paths)} images)", seed))
        result["assignments"] = str(_write_assignments(out_dir / f"{name}-assignments.csv", paths, labels,
                                                       clustering))
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def layer_table(root: Path, settings, cluster_options: dict, layers=None, characters: str = "all",
                out_dir: Path | None = None, seed: int = 0, depth: int = 1) -> dict:
    """The paper's Table 1 for a VGG16 model: AMI (and EER) of each layer conv1..conv5, fc1, fc2.

    All layers come from one forward pass per batch (`VGGTaps.taps`), each globally pooled
    (convs) and L2-normalised; nothing goes through the index (7 layers would be 7 passes).
    `settings.model` defaults to vgg16-imagenet. Returns {'model', 'images', 'characters',
    'selection', 'layers': {layer: scores}}."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from .progress import progress_bar

    from .embed import ImageFiles, as_input, as_list, default_workers
    from .nets import VGG_LAYERS
    from .weights import ModelError, load_model, resolve_device, with_faces

    layers = tuple(layers or VGG_LAYERS)
    unknown = [name for name in layers if name not in VGG_LAYERS]
    if unknown:
        raise EvaluationError(f"unknown VGG16 layer(s) {', '.join(unknown)}; choose from {', '.join(VGG_LAYERS)}")
    device = resolve_device(settings.device)
    model = with_faces(load_model(settings.model or "vgg16-imagenet", None, device), settings.faces)
    trunk = getattr(model.net, "trunk", None)
    if model.card.get("arch") != "vgg16" or not hasattr(trunk, "taps"):
        raise ModelError(f"the layer table needs a VGG16 model; {model.model_id} is "
                         f"{model.card.get('arch')!r} (try --model vgg16-imagenet or a vgg16 checkpoint)")
    exclude = _inside(out_dir, root)
    items = select_characters(labelled_images(root, depth, exclude), model.card, characters, model.model_id)
    paths = [p for p, _ in items]
    character_of = dict(items)
    workers = default_workers() if settings.workers is None else settings.workers
    loader = DataLoader(ImageFiles(root, paths, model.input_size, model.faces), batch_size=settings.batch_size,
                        num_workers=workers if len(paths) > 2 * settings.batch_size else 0,
                        collate_fn=as_list)
    net = model.net
    feats = {name: [] for name in layers}
    order, skipped = [], []
    bar = progress_bar(total=len(paths), desc="layers", unit="img", enabled=settings.progress)
    with torch.inference_mode():
        for batch in loader:
            good = [(i, face_crops[0][1]) for i, _, face_crops, _ in batch if face_crops]  # largest face
            skipped += [[paths[i], error[0]] for i, _, _, error in batch if error is not None]
            bar.update(len(batch))
            if not good:
                continue
            x = as_input(torch.stack([t for _, t in good]), device)
            out = trunk.taps((x - net.mean) / net.std, layers)  # what Embedder.features feeds the trunk
            for name in layers:
                feats[name].append(F.normalize(out[name].float(), dim=1).cpu().numpy())
            order.extend(i for i, _ in good)
    bar.close()
    used = [paths[i] for i in order]
    labels = [character_of[p] for p in used]
    _check_scorable(labels)
    table = {"model": model.model_id, "selection": characters, "images": len(used),
             "characters": len(set(labels)), "trained_on": _trained_on(model.card, labels),
             "skipped": len(skipped), "skipped_files": skipped, "layers": {}}
    for name in layers:
        vectors = np.concatenate(feats.pop(name))
        result, _ = score(vectors, labels, with_model_threshold(cluster_options, model), seed)
        result["dim"] = int(vectors.shape[1])
        if out_dir is not None:
            file = Path(out_dir) / f"{slug(model.model_id)}-{name}-{characters}-far-frr.png"
            result["curve"] = str(save_curve(file, vectors, labels, result["eer"], result["threshold"],
                                             f"{model.model_id} {name} on {Path(root).resolve().name} "
                                             f"({characters} characters, {len(used)} images)", seed))
        table["layers"][name] = result
    if out_dir is not None:
        (Path(out_dir) / f"{slug(model.model_id)}-layers-{characters}.json").write_text(json.dumps(table, indent=1) + "\n")
    return table


# ---- printing ------------------------------------------------------------------------------

def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def format_result(result: dict) -> str:
    """A short human table of one evaluation."""
    lines = [f"model {result['model']}: {result['images']} images of {result['characters']} characters "
             f"({result['selection']})",
             f"AMI {result['ami']:.3f}   ARI {result['ari']:.3f}   noise {_pct(result['noise'])}   "
             f"clusters {result['clusters']}",
             f"EER {_pct(result['eer'])} at threshold {result['threshold']:.4f} ({result['pairs']} pairs"
             + (" inside one source" if result.get("within_source") else "") + ")"]
    if result.get("within_source"):
        lines.append(f"mean over sources {_pct(result['mean_source_eer'])}; all pairs (flattered by pairs of two "
                     f"sources) {_pct(result['all_pairs_eer'])}")
        lines.append(f"{'source':<32}{'characters':>11}{'images':>8}{'EER':>8}")
        for source, entry in result["per_source"].items():
            lines.append(f"{source[:31]:<32}{entry['characters']:>11}{entry['images']:>8}{_pct(entry['eer']):>8}")
    lines.append(f"{'images/character':<18}{'characters':>11}{'images':>8}{'EER':>8}")
    for bucket, entry in result["buckets"].items():
        lines.append(f"{bucket:<18}{entry['characters']:>11}{entry['images']:>8}{_pct(entry['eer']):>8}")
    return "\n".join(lines)


def format_table(table: dict) -> str:
    """The Table-1 row: one line per layer."""
    lines = [f"model {table['model']}: {table['images']} images of {table['characters']} characters "
             f"({table['selection']})",
             f"{'layer':<7}{'dim':>6}{'AMI':>7}{'ARI':>7}{'noise':>7}{'clusters':>9}{'EER':>7}"]
    for name, r in table["layers"].items():
        lines.append(f"{name:<7}{r['dim']:>6}{r['ami']:>7.3f}{r['ari']:>7.3f}{_pct(r['noise']):>7}"
                     f"{r['clusters']:>9}{_pct(r['eer']):>7}")
    return "\n".join(lines)

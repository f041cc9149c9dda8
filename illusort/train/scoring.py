"""Scoring during and after training: embeddings of held-out images (eval mode, no
augmentation), the dev EER that picks the best epoch, and the test scores written into the
model card. Benchmarks score checkpoints with the same functions (`make_ensemble.py`)."""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from .data import characters_needed, plain_view


@contextlib.contextmanager
def vgg_layer(net, layer):
    """Temporarily switch a VGG16 trunk's output layer (no-op for other nets)."""
    trunk = getattr(net, "trunk", None)
    if layer is None or not hasattr(trunk, "taps"):
        yield
        return
    old = trunk.layer
    trunk.layer = layer
    try:
        yield
    finally:
        trunk.layer = old


def embed_tensor(net, images: torch.Tensor, size: int, device: str, batch_size: int = 64, fn=None) -> np.ndarray:
    """Embeddings (numpy) of uint8 images, no augmentation, in eval mode; `fn(net, x)` instead
    of `net(x)` for other outputs (DeepCluster's features)."""
    was_training = net.training
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = to_device(plain_view(images[start:start + batch_size], size), device)
            out.append((fn or (lambda n, v: n(v)))(net, x).float().cpu().numpy())
    net.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def to_device(x: torch.Tensor, device: str) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if device == "cpu" else x


def dev_scores(vectors, labels, seed=0) -> dict | None:
    """EER and thresholds; over pairs inside one source when labels are `SOURCE/CHARACTER`
    from several sources (cross-game pairs are easy and would set the thresholds too low)."""
    from ..metrics import embedding_eer, source_of

    if len(set(labels)) < 2 or len(labels) == len(set(labels)):
        return None
    groups = [source_of(x) for x in labels]
    try:
        result = embedding_eer(vectors, labels, seed=seed, groups=groups if len(set(groups)) > 1 else None)
    except ValueError:  # no source holds two dev characters: all pairs, as the test scores fall back to
        try:
            result = embedding_eer(vectors, labels, seed=seed)
        except ValueError:
            return None
    return plain(result)


def plain(obj):
    """numpy scalars -> Python (JSON and `torch.load(weights_only=True)` safe)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def score_test_set(net, images, labels, size, device, seed, threshold=None) -> dict | None:
    """Within-source EER (+ buckets, per source, all pairs) and clustering scores of the test
    characters, clustered as `sort` does by default (`auto`, at the dev threshold)."""
    from ..cluster import cluster_embeddings
    from ..metrics import clustering_scores, source_scores

    if not len(images) or len(set(labels)) < 2 or len(labels) == len(set(labels)):
        return None
    vectors = embed_tensor(net, images, size, device)
    try:
        result = source_scores(vectors, labels, seed)
    except ValueError:
        return None
    result.update(characters=len(set(labels)), images=len(labels))
    clustering = cluster_embeddings(vectors, similarity=threshold, seed=seed)  # as `sort` clusters by default
    result["clustering"] = {**clustering_scores(labels, clustering.labels), "params": clustering.params}
    return plain(result)


def too_few_characters(labelled: int, dev: int) -> str:
    """What a folder too small to score lacks, in plain words, and what the run does anyway."""

    need = characters_needed()
    return (f"note: {labelled} labelled character{'' if labelled == 1 else 's'} {'is' if labelled == 1 else 'are'} "
            f"too few to score the model: {dev} of them {'is' if dev == 1 else 'are'} set aside to check each epoch and "
            f"scoring needs 2 (and 2 more for the final test), so at least {need} characters, better dozens "
            "(or give unlabelled data a labelled --dev folder). Training goes on and the model is saved, "
            "but every epoch replaces the last and it gets no similarity threshold: sorts with it group "
            "pictures by density (HDBSCAN) rather than at a calibrated similarity, and `query` lists the 20 best "
            "matches")

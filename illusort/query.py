"""Finding every image of a character: rank indexed embeddings by similarity to references."""
from __future__ import annotations

import numpy as np


def similarity_to_references(references: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of each vector to its closest reference (all unit length).

    The maximum, not the mean: references in different outfits each find their own matches.
    """
    if len(vectors) == 0 or len(references) == 0:
        return np.zeros(len(vectors), np.float32)
    return (np.ascontiguousarray(vectors, np.float32) @ references.astype(np.float32).T).max(axis=1)


def rank(references: np.ndarray, vectors: np.ndarray, top: int | None = None,
         threshold: float | None = None) -> list[tuple[int, float]]:
    """(row, score) pairs, best first, at or above `threshold`, at most `top` of them."""
    scores = similarity_to_references(references, vectors)
    if threshold is not None:  # sort only what passes (the same order: a stable sort of a subsequence)
        passing = np.flatnonzero(scores >= threshold)
        order = passing[np.argsort(-scores[passing], kind="stable")]
    else:
        order = np.argsort(-scores, kind="stable")
    if top is not None:
        order = order[:top]
    return [(int(i), float(scores[i])) for i in order]


def match_known(references: np.ndarray, names: list[str], vectors: np.ndarray, threshold: float) -> list[str | None]:
    """For each vector, the known character with the most similar reference when that
    similarity reaches `threshold`, else None: an image unlike every reference is left to
    clustering, never pushed onto the nearest name."""
    if len(vectors) == 0 or len(references) == 0:
        return [None] * len(vectors)
    sims = np.ascontiguousarray(vectors, np.float32) @ references.astype(np.float32).T
    best = sims.argmax(axis=1)
    return [names[j] if sims[i, j] >= threshold else None for i, j in enumerate(best)]

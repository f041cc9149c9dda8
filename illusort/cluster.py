"""Grouping embeddings into characters: average linkage at the model's threshold, or UMAP to a
few dimensions then HDBSCAN (`ClusterOptions.algorithm`; `auto` picks by folder size).

The number of characters is unknown, and images that fit no group are noise (label -1), not
forced onto the nearest character. The paper's setting (UMAP 32-d, HDBSCAN min_cluster_size=10,
min_samples=1) is `algorithm="hdbscan", min_cluster_size=10, strictness=None`.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from . import fastpaths
from .errors import IllusortError


@dataclass
class Clustering:
    labels: np.ndarray          # int, -1 = noise
    probabilities: np.ndarray   # HDBSCAN membership strength in [0, 1]
    params: dict                # the settings actually used (after capping for small folders)

    @property
    def n_clusters(self) -> int:
        return len(set(self.labels.tolist()) - {-1})

    @property
    def noise_share(self) -> float:
        return float(np.mean(self.labels == -1)) if len(self.labels) else 0.0

    def summary(self) -> str:
        sizes = sorted(np.bincount(self.labels[self.labels >= 0]).tolist(), reverse=True) if self.n_clusters else []
        shown = ", ".join(map(str, sizes[:15])) + (", ..." if len(sizes) > 15 else "")
        return (f"{len(self.labels)} items -> {self.n_clusters} clusters (sizes {shown or '-'}), "
                f"noise {self.noise_share:.1%}")


# Below this many items UMAP is skipped: on a few dozen points its graph is unstable
# (synthetic 4 x 10 set: AMI 0.67-0.83 after UMAP, 0.92 on the raw vectors), and HDBSCAN
# on raw vectors is fast at that size.
UMAP_MIN_ITEMS = 300


def effective_min_cluster_size(n: int, requested: int) -> int:
    """Cap min_cluster_size for small folders: a folder of 40 images may hold characters
    with 5 pictures each, which min_cluster_size=10 would call noise."""
    return int(max(2, min(requested, n // 8)))


class ClusterError(IllusortError, ValueError):
    """Clustering cannot be done as asked; the message says why and what to do."""


ALGORITHMS = ("auto", "hdbscan", "agglomerative")
AGGLOMERATIVE_MAX_ITEMS = 20_000  # it holds all n^2 / 2 distances in memory
# `auto` (the default): average linkage at the model's calibrated similarity from 100 to
# 10,000 pictures, HDBSCAN outside. Real collections hold characters with 2 to 500 pictures;
# measured on held-out characters (RESULTS.md, "Clustering defaults") average linkage forms
# the small ones that HDBSCAN's min_cluster_size cannot, without splitting the large ones.
# Below 100 pictures HDBSCAN's min_cluster_size is capped at an eighth of the folder, so it
# forms small characters too, and its density cut does not depend on an absolute similarity
# (pictures unlike the training art, e.g. drawn test shapes, are all "similar" by the card's
# threshold); above 10,000 average linkage's n^2 distances take too much memory.
AUTO_AGGLOMERATIVE = (100, 10_000)
MIN_CLUSTER_SIZE = {"agglomerative": 2, "hdbscan": 10}   # defaults: a character from 2 pictures up (fitted cut)


def resolve_algorithm(algorithm: str, n: int, similarity: float | None) -> str:
    """The algorithm `auto` stands for on n pictures (HDBSCAN when there is no similarity to cut at)."""
    if algorithm != "auto":
        return algorithm
    low, high = AUTO_AGGLOMERATIVE
    return "agglomerative" if low <= n <= high and similarity is not None else "hdbscan"


NONE_MEANS_DEFAULT = ("min_cluster_size", "strictness", "seed", "similarity", "umap_epochs")
OPTION_RANGES = {"min_cluster_size": (2, 1_000_000), "strictness": (0, 1), "min_samples": (1, 1_000_000),
                 "umap_dims": (0, 1024), "n_neighbors": (2, 1024), "similarity": (-1, 1), "pca_dims": (0, 4096),
                 "umap_epochs": (1, 100_000)}


@dataclass(frozen=True)
class ClusterOptions:
    """Every setting that can change a clustering. `key` names a saved clustering in the index:
    it changes when, and only when, the result would (bump VERSION when the code's result
    changes), so a new option with its old default keeps every user's saved clusterings.
    The defaults here are `cluster_embeddings`'s too."""
    algorithm: str = "auto"
    min_cluster_size: int | None = None   # None: MIN_CLUSTER_SIZE of the algorithm used
    strictness: float | None = 0.5        # None: the paper's excess-of-mass selection
    min_samples: int = 1
    umap_dims: int = 32
    n_neighbors: int = 15
    seed: int | None = None
    similarity: float | None = None       # None: the model card's threshold
    pca_dims: int = 64
    umap_epochs: int | None = None
    fit_cut: bool = True                  # average linkage: raise the cut while folders grow more distinct
    VERSION = 5   # 4: average linkage fits its cut to the collection (fit_cut); 5: from 2 pictures up

    def __post_init__(self):
        """A wrong value from a library caller is one clear line before any work, not a traceback later."""
        import math
        from numbers import Integral, Real

        if self.algorithm not in ALGORITHMS:
            raise ClusterError(f"unknown clustering algorithm {self.algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
        if not isinstance(self.fit_cut, bool):
            raise ClusterError(f"clustering option fit_cut={self.fit_cut!r} is not true or false")
        for name, value in self.__dict__.items():
            if name in ("algorithm", "fit_cut") or (value is None and name in NONE_MEANS_DEFAULT):
                continue
            low, high = OPTION_RANGES.get(name, (-math.inf, math.inf))
            whole = name not in ("strictness", "similarity")
            if (isinstance(value, bool) or not isinstance(value, Integral if whole else Real)
                    or not low <= value <= high):
                raise ClusterError(f"clustering option {name}={value!r} is not a {'whole ' if whole else ''}number"
                                   f" from {low} to {high}")

    @classmethod
    def of(cls, options: dict) -> "ClusterOptions":
        """`ClusterOptions(**options)`, refusing an unknown name with one line."""
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise ClusterError(f"unknown clustering option {unknown[0]!r}; known: {', '.join(cls.__dataclass_fields__)}")
        return cls(**options)

    def key(self, model_id: str) -> str:
        import json

        fields = {k: v for k, v in self.__dict__.items() if v != type(self).__dataclass_fields__[k].default}
        return json.dumps({"v": self.VERSION, "model": model_id, **fields}, sort_keys=True)


def with_threshold(options: dict, threshold: float | None) -> dict:
    """Agglomerative clustering (and `auto`, which is agglomerative on most folders) cuts at the
    model card's calibrated similarity unless told otherwise."""
    if options.get("algorithm", "auto") in ("auto", "agglomerative") and options.get("similarity") is None:
        return {**options, "similarity": threshold}
    return options


def run_key(options: dict, model_id: str, threshold: float | None) -> str:
    """The name of the saved clustering of a model (`model_id`, its card's `threshold`) with
    these options: a sort records it, so `status` can find the clustering a re-run would use."""
    return ClusterOptions.of(with_threshold(options, threshold)).key(model_id)


# The strictness knob (measured: benchmarks/RESULTS.md, "Strictness"). HDBSCAN's "leaf"
# clusters are the finest groups it finds; cluster_selection_epsilon then merges groups closer
# than epsilon in the UMAP space, whose scale is alike for every model (raw embedding
# distances are not: folders too small for UMAP keep the paper's selection). Strictness sets
# epsilon log-linearly between these values:
EPSILON = (0.5, 0.1)        # loose .. strict
SIMILARITY_SPAN = 0.2       # agglomerative: the similarity cut moves +-0.1 around the threshold


def strictness_epsilon(strictness: float) -> float:
    """HDBSCAN cluster_selection_epsilon (UMAP space) for a strictness in [0, 1]."""
    if not 0 <= strictness <= 1:
        raise ClusterError(f"strictness must be between 0 and 1, not {strictness}")
    loose, strict = EPSILON
    return float(loose * (strict / loose) ** strictness)


def cluster_embeddings(vectors: np.ndarray, **options) -> Clustering:
    """Cluster L2-normalised embeddings; `options` are `ClusterOptions` fields, and what is not
    given takes its default there (one place, so the library and the CLI cluster alike).
    `umap_dims=0` clusters the raw vectors.

    `pca_dims`: PCA before UMAP (0: none, the paper's way); measured on held-out characters it
    is faster and clusters better (benchmarks/PERFORMANCE.md, RESULTS.md).
    `strictness` (0 loose .. 1 strict) is how readily look-alikes share a cluster: HDBSCAN
    leaf clusters merged below `strictness_epsilon`; towards 1 more, smaller clusters and more
    noise. None, and folders too small for UMAP: the paper's setting (excess-of-mass selection). For agglomerative
    clustering it moves the `similarity` cut (+-SIMILARITY_SPAN / 2).

    `seed` makes UMAP deterministic (and single-threaded: slower on big folders).
    `algorithm="agglomerative"`: average-linkage clustering cut where the mean cosine
    similarity between two groups falls below `similarity` (a trained model's card threshold);
    groups smaller than min_cluster_size are noise. Measured on held-out characters with
    2-6 images each it beats HDBSCAN (benchmarks/RESULTS.md); it needs O(n^2) memory.
    """
    o = ClusterOptions.of(options)
    n = len(vectors)
    algorithm = resolve_algorithm(o.algorithm, n, o.similarity)
    mcs = effective_min_cluster_size(n, o.min_cluster_size or MIN_CLUSTER_SIZE[algorithm])
    if algorithm == "agglomerative":
        shift = 0.0 if o.strictness is None else (o.strictness - 0.5) * SIMILARITY_SPAN
        return agglomerative(vectors, o.similarity, mcs, shift, o.fit_cut)
    params = {"algorithm": "hdbscan", "min_cluster_size": mcs, "min_samples": min(o.min_samples, mcs),
              "umap_dims": o.umap_dims, "n_neighbors": o.n_neighbors, "seed": o.seed, "strictness": o.strictness}
    if n < 2 * mcs:  # too few to form two groups: nothing to cluster
        return Clustering(np.full(n, -1), np.zeros(n), params)
    reduced = reduce_dimensions(vectors, o.umap_dims, o.n_neighbors, o.seed, o.pca_dims, o.umap_epochs)
    params["umap_dims"] = reduced.shape[1] if reduced is not vectors else 0
    if o.strictness is None or reduced is vectors:
        params.update(selection="eom", epsilon=0.0)
    else:
        params.update(selection="leaf", epsilon=strictness_epsilon(o.strictness))
    import hdbscan

    clusterer = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=params["min_samples"],
                                cluster_selection_method=params["selection"],
                                cluster_selection_epsilon=params["epsilon"], core_dist_n_jobs=1)
    labels = clusterer.fit_predict(reduced.astype(np.float64))
    return Clustering(labels.astype(int), clusterer.probabilities_.astype(float), params)


def assign_to_clusters(clustered: np.ndarray, labels: np.ndarray, new: np.ndarray, threshold: float,
                       k: int = 10, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Place new vectors into an existing clustering without redoing it: the majority label of
    their k most similar clustered vectors when the most similar one reaches `threshold`,
    else noise. Returns (labels, probabilities = share of the k neighbours with that label)."""
    out_labels, out_probs = np.full(len(new), -1), np.zeros(len(new))
    k = min(k, len(clustered))
    if k == 0:
        return out_labels, out_probs
    for start in range(0, len(new), chunk):  # memory: chunk x n similarities, not new x n
        sims = new[start:start + chunk] @ clustered.T
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for row, neighbours in enumerate(nearest):
            if sims[row, neighbours].max() < threshold:
                continue
            votes = np.bincount(labels[neighbours] + 1)  # +1: noise (-1) counts as a label
            winner = int(votes.argmax()) - 1
            out_labels[start + row], out_probs[start + row] = winner, votes.max() / k
    return out_labels, out_probs


# The fitted cut (`fit_cut`): from the model's threshold up in these steps, the cut whose folders
# are most distinct (silhouette). On art unlike the training art (3D renders, shifted colours) every
# picture is "similar" by the card's threshold, and one folder swallows many characters; there the
# silhouette rises with the cut. On fan art like the training art it peaks at the threshold itself
# (measured on held-out characters: benchmarks/RESULTS.md, "Actions to a clean collection").
CUT_STEP, CUT_STEPS = 0.025, 12
SILHOUETTE_SAMPLE = 2000   # pictures the silhouette is scored on (a fixed sample above this)


def agglomerative(vectors: np.ndarray, similarity: float | None, min_cluster_size: int, shift: float = 0.0,
                  fit_cut: bool = False) -> Clustering:
    """Average linkage cut where the mean cosine similarity between two groups falls below
    `similarity` (+ `shift`, the strictness), or above it where `fit_cut` finds more distinct folders."""
    n = len(vectors)
    if similarity is None:
        raise ClusterError("agglomerative clustering needs a similarity threshold: give --similarity "
                         "(the model has no calibrated threshold)")
    if n > AGGLOMERATIVE_MAX_ITEMS:
        raise ClusterError(f"agglomerative clustering of {n} images needs too much memory (limit "
                         f"{AGGLOMERATIVE_MAX_ITEMS}); use --algorithm hdbscan")
    params = {"algorithm": "agglomerative", "similarity": similarity + shift, "min_cluster_size": min_cluster_size}
    if n < 2:
        return Clustering(np.full(n, -1), np.zeros(n), params)
    from scipy.cluster.hierarchy import fcluster, linkage

    vectors = np.asarray(vectors, np.float64)
    tree = linkage(vectors, "average", metric="cosine")
    cut = fitted_cut(tree, vectors, similarity) if fit_cut else similarity
    params["similarity"] = round(float(cut + shift), 4)
    labels = fcluster(tree, 1 - (cut + shift), "distance") - 1
    sizes = np.bincount(labels)
    labels = np.where(sizes[labels] >= min_cluster_size, labels, -1)
    kept = {old: new for new, old in enumerate(sorted(set(labels.tolist()) - {-1}))}
    labels = np.array([kept.get(int(x), -1) for x in labels])
    return Clustering(labels, (labels >= 0).astype(float), params)


def fitted_cut(tree: np.ndarray, vectors: np.ndarray, lowest: float) -> float:
    """The cut from `lowest` up (CUT_STEP at a time) whose groups score the best silhouette
    (cosine, on a fixed sample of large folders): the first of equals, so folders split only
    when that makes them more distinct."""
    from scipy.cluster.hierarchy import fcluster
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    sample = np.random.default_rng(0).choice(n, SILHOUETTE_SAMPLE, replace=False) if n > SILHOUETTE_SAMPLE \
        else np.arange(n)
    picked = vectors[sample]
    distances = np.clip(1 - picked @ picked.T, 0, 2)   # cosine, once for every cut
    np.fill_diagonal(distances, 0)
    best, best_score = lowest, -np.inf
    for step in range(CUT_STEPS):
        cut = lowest + step * CUT_STEP
        labels = fcluster(tree, 1 - cut, "distance")[sample]
        if not 1 < len(np.unique(labels)) < len(sample):
            continue
        score = silhouette_score(distances, labels, metric="precomputed")
        if score > best_score:
            best, best_score = cut, score
    return best


def reduce_dimensions(vectors: np.ndarray, dims: int, n_neighbors: int = 15, seed: int | None = None,
                      pca_dims: int = 0, epochs: int | None = None) -> np.ndarray:
    """UMAP (cosine metric) to `dims`; returns the input when it is already that small.
    `pca_dims`: PCA first (UMAP's neighbour search costs grow with the dimensions);
    `epochs`: UMAP's optimisation epochs (its default: 200 above 10,000 items, else 500)."""
    n, d = vectors.shape
    if dims <= 0 or d <= dims or n < UMAP_MIN_ITEMS:
        return vectors
    if n < UMAP_EXACT_ITEMS and fastpaths.enabled("knn"):
        with one_thread():
            return _reduce(vectors, dims, n_neighbors, seed, pca_dims, epochs, exact=True)
    return _reduce(vectors, dims, n_neighbors, seed, pca_dims, epochs, exact=False)


def _reduce(vectors, dims, n_neighbors, seed, pca_dims, epochs, exact: bool) -> np.ndarray:
    n, d = vectors.shape
    if pca_dims and d > pca_dims:
        from sklearn.decomposition import PCA

        vectors = PCA(pca_dims, random_state=0).fit_transform(vectors).astype(np.float32)
    use_numba_cache()
    if not umap_compiled():
        warnings.warn(f"compiling UMAP's functions, once (half a minute, longer on a busy machine; kept in "
                      f"{os.environ['NUMBA_CACHE_DIR']} for later runs)", stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap warns about n_jobs with a seed, and about tiny inputs
        import umap

        cache_umap_functions()
        n_neighbors = min(n_neighbors, n - 1)
        knn = exact_neighbours(vectors, n_neighbors) if exact else None
        reducer = umap.UMAP(n_components=dims, n_neighbors=n_neighbors, min_dist=0.0, metric="cosine",
                            random_state=seed, n_epochs=epochs,
                            precomputed_knn=(None, None, None) if knn is None else (*knn, None))
        return reducer.fit_transform(vectors)


@contextmanager
def one_thread():
    """BLAS and numba on one thread: on a small folder each parallel step is too short to pay
    for waking threads (measured on 2 busy cores: UMAP of 1,000 items 1.4 s on one numba
    thread, 4.5-6 s on two; the PCA's QR likewise)."""
    from threadpoolctl import threadpool_limits

    use_numba_cache()
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        numba.set_num_threads(before)


# UMAP finds neighbours exactly below this many items (it computes all distances, one pair
# per Python call); `exact_neighbours` gives it the same neighbours from one matrix product.
UMAP_EXACT_ITEMS = 4096


def exact_neighbours(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine distances) of each row's k nearest rows, itself first, as UMAP's
    small-data path finds them (all pairwise distances, nearest first)."""
    x = np.asarray(vectors, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    distances = np.maximum(1.0 - x @ x.T, 0.0)
    np.fill_diagonal(distances, 0.0)
    indices = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return indices.astype(np.int32), np.take_along_axis(distances, indices, axis=1).astype(np.float32)


def numba_cache_dir() -> str:
    """Where numba keeps compiled UMAP functions: the user cache folder, once per install."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "illusort", "numba")


def use_numba_cache() -> None:
    """Point numba's cache at `numba_cache_dir` unless the user chose one (NUMBA_CACHE_DIR),
    before numba reads its configuration (or re-reading it when numba is already loaded)."""
    import sys

    if "NUMBA_CACHE_DIR" in os.environ or not fastpaths.enabled("numba"):
        return
    os.environ["NUMBA_CACHE_DIR"] = numba_cache_dir()
    if "numba" in sys.modules:
        from numba.core import config

        config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]


def umap_compiled() -> bool:
    """Whether numba's cache holds UMAP's compiled functions; the first UMAP after an install
    compiles them (measured: 162 s on two busy cores, then 4 s), so a run says so first."""
    from pathlib import Path

    folder = os.environ.get("NUMBA_CACHE_DIR")
    return folder is None or any(Path(folder).glob("umap_*/*.nbi"))  # None: numba's own cache, not ours to judge


def cache_umap_functions() -> None:
    """Let UMAP's numba functions that are compiled on use (not cached by UMAP itself: about
    10 s in every new process) be saved to and loaded from the numba cache."""
    if not fastpaths.enabled("numba"):
        return
    import importlib

    from numba.core.dispatcher import Dispatcher
    from numba.core.caching import NullCache

    for name in ("umap_", "utils", "layouts", "distances", "spectral", "sparse"):
        try:
            module = importlib.import_module(f"umap.{name}")
        except ImportError:
            continue
        for function in list(vars(module).values()):
            if isinstance(function, Dispatcher) and isinstance(function._cache, NullCache) and not function.overloads:
                try:
                    function.enable_caching()
                except Exception:  # a function numba cannot cache is compiled as before
                    pass

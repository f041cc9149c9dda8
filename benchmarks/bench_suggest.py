"""How long the suggested fixes take on a large sort: building the queue, accepting a page of it,
rejecting one, moving one picture and taking it back, on a synthetic sort of N pictures
(vectors written into the index directly, no model: only the correction path is measured).
Also the clustering cost of the fitted cut (`fit_cut`) beside the plain cut, as ratios.

    python benchmarks/bench_suggest.py --pictures 10000
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_sort(work: Path, pictures: int, characters: int, dims: int = 64, seed: int = 0) -> Path:
    """IN of tiny files, an index holding a vector per file (characters as noisy directions,
    some pictures pushed off their character), sorted into OUT by the real naming and apply."""
    from illusort.cluster import cluster_embeddings
    from illusort.index import Index, Row, default_index_path, remember_output
    from illusort.naming import assign_folders, plan_entries
    from illusort.sort import apply_sort
    from illusort.layout import META_LAST_SORT as LAST_SORT, sort_key

    rng = np.random.default_rng(seed)
    root, out = work / "in", work / "out"
    root.mkdir()
    centres = rng.normal(size=(characters, dims))
    truth = rng.integers(0, characters, pictures)
    vectors = centres[truth] + 1.1 * rng.normal(size=(pictures, dims))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    paths = [f"p{k:06d}.png" for k in range(pictures)]
    for p in paths:
        (root / p).write_bytes(b"x")
    model = "synthetic"
    with Index(default_index_path(root)) as index:
        for p, v in zip(paths, vectors):
            index.put(model, p, 1, 0, None, [Row(p, 0, None, v.astype(np.float32))])
        index.commit()
        threshold = 0.35
        clustering = cluster_embeddings(vectors.astype(np.float32), algorithm="agglomerative", similarity=threshold)
        keys = [(p, 0) for p in paths]
        folders = assign_folders(keys, clustering.labels, {}, {}, {})
        remember_output(index.path, out)
        apply_sort(root, out, plan_entries(root, paths, folders), "symlink", progress=False)
        record = {"out": str(out.resolve()), "model": model, "model_id": model, "threshold": threshold,
                  "cut": clustering.params["similarity"]}
        index.set_meta(LAST_SORT, record)
        index.set_meta(sort_key(out), record)
    return out


def timed(what, results, call):
    start = time.perf_counter()
    value = call()
    results.append((what, time.perf_counter() - start))
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=10_000)
    parser.add_argument("--characters", type=int, default=500)
    args = parser.parse_args()
    from illusort import corrections, suggest
    from illusort.cluster import cluster_embeddings

    work = Path(tempfile.mkdtemp(prefix="illusort-bench-suggest-"))
    results = []
    try:
        out = timed("build the synthetic sort (not a user action)", results,
                    lambda: synthetic_sort(work, args.pictures, args.characters))
        queue = timed("status: the ranked queue", results, lambda: suggest.suggestions(out))
        kinds = {k: sum(s.kind == k for s in queue) for k in suggest.KINDS}
        page = [s for s in queue if s.kind in ("place", "move") and s.folder == queue[0].folder][:20] or queue[:1]
        timed(f"accept a page ({len(page)} suggestions)", results, lambda: suggest.accept(out, [s.number for s in page]))
        timed("reject one suggestion", results, lambda: suggest.reject(out, [1]))
        first = next(e for e in suggest.load_state(out).manifest["entries"] if "/" in e.dest)
        timed("move one picture", results, lambda: corrections.move_images(out, [Path(first.dest)], "Someone"))
        timed("undo --last", results, lambda: corrections.undo_last(out))
        vectors = np.stack([v[0] for v in suggest.load_state(out).vectors.values()])[:1000]
        plain = timed("cluster 1,000 (plain cut)", results,
                      lambda: cluster_embeddings(vectors, algorithm="agglomerative", similarity=0.35, fit_cut=False))
        timed("cluster 1,000 (fitted cut)", results,
              lambda: cluster_embeddings(vectors, algorithm="agglomerative", similarity=0.35, fit_cut=True))
        del plain
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.pictures} pictures, {args.characters} characters; queue: "
          + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    print("| step | seconds |\n| --- | --- |")
    for what, seconds in results:
        print(f"| {what} | {seconds:.3f} |")
    ratio = results[-1][1] / results[-2][1]
    print(f"fitted cut / plain cut clustering time at 1,000 pictures: {ratio:.2f}x")


if __name__ == "__main__":
    main()

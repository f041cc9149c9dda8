"""Query speed against a large index, side by side in one run: an index of N synthetic 500-d
embeddings (the shipped model's size), one reference picture, all matches above the
threshold, best first.

1. what `query` does: read the vectors from the SQLite index into one contiguous float32
   matrix, then one matrix product and a sort;
2. the same ranking on a matrix already in memory (the part a cache could not remove);
3. a faiss exact inner-product index (faiss-cpu, if installed), search only.

Medians of --repeats runs. The folder scan that `query` runs first (finding new files) is
measured on its own by bench_embed.py's incremental run; `query --no-update` skips it.

    python benchmarks/bench_query.py [--n 100000]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from illusort.index import Index, Row
    from illusort.query import rank

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.n, 500)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    reference = vectors[:1] + 0.05 * rng.normal(size=(1, 500)).astype(np.float32)
    reference /= np.linalg.norm(reference)
    with tempfile.TemporaryDirectory() as tmp:
        with Index(Path(tmp) / "index.db") as index:
            for start in range(0, args.n, 10_000):
                for i in range(start, min(start + 10_000, args.n)):
                    path = f"folder{i % 100}/{i:06d}.jpg"
                    index.put("m", path, 1000, 1, f"{i:032x}", [Row(path, 0, None, vectors[i])])
                index.commit()
            load = median_time(lambda: index.embeddings("m"), args.repeats)
            _, loaded = index.embeddings("m")
        ranking = median_time(lambda: rank(reference, loaded, threshold=0.434), args.repeats)
        rows = ["| measurement | seconds |", "| --- | --- |",
                f"| read {args.n:,} vectors from the SQLite index | {load:.3f} |",
                f"| rank them (matrix product + sort, threshold 0.434) | {ranking:.4f} |",
                f"| `query` total (read + rank) | {load + ranking:.3f} |"]
        try:
            import faiss

            faiss_index = faiss.IndexFlatIP(500)
            faiss_index.add(loaded)
            search = median_time(lambda: faiss_index.range_search(reference, 0.434), args.repeats)
            rows.append(f"| faiss IndexFlatIP range search (index already built) | {search:.4f} |")
        except ImportError:
            rows.append("| faiss | not installed (pip install faiss-cpu) |")
    print(f"## query — {time.strftime('%Y-%m-%d')}, {platform.machine()} ({os.cpu_count()} cores), "
          f"median of {args.repeats}\n\n`python benchmarks/bench_query.py --n {args.n}`\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

"""Clustering at scale: time, peak memory and AMI of `cluster_embeddings` on synthetic
embeddings with known characters (500-d unit vectors like the shipped model's: characters of
Zipf-like sizes in look-alike families, 10% unrelated images), from 1k to 100k, and what
makes UMAP cheaper: PCA before it, fewer epochs. Each variant runs in its own process (peak
memory = that process's max RSS, the vectors included).

    python benchmarks/bench_cluster_scale.py [--sizes 1000 10000 50000 100000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

VARIANTS = {
    "UMAP-32 + HDBSCAN (default)": {"pca_dims": 0},
    "PCA-64 → UMAP-32 + HDBSCAN": {"pca_dims": 64},
    "PCA-64 → UMAP-32 (50 epochs) + HDBSCAN": {"pca_dims": 64, "umap_epochs": 50},
    # `--algorithm auto` from 100 to 10,000 pictures; 0.45 is near the shipped models' thresholds
    "average linkage at 0.45 (auto, ≤ 10k)": {"algorithm": "agglomerative", "similarity": 0.45},
}


def synthetic(n: int, dim: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors: same-character cosine about 0.55, look-alike siblings about 0.2."""
    rng = np.random.default_rng(seed)
    n_chars = max(10, n // 40)
    weights = 1 / np.arange(1, n_chars + 1) ** 0.8
    labels = rng.choice(n_chars, n, p=weights / weights.sum())
    family = rng.normal(size=(n_chars // 5 + 1, dim))[np.arange(n_chars) // 5]
    centres = 0.5 * family + rng.normal(size=(n_chars, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + rng.normal(scale=np.sqrt(0.82 / dim), size=(n, dim))
    noise = rng.random(n) < 0.1
    x[noise] = rng.normal(size=(noise.sum(), dim))
    labels[noise] = -1
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def run_one(n: int, variant: str) -> dict:
    """In a child process: generate, cluster, report time, AMI and peak memory."""
    from illusort.cluster import cluster_embeddings
    from illusort.metrics import clustering_scores

    x, truth = synthetic(n)
    start = time.perf_counter()
    result = cluster_embeddings(x, **VARIANTS[variant])
    seconds = time.perf_counter() - start
    scores = clustering_scores(truth, result.labels)
    return {"n": n, "variant": variant, "seconds": seconds, "ami": scores["ami"], "clusters": scores["clusters"],
            "noise": scores["noise"], "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000, 100000])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(int(args.child[0]), args.child[1])))
        return
    print(f"## cluster scaling — {time.strftime('%Y-%m-%d')}, {platform.machine()} ({os.cpu_count()} cores)\n")
    print(f"`python benchmarks/bench_cluster_scale.py --sizes {' '.join(map(str, args.sizes))}`\n")
    print("| images | pipeline | seconds | peak memory | AMI | clusters (true ≈ images/40) | noise |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in args.sizes:
        for variant in args.variants:
            done = subprocess.run([sys.executable, __file__, "--child", str(n), variant], capture_output=True, text=True)
            if done.returncode:
                print(f"| {n:,} | {variant} | failed: {done.stderr.strip().splitlines()[-1]} | | | | |", flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {n:,} | {variant} | {r['seconds']:.1f} | {r['peak_mb']:.0f} MB | {r['ami']:.3f} | "
                  f"{r['clusters']} | {r['noise']:.0%} |", flush=True)


if __name__ == "__main__":
    main()

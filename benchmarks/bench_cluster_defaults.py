"""Which clustering settings fit real collections, where characters have 2 to 500 pictures.

Embeds the dev characters of a split (`--part test` to confirm a choice) once (one vector per picture, `--faces auto`), then
clusters several mixes of them with each candidate setting and prints the AMI (unsorted
counted as one label), folders and unsorted share:
- `all`: every character of the part together (icons, cards, fan art; 2-150 pictures each);
- `few`: only characters with at most 9 pictures (a folder of icons and cards);
- `many`: the characters with at least 50 pictures (fan-art faces);
- `per source`: each source on its own, AMI averaged over sources.

    python benchmarks/bench_cluster_defaults.py --split-from runs/lite0-v2.pt --model runs/lite0-v2.pt [--part test]

Choose on `dev`, report `test`: a default picked on the characters it is scored on flatters it.

Only vectors are kept (`--cache`), never images: the data is copyrighted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common import DATA, load_split, part_vectors


CANDIDATES = {
    "hdbscan mcs10 (before)": {"algorithm": "hdbscan", "min_cluster_size": 10},
    "hdbscan mcs5": {"algorithm": "hdbscan", "min_cluster_size": 5},
    "hdbscan mcs3": {"algorithm": "hdbscan", "min_cluster_size": 3},
    "hdbscan mcs3 s0.3": {"algorithm": "hdbscan", "min_cluster_size": 3, "strictness": 0.3},
    "hdbscan mcs3 s0.7": {"algorithm": "hdbscan", "min_cluster_size": 3, "strictness": 0.7},
    "agglo mcs3": {"algorithm": "agglomerative", "min_cluster_size": 3},
    "agglo mcs2": {"algorithm": "agglomerative", "min_cluster_size": 2},
    "agglo mcs3 s0.3": {"algorithm": "agglomerative", "min_cluster_size": 3, "strictness": 0.3},
    "agglo mcs3 s0.7": {"algorithm": "agglomerative", "min_cluster_size": 3, "strictness": 0.7},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-from", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--faces", default="auto")
    parser.add_argument("--part", choices=("dev", "test"), default="dev",
                        help="characters to cluster (choose on dev, confirm on test)")
    parser.add_argument("--cache", type=Path, default=None, help="npz of the vectors (reused when present)")
    parser.add_argument("--only", nargs="*", default=None, help="candidate names to run")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        blob = np.load(args.cache, allow_pickle=False)
        stored = str(blob["part"]) if "part" in blob.files else "test"   # caches before --part held test
        if stored != args.part:
            sys.exit(f"{args.cache} holds other characters than --part {args.part}: give another --cache")
        vectors, labels, threshold = blob["vectors"], blob["labels"].tolist(), float(blob["threshold"])
    else:
        if not args.data.is_dir():
            sys.exit(f"{args.data} not found: this benchmark needs ../shared/data (absent here, so nothing measured)")
        model, vectors, labels = part_vectors(args.model, set(load_split(args.split_from)[args.part]), args.data,
                                              args.faces)
        threshold = float(model.threshold or 0.5)
        if args.cache:
            np.savez(args.cache, vectors=vectors, labels=np.array(labels), threshold=threshold,
                     part=args.part)

    from illusort.cluster import cluster_embeddings
    from illusort.metrics import clustering_scores, source_of

    labels = np.array(labels)
    chars, counts = np.unique(labels, return_counts=True)
    size = dict(zip(chars, counts))
    sources = np.array([source_of(x) for x in labels])
    mixes = {"all": np.ones(len(labels), bool),
             "few (<=9)": np.array([size[x] <= 9 for x in labels]),
             "many (>=50)": np.array([size[x] >= 50 for x in labels])}
    print(f"{args.part} characters: {len(labels)} pictures, {len(chars)} characters, threshold {threshold:.3f}")
    print("| setting | " + " | ".join(f"{m}: AMI · folders · unsorted" for m in mixes) + " | per source: mean AMI |")
    print("| --- |" + " --- |" * (len(mixes) + 1))
    for name, options in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        options = {"seed": 0, "similarity": threshold, **options}
        cells = []
        for mask in mixes.values():
            c = cluster_embeddings(vectors[mask], **options)
            s = clustering_scores(labels[mask], c.labels)
            cells.append(f"{s['ami']:.3f} · {s['clusters']}/{len(set(labels[mask]))} · {s['noise']:.0%}")
        per = []
        for source in sorted(set(sources)):
            mask = sources == source
            if len(set(labels[mask])) >= 2:
                per.append(clustering_scores(labels[mask], cluster_embeddings(vectors[mask], **options).labels)["ami"])
        print(f"| {name} | " + " | ".join(cells) + f" | {np.mean(per):.3f} |", flush=True)


if __name__ == "__main__":
    main()

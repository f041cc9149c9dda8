"""Which clustering recovers characters best from one model's embeddings of held-out characters:
HDBSCAN at several min_cluster_size values, with and without UMAP-32, against average- and
complete-linkage agglomerative clustering cut at a cosine-similarity threshold. One run, same
vectors, AMI/ARI/noise/clusters (noise = one extra label, as the paper). Then what the
--strictness knob does, on the test characters (few images each), on holoen-faces (20
characters, ~150 images each) and on 250 test images (small folder: no UMAP).

    python benchmarks/bench_clustering.py models/anime-lite0.pt [--split-from runs/x.pt]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--split-from", default=None, help="card holding the split (default: the model's)")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: this benchmark needs ../shared/data (absent here, so nothing measured)")
    warnings.simplefilter("ignore")
    from sklearn.cluster import AgglomerativeClustering

    from illusort.cluster import cluster_embeddings
    from illusort.evaluate import labelled_images, select_characters
    from illusort.metrics import clustering_scores
    from illusort.weights import read_checkpoint
    from illusort.workflow import Settings, embed

    card, _ = read_checkpoint(Path(args.split_from or args.model))
    character_of = dict(select_characters(labelled_images(args.data, 2), card, "test"))
    model, index, _ = embed(args.data, Settings(model=args.model, progress=False, faces="off"))
    with index:
        rows, vectors = index.embeddings(model.model_id)
    keep = [i for i, r in enumerate(rows) if r.face == 0 and r.path in character_of]
    all_vectors = vectors
    vectors, truth = vectors[keep], [character_of[rows[i].path] for i in keep]
    print(f"{model.model_id}: {len(truth)} test images, {len(set(truth))} characters; card threshold "
          f"{model.threshold:.3f}\n")
    print("| clustering | AMI | ARI | noise | clusters |\n| --- | --- | --- | --- | --- |")

    def row(name, labels):
        s = clustering_scores(truth, labels)
        print(f"| {name} | {s['ami']:.3f} | {s['ari']:.3f} | {s['noise']:.1%} | {s['clusters']} |")

    for dims in (32, 0):
        for mcs in (2, 3, 5, 10):
            c = cluster_embeddings(vectors, min_cluster_size=mcs, min_samples=1, umap_dims=dims, seed=0,
                                   strictness=None, pca_dims=0)
            row(f"{'UMAP-32 + ' if dims else ''}HDBSCAN mcs {mcs}", c.labels)
    for similarity in (0.35, 0.45, 0.55):
        for linkage in ("average", "complete"):
            labels = AgglomerativeClustering(n_clusters=None, distance_threshold=1 - similarity, metric="cosine",
                                             linkage=linkage).fit_predict(vectors)
            row(f"agglomerative {linkage}, similarity ≥ {similarity}", labels)

    holoen = {p: c for p, c in labelled_images(args.data, 2) if p.startswith("holoen-faces/")}
    keep_h = [i for i, r in enumerate(rows) if r.face == 0 and r.path in holoen]
    pick = np.random.default_rng(0).permutation(len(truth))[:250]
    sets = {"test characters": (vectors, truth),
            "holoen-faces": (all_vectors[keep_h], [holoen[rows[i].path] for i in keep_h]),
            "250 test images": (vectors[pick], [truth[i] for i in pick])}
    print("\n--strictness (HDBSCAN leaf clusters merged below epsilon, min_cluster_size 10, UMAP-32 from 300 "
          "images; AMI / noise / clusters; 'paper' = excess-of-mass selection):\n")
    print("| strictness | " + " | ".join(f"{name} ({len(set(t))} characters)" for name, (_, t) in sets.items())
          + " |\n| --- |" + " --- |" * len(sets))
    for strictness in (None, 0.0, 0.25, 0.5, 0.75, 1.0):
        cells = []
        for v, t in sets.values():
            s = clustering_scores(t, cluster_embeddings(v, strictness=strictness, seed=0).labels)
            cells.append(f"{s['ami']:.3f} / {s['noise']:.0%} / {s['clusters']}")
        print(f"| {'paper' if strictness is None else strictness} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

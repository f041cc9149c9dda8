"""Which clustering recovers characters best from one model's embeddings of held-out characters:
HDBSCAN at several min_cluster_size values, with and without UMAP-32, against average- and
complete-linkage agglomerative clustering cut at a cosine-similarity threshold. One run, same
vectors, AMI/ARI/noise/clusters (noise = one extra label, as the paper).

    python benchmarks/bench_clustering.py models/anime-lite0.pt [--split-from runs/x.pt]
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

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
    model, index, _ = embed(args.data, Settings(model=args.model, progress=False))
    with index:
        rows, vectors = index.embeddings(model.model_id)
    keep = [i for i, r in enumerate(rows) if r.face == 0 and r.path in character_of]
    vectors, truth = vectors[keep], [character_of[rows[i].path] for i in keep]
    print(f"{model.model_id}: {len(truth)} test images, {len(set(truth))} characters; card threshold "
          f"{model.threshold:.3f}\n")
    print("| clustering | AMI | ARI | noise | clusters |\n| --- | --- | --- | --- | --- |")

    def row(name, labels):
        s = clustering_scores(truth, labels)
        print(f"| {name} | {s['ami']:.3f} | {s['ari']:.3f} | {s['noise']:.1%} | {s['clusters']} |")

    for dims in (32, 0):
        for mcs in (2, 3, 5, 10):
            c = cluster_embeddings(vectors, min_cluster_size=mcs, min_samples=1, umap_dims=dims, seed=0)
            row(f"{'UMAP-32 + ' if dims else ''}HDBSCAN mcs {mcs}", c.labels)
    for similarity in (0.35, 0.45, 0.55):
        for linkage in ("average", "complete"):
            labels = AgglomerativeClustering(n_clusters=None, distance_threshold=1 - similarity, metric="cosine",
                                             linkage=linkage).fit_predict(vectors)
            row(f"agglomerative {linkage}, similarity ≥ {similarity}", labels)


if __name__ == "__main__":
    main()

"""Test-time flip averaging: is the mean of a picture's and its mirror image's embedding
worth a second forward pass? Within-source EER of one part's characters (`source_scores`),
each model with and without it, in one run.

    python benchmarks/bench_flip.py --split-from models/anime-lite0-v2.pt --part test anime-lite0 anime-lite0-v2

The pictures are decoded once as training decodes them (`--faces auto` crops, letterboxed to
the model's input), in memory only: the data is copyrighted.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from common import DATA, load_split, pct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--split-from", required=True)
    parser.add_argument("--part", choices=("dev", "test"), default="test")
    parser.add_argument("--faces", default="auto")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data (absent here, so nothing measured)")
    from illusort.evaluate import labelled_images
    from illusort.metrics import source_scores
    from illusort.train.data import decode_images
    from illusort.train.scoring import embed_tensor
    from illusort.weights import load_model

    characters = set(load_split(args.split_from)[args.part])
    items = [(rel, label) for rel, label in labelled_images(DATA, depth=2) if label in characters]
    decoded = {}
    print(f"{args.part} characters of the split in `{args.split_from}`: {len(characters)} characters, "
          f"{len(items)} pictures, float32.\n")
    print("| model | within-source EER | mean over sources | all pairs | with flip averaging: within | mean | all |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for spec in args.models:
        model = load_model(spec)
        size = model.input_size
        if size not in decoded:
            images, kept, _ = decode_images([DATA / rel for rel, _ in items], size, faces=args.faces)
            decoded[size] = images, [items[k][1] for k in kept]
        images, labels = decoded[size]
        plain = embed_tensor(model.net, images, size, "cpu")
        both = plain + embed_tensor(model.net, images.flip(-1), size, "cpu")
        both /= np.linalg.norm(both, axis=1, keepdims=True)
        cells = []
        for vectors in (plain, both):
            s = source_scores(vectors, labels)
            cells += [pct(s["eer"]), pct(s["mean_source_eer"]), pct(s["all_pairs_eer"])]
        print(f"| {spec} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

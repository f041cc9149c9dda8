"""How many of `query`'s matches are the character asked for, at its default threshold.

The held-out test characters of the shipped model's split (pictures it never trained on) are
embedded once, as `sort` embeds them (one vector per picture). For every character with at
least 4 pictures, 3 of its pictures are the references and the folder searched is:
- `mixed`: all the other test pictures (1,778 of 228 characters of 12 sources, a download folder);
- `source`: the other pictures of the same source only (one game's house style: the hard case);
- `300`: 300 pictures drawn from the mixed folder (with all the character's own), the size of
  the folder in issue 26.
Each is scored at the model card's EER threshold (the old default) and at `query`'s default
(`LoadedModel.query_threshold_for`): precision (matches of the character / matches), recall
(matches of the character / its pictures in the folder), and the share of queries with no
match at all; means over the queried characters.

    python benchmarks/bench_query_precision.py [--model anime-lite0-lite2] [--cache /tmp/vectors.npz]

`--cache` keeps the vectors (never the pictures: they are copyrighted) for a second run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common import DATA, load_split, part_vectors

REFERENCES = 3


def score(vectors: np.ndarray, labels: np.ndarray, thresholds, folder_of, seed: int = 0) -> dict:
    """{name: (precision, recall, share of queries with no match)} of each threshold rule."""
    from illusort.query import similarity_to_references

    rng = np.random.default_rng(seed)
    results = {name: [] for name in thresholds}
    for character in sorted(set(labels)):
        own = np.flatnonzero(labels == character)
        if len(own) < REFERENCES + 1:
            continue
        refs = rng.choice(own, REFERENCES, replace=False)
        folder = folder_of(character, np.setdiff1d(np.arange(len(labels)), refs), rng)
        scores = similarity_to_references(vectors[refs], vectors[folder])
        truth = labels[folder] == character
        for name, rule in thresholds.items():
            passed = scores >= rule(len(folder), REFERENCES)
            hits = int((passed & truth).sum())
            results[name].append((hits / passed.sum() if passed.any() else None, hits / truth.sum(), not passed.any()))
    out = {}
    for name, rows in results.items():
        precisions = [p for p, _, _ in rows if p is not None]
        out[name] = (float(np.mean(precisions)) if precisions else None, float(np.mean([r for _, r, _ in rows])),
                     float(np.mean([e for _, _, e in rows])), len(rows))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="anime-lite0-lite2")
    parser.add_argument("--cache", type=Path, default=None, help="Keep the vectors here (.npz) for a second run.")
    args = parser.parse_args()
    from illusort.registry import find_model_file
    from illusort.weights import load_model

    model = load_model(args.model)
    if args.cache and args.cache.exists():
        saved = np.load(args.cache)
        vectors, labels = saved["vectors"], saved["labels"]
    else:
        test = set(load_split(find_model_file(args.model))["test"])
        _, vectors, labels = part_vectors(args.model, test, DATA)
        labels = np.asarray(labels)
        if args.cache:
            np.savez(args.cache, vectors=vectors, labels=labels)
    sources = np.asarray([label.split("/")[0] for label in labels])

    def mixed(character, rest, rng):
        return rest

    def same_source(character, rest, rng):
        return rest[sources[rest] == character.split("/")[0]]

    def three_hundred(character, rest, rng):
        own = rest[labels[rest] == character]
        others = rest[labels[rest] != character]
        return np.concatenate([own, rng.choice(others, min(len(others), 300 - len(own)), replace=False)])

    thresholds = {"EER point (old default)": lambda n, refs: model.threshold,
                  "query default (new)": model.query_threshold_for}
    print(f"{args.model}: {len(labels)} test pictures of {len(set(labels))} characters; "
          f"{REFERENCES} references per query\n")
    print("| folder searched | threshold | precision | recall | queries with no match | queries |")
    print("| --- | --- | --- | --- | --- | --- |")
    for folder_name, folder_of in (("mixed", mixed), ("300", three_hundred), ("source", same_source)):
        for name, (precision, recall, empty, n) in score(vectors, labels, thresholds, folder_of).items():
            print(f"| {folder_name} | {name} | {precision:.1%} | {recall:.1%} | {empty:.1%} | {n} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""How right are the names `sort --known` gives? Test characters of ../shared/data (never
trained on), one source at a time (a user's folder holds one franchise's fan art, whose
characters share a house style), plus the fan-art sources mixed.

Each round: half of a folder's characters (at least one) are "known", with R reference
pictures each (taken out of the folder); every other picture is matched with
`illusort.query.match_known`, the function `sort --known` uses. Reported, mean of 5 rounds:
- precision: of the pictures put under a known name, the share that are that character
  (what a user sees in OUT/<name>/);
- recall: the share of the known characters' pictures that got their name;
- forced: the share of unknown characters' pictures pushed onto a known name.

    python benchmarks/bench_known.py --model anime-lite0-v2 anime-lite0

The threshold is what `sort --known` uses: `known_threshold_for(number of references)`, pairs
at 1%/references false accepts on the card's dev pairs inside one source (cards with
`far_thresholds`); older cards: their `known_threshold` (1% false accepts over all pairs).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from common import DATA, FAN_ART, load_split, part_vectors


def round_scores(vectors, labels, refs, threshold_for, seed) -> dict:
    from illusort.query import match_known

    rng = np.random.default_rng(seed)
    by_character = defaultdict(list)
    for i, label in enumerate(labels):
        by_character[label].append(i)
    eligible = sorted(c for c, idx in by_character.items() if len(idx) > refs)
    known = set(rng.permutation(eligible)[:max(1, len(by_character) // 2)].tolist())
    ref_rows, ref_names = [], []
    for character in sorted(known):
        picked = rng.permutation(by_character[character])[:refs]
        ref_rows += picked.tolist()
        ref_names += [character] * len(picked)
    taken = set(ref_rows)
    rest = [i for i in range(len(labels)) if i not in taken]
    matched = match_known(vectors[ref_rows], ref_names, vectors[rest], threshold_for(len(ref_rows)))
    named = [(labels[i], m) for i, m in zip(rest, matched) if m is not None]
    known_rows = [(labels[i], m) for i, m in zip(rest, matched) if labels[i] in known]
    unknown = [m for i, m in zip(rest, matched) if labels[i] not in known]
    return {"named": len(named), "right": sum(t == m for t, m in named),
            "recall": np.mean([t == m for t, m in known_rows]) if known_rows else np.nan,
            "forced": np.mean([m is not None for m in unknown]) if unknown else np.nan}


def folder_scores(vectors, labels, refs, threshold_for) -> dict:
    """`threshold_for(number of references)`: the similarity `sort --known` would use."""
    runs = [round_scores(vectors, labels, refs, threshold_for, seed) for seed in range(5)]
    named = sum(r["named"] for r in runs)
    return {"precision": sum(r["right"] for r in runs) / named if named else np.nan,
            "recall": float(np.nanmean([r["recall"] for r in runs])),
            "forced": float(np.nanmean([r["forced"] for r in runs])), "named": named}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--split-from", default=None,
                        help="card whose test characters to use (default: the first model's)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--refs", type=int, nargs="+", default=[1, 3, 5])
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: this benchmark needs ../shared/data (absent here, so nothing measured)")
    from illusort.metrics import source_of
    from illusort.registry import find_model_file

    split_card = args.split_from or find_model_file(args.models[0])
    test = set(load_split(split_card)["test"])
    print(f"Test characters of `{split_card}`, {time.strftime('%Y-%m-%d')}; mean of 5 rounds per folder; "
          "half of each folder's characters known.\n")
    print("| model | folder | known threshold | references each | precision under known names | recall | "
          "unknown pictures forced |\n| --- | --- | --- | --- | --- | --- | --- |")
    for spec in args.models:
        model, vectors, labels = part_vectors(spec, test, args.data)
        rule = "card, per number of references" if model.card.get("far_thresholds") else "card known_threshold"
        sources = np.array([source_of(x) for x in labels])
        folders = {"fan art mixed (" + ", ".join(FAN_ART) + ")": np.isin(sources, FAN_ART)}
        folders.update({s: sources == s for s in sorted(set(sources.tolist()))})
        for name, mask in folders.items():
            sub = [x for x, m in zip(labels, mask) if m]
            if len(set(sub)) < 2:
                continue
            largest = max(Counter(sub).values())
            for refs in args.refs:
                if largest <= refs:  # no character has a picture beyond its references: nothing to score
                    continue
                s = folder_scores(vectors[mask], sub, refs, model.known_threshold_for)
                print(f"| {spec} | {name} | {rule} | {refs} | {s['precision']:.1%} ({s['named']}) | "
                      f"{s['recall']:.1%} | {s['forced']:.1%} |", flush=True)


if __name__ == "__main__":
    main()

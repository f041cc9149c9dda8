"""How well does `sort --known` assign pictures to known characters, and how often does it
push a picture of an unknown character onto a known name? Test characters of ../shared/data
(never trained on), the shipped model, whole images.

Each round: K of the characters with at least 3 images are "known" (10, a typical user's
list, or half of them), with R reference pictures each (taken out of the collection); every
other picture is matched with `illusort.query.match_known`, the function `sort --known` uses.
Averaged over 5 rounds.

The default threshold of `--known` is the model card's `known_threshold`: the similarity
where 1% of different-character pairs of the *dev* characters are accepted. `--write-card`
computes it and stores it in the card JSON beside the model.

    python benchmarks/bench_known.py [--model models/anime-lite0.pt] [--write-card]
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def round_scores(vectors, labels, refs_per_character, threshold, seed, n_known=None) -> dict:
    from illusort.query import match_known

    rng = np.random.default_rng(seed)
    by_character = defaultdict(list)
    for i, label in enumerate(labels):
        by_character[label].append(i)
    eligible = sorted(c for c, idx in by_character.items() if len(idx) >= 3)
    known = set(rng.permutation(eligible)[:n_known or len(eligible) // 2].tolist())
    ref_rows, ref_names = [], []
    for character in sorted(known):
        picked = rng.permutation(by_character[character])[:refs_per_character]
        ref_rows += picked.tolist()
        ref_names += [character] * len(picked)
    rest = [i for i in range(len(labels)) if i not in set(ref_rows)]
    matched = match_known(vectors[ref_rows], ref_names, vectors[rest], threshold)
    known_rows = [(labels[i], m) for i, m in zip(rest, matched) if labels[i] in known]
    unknown_rows = [m for i, m in zip(rest, matched) if labels[i] not in known]
    return {"correct": np.mean([m == t for t, m in known_rows]),
            "wrong_known": np.mean([m is not None and m != t for t, m in known_rows]),
            "left_to_clustering": np.mean([m is None for _, m in known_rows]),
            "forced": np.mean([m is not None for m in unknown_rows]),
            "known": len(known), "unknown": len(set(labels) - known)}


def part_vectors(model_spec, data: Path, card: dict, part: str):
    from illusort.evaluate import labelled_images, select_characters
    from illusort.workflow import Settings, embed

    character_of = dict(select_characters(labelled_images(data, 2), card, part))
    model, index, _ = embed(data, Settings(model=model_spec, faces="off", progress=False))
    with index:
        rows, vectors = index.embeddings(model.model_id)
    keep = [i for i, r in enumerate(rows) if r.face == 0 and r.path in character_of]
    return model, vectors[keep], [character_of[rows[i].path] for i in keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path,
                        default=Path(__file__).resolve().parent.parent / "models" / "anime-lite0.pt")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--write-card", action="store_true", help="store the dev FAR-1%% threshold in the card")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: this benchmark needs ../shared/data (absent here, so nothing measured)")
    import json

    from illusort.metrics import embedding_eer
    from illusort.weights import read_checkpoint

    card, _ = read_checkpoint(args.model)
    _, dev_vectors, dev_labels = part_vectors(str(args.model), args.data, card, "dev")
    dev = embedding_eer(dev_vectors, dev_labels)
    print(f"dev characters: EER threshold {dev['threshold']:.3f}, 1% false accepts at {dev['threshold_far1']:.3f}")
    if args.write_card:
        card_file = args.model.with_suffix(".json")
        stored = json.loads(card_file.read_text())
        stored["known_threshold"] = round(dev["threshold_far1"], 4)
        card_file.write_text(json.dumps(stored, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        print(f"known_threshold written to {card_file}")
    model, vectors, labels = part_vectors(str(args.model), args.data, card, "test")
    print(f"{model.model_id}: {len(labels)} test images of {len(set(labels))} characters; "
          f"{time.strftime('%Y-%m-%d')}; mean of 5 rounds.\n")
    print("| known characters | references each | threshold | correct | wrong known name | left to clustering "
          "| unknown pictures forced onto a known name |\n| --- | --- | --- | --- | --- | --- | --- |")
    thresholds = {"EER point (query)": model.threshold, "1% FAR (--known default)": dev["threshold_far1"],
                  "0.70": 0.70}
    for n_known in (10, None):
        for refs in (1, 3):
            for name, threshold in thresholds.items():
                runs = [round_scores(vectors, labels, refs, threshold, seed, n_known) for seed in range(5)]
                mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
                print(f"| {mean['known']:.0f} | {refs} | {name}: {threshold:.3f} | {mean['correct']:.1%} | "
                      f"{mean['wrong_known']:.1%} | {mean['left_to_clustering']:.1%} | {mean['forced']:.1%} |")


if __name__ == "__main__":
    main()

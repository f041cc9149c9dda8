"""Accuracy of models on held-out characters of ../shared/data, side by side in one run.

Every model is scored on the same test characters: the split recorded in the card of
`--split-from` (a model trained by `illusort train` on ../shared/data --label-depth 2).
Per model: EER over same/different pairs (overall, per character-frequency bucket, per
source) and clustering scores (AMI, ARI, noise, clusters) with the paper's settings (UMAP-32,
HDBSCAN min_cluster_size 10, min_samples 1) and with min_cluster_size 2 (most test characters
here have 2-6 images, which min_cluster_size 10 can only call noise).

    python benchmarks/bench_models.py --split-from runs/lite0-ms.pt hsv-hist lite0-imagenet runs/lite0-ms.pt

Prints markdown; `--write benchmarks/RESULTS.md --section NAME` replaces that section there.
VGG16 models are scored at their card's layer (see `illusort evaluate --all-layers` for Table 1).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
PAPER = {"min_cluster_size": 10, "min_samples": 1, "umap_dims": 32, "seed": 0, "strictness": None, "pca_dims": 0}
SMALL = {"min_cluster_size": 2, "min_samples": 1, "umap_dims": 32, "seed": 0, "strictness": None, "pca_dims": 0}


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"


def score_model(spec: str, data: Path, split_card: dict, batch_size: int, faces: str = "off",
                precision: str = "float32") -> dict:
    from illusort.evaluate import labelled_images, score, select_characters
    from illusort.metrics import embedding_eer
    from illusort.workflow import Settings, embed

    items = select_characters(labelled_images(data, depth=2), split_card, "test", "the split model")
    start = time.perf_counter()
    model, index, summary = embed(data, Settings(model=spec, batch_size=batch_size, progress=False, faces=faces,
                                                  precision=precision))
    seconds = time.perf_counter() - start
    with index:
        rows, vectors = index.embeddings(model.model_id)
    character_of = dict(items)
    keep = [k for k, r in enumerate(rows) if r.face == 0 and r.path in character_of]
    vectors = vectors[keep]
    labels = [character_of[rows[k].path] for k in keep]
    paper, _ = score(vectors, labels, PAPER)
    small, _ = score(vectors, labels, SMALL)
    per_source = {}
    sources = np.array([label.split("/")[0] for label in labels])
    for source in sorted(set(sources)):
        mask = sources == source
        sub = [lab for lab, m in zip(labels, mask) if m]
        if len(set(sub)) >= 2:
            per_source[source] = {"eer": embedding_eer(vectors[mask], sub)["eer"], "images": int(mask.sum()),
                                  "characters": len(set(sub))}
    return {"model": spec, "model_id": model.model_id, "images": len(labels), "characters": len(set(labels)),
            "paper": paper, "small": small, "sources": per_source, "embed_seconds": seconds,
            "trained": bool(model.card.get("trained"))}


def markdown(results: list[dict], args, split_card: dict) -> str:
    r0 = results[0]
    lines = [f"Test characters of `{args.data}` from the split in `{args.split_from}` (seed "
             f"{split_card['split'].get('seed')}): {r0['characters']} characters, {r0['images']} images. "
             f"{time.strftime('%Y-%m-%d')}, {platform.machine()} CPU.",
             "", f"`python benchmarks/bench_models.py --split-from {args.split_from} {' '.join(args.models)}`", "",
             "| model | EER | EER 2–4 | EER 5–9 | EER 10–49 | EER ≥50 | AMI (paper: mcs 10) | noise | AMI (mcs 2) | "
             "ARI (mcs 2) | noise | clusters |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        b = r["paper"]["buckets"]
        lines.append(f"| {r['model']} | {pct(r['paper']['eer'])} | " + " | ".join(
            pct(b[k]["eer"]) for k in ("2-4", "5-9", "10-49", "50+")) +
            f" | {r['paper']['ami']:.3f} | {pct(r['paper']['noise'])} | {r['small']['ami']:.3f} | "
            f"{r['small']['ari']:.3f} | {pct(r['small']['noise'])} | {r['small']['clusters']} |")
    sources = sorted({s for r in results for s in r["sources"]})
    lines += ["", "EER per source (test characters of that source only):", "",
              "| model | " + " | ".join(f"{s} ({results[0]['sources'].get(s, {}).get('characters', 0)} ch.)"
                                     for s in sources) + " |",
              "| --- |" + " --- |" * len(sources)]
    for r in results:
        lines.append(f"| {r['model']} | " + " | ".join(pct(r["sources"].get(s, {}).get("eer")) for s in sources) + " |")
    return "\n".join(lines)


def write_section(path: Path, section: str, body: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"<!-- {section} -->\n{body}\n<!-- /{section} -->"
    pattern = re.compile(rf"<!-- {re.escape(section)} -->.*?<!-- /{re.escape(section)} -->", re.S)
    text = pattern.sub(lambda m: block, text) if pattern.search(text) else text.rstrip() + f"\n\n{block}\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--split-from", required=True, help="checkpoint whose card holds the character split")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--faces", default="off", help="face crops: off (whole images, as RESULTS.md), auto, always")
    parser.add_argument("--precision", default="float32", help="float32 or bfloat16")
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument("--section", default="models")
    parser.add_argument("--json", type=Path, default=None, help="also save the raw results")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: this benchmark needs ../shared/data (absent here, so nothing measured)")
    from illusort.weights import read_checkpoint

    split_card, _ = read_checkpoint(Path(args.split_from))
    warnings.simplefilter("ignore")
    results = []
    for spec in args.models:
        print(f"scoring {spec} ...", file=sys.stderr)
        results.append(score_model(spec, args.data, split_card, args.batch_size, args.faces, args.precision))
    body = markdown(results, args, split_card)
    print(body)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.write:
        write_section(args.write, args.section, body)


if __name__ == "__main__":
    main()

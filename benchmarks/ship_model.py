"""Turn a trained checkpoint into a shipped model: fp16 weights in models/NAME.pt (checked
against fp32 on real images), its card with the benchmark's held-out scores added.

    python benchmarks/ship_model.py runs/lite0-ms-adamw.pt anime-lite0 --results runs/bench.json

`--results` is the `--json` output of bench_unseen.py; the row whose model is SRC is copied
into the card under metrics.benchmark (within-source EER per source and mean, all-pairs EER,
and the AMI of a real `sort` of the test characters).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("name")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()

    from illusort.embed import embed_images
    from illusort.images import find_images, read_image
    from illusort.weights import load_model, read_checkpoint, save_checkpoint

    card, _ = read_checkpoint(args.source)
    full = load_model(str(args.source))
    out = ROOT / "models" / f"{args.name}.pt"
    card = {**card, "name": args.name, "shipped_from": str(args.source)}
    if args.results:
        rows = [r for r in json.loads(args.results.read_text()) if Path(r["model"]) == args.source]
        if not rows:
            sys.exit(f"{args.source} is not among the models of {args.results}")
        r = rows[0]
        e = r["eer"]
        card.setdefault("metrics", {})["benchmark"] = {
            "test_characters": r["characters"], "test_images": r["images"],
            "within_source_eer": e["eer"], "mean_source_eer": e.get("mean_source_eer"),
            "all_pairs_eer": e["all_pairs_eer"], "eer_per_source": {k: v["eer"] for k, v in e["per_source"].items()},
            "buckets": {k: v["eer"] for k, v in e["buckets"].items()},
            "sort": {k: r["sort"][k] for k in ("ami", "ari", "noise", "clusters")},
            "sort_ami_per_source": r["sort_per_source"],
            "script": "benchmarks/bench_unseen.py (see benchmarks/RESULTS.md)"}
    save_checkpoint(out, full.net, card, half=True)

    # fp16 must not change what the model says: compare on real images when we have them.
    paths = find_images(args.data, links="any")[::40] if args.data.is_dir() else []
    images = [read_image(args.data / p)[0] for p in paths[:150]]
    if images:
        a = embed_images(full, images)
        b = embed_images(load_model(str(out)), images)
        cosine = np.sum(a * b, axis=1)
        print(f"fp16 vs fp32 on {len(images)} real images: cosine min {cosine.min():.5f}, mean {cosine.mean():.5f}")
        if cosine.min() < 0.999:
            sys.exit("fp16 changes the embeddings too much: ship fp32 instead")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {out.with_suffix('.json')}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

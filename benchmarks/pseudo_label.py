"""Pseudo-characters from a folder of unlabelled faces, to train on as one more source.

A model embeds every picture; average linkage on the cosines, cut at the similarity where the
model's card puts a false-accept rate (`--far`), groups the pictures; groups of `--min`..`--max`
pictures become folders OUT/<group>/ of symbolic links to up to `--cap` of their pictures
(nothing is copied: the pictures stay where they are). Train on them beside the labelled data,
keeping the parent's unseen characters:

    python benchmarks/pseudo_label.py ../shared/data-unlabelled/getchu-faces runs/getchu-pseudo
    mkdir runs/plus && ln -s $PWD/../shared/data/* $PWD/runs/getchu-pseudo runs/plus/
    illusort train runs/plus --label-depth 2 --split-from anime-lite0-v3 ...

Measured (benchmarks/RESULTS.md, 2026-11-27): no gain on dev characters at FAR 1e-2, a loss at 1e-3.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a flat folder of unlabelled pictures (faces)")
    parser.add_argument("out", type=Path, help="folder to create: OUT/<group>/<links>")
    parser.add_argument("--model", default=None, help="embedding model (default: the shipped default)")
    parser.add_argument("--far", default="0.01", help="false-accept rate of the cut, a key of the card's far_thresholds")
    parser.add_argument("--min", type=int, default=2)
    parser.add_argument("--max", type=int, default=30, help="larger groups are look-alikes merged: dropped")
    parser.add_argument("--cap", type=int, default=4, help="pictures linked per group")
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"{args.folder} not found (the unlabelled faces are ../shared/data-unlabelled/getchu-faces)")
    if args.out.exists() or args.out.is_symlink():
        sys.exit(f"{args.out} exists: give a new folder")
    if not 2 <= args.min <= args.max or args.cap < 2:
        sys.exit("need 2 <= --min <= --max and --cap >= 2 (a group teaches nothing with fewer than 2 pictures)")
    from scipy.cluster.hierarchy import fcluster, linkage

    from illusort.errors import IllusortError
    from illusort.images import find_images
    from illusort.train.data import decode_images
    from illusort.train.scoring import embed_tensor
    from illusort.weights import load_model

    try:
        model = load_model(args.model)
    except IllusortError as error:
        sys.exit(str(error))
    far = model.card.get("far_thresholds") or {}
    similarity = far.get(args.far)
    if similarity is None:
        sys.exit(f"the model's card has no far_thresholds entry {args.far!r} (it has: {', '.join(far) or 'none'})")
    paths = [args.folder / rel for rel in find_images(args.folder) if len(rel.parts) == 1]
    if len(paths) < 2:
        sys.exit(f"{args.folder} holds {len(paths)} picture(s) directly in it: nothing to group")
    size = model.card["input_size"]
    images, kept, _ = decode_images(paths, size, progress=sys.stderr.isatty(), faces="off")
    paths = [paths[k] for k in kept]
    if len(paths) < 2:
        sys.exit(f"{args.folder}: fewer than 2 readable pictures, nothing to group")
    try:
        args.out.mkdir(parents=True)
    except OSError as error:
        sys.exit(f"cannot create {args.out}: {error.strerror}")
    vectors = embed_tensor(model.net.eval(), images, size, "cpu").astype(np.float64)
    groups = fcluster(linkage(vectors, method="average", metric="cosine"), t=1 - similarity, criterion="distance")
    sizes = Counter(groups)
    kept_groups = sorted(g for g, n in sizes.items() if args.min <= n <= args.max)
    for g in kept_groups:
        folder = args.out / f"p{g:05d}"
        folder.mkdir()
        for path in sorted(p for p, h in zip(paths, groups) if h == g)[:args.cap]:
            (folder / path.name).symlink_to(path.resolve())
    print(f"{len(paths)} pictures, cut at similarity {similarity:.3f} (FAR {args.far}): {len(kept_groups)} groups of "
          f"{args.min}..{args.max} written to {args.out} ({sum(n > args.max for n in sizes.values())} larger dropped, "
          f"{sum(n < args.min for n in sizes.values())} smaller)")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

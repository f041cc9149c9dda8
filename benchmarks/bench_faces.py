"""Do anime face crops help, and on which images? One run, one model, the test characters
of ../shared/data, scored per source with faces off / always / auto, and `auto` at other
face-share limits (an image is cropped when its largest face crop covers less than that
share of it: computed from the off and always vectors, no new embedding):

- as they are (the sources are icons, busts and face crops: the character fills the image);
- as "scenes": each image pasted at a third of its size at a random place on a larger
  noisy canvas, standing in for illustrations where the character is small.

    python benchmarks/bench_faces.py [--model anime-lite0] [--split-from models/anime-lite0.pt]

The scene images are made in a temporary folder and deleted (derived from copyrighted art).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MODES = ("off", "always", "auto")
BASELINE, BEFORE = "draft,faces,workers", "auto before #14"
SHARES = (0.5, 0.6, 0.7, 0.8)
PAPER = {"min_cluster_size": 10, "min_samples": 1, "umap_dims": 32, "strictness": None, "pca_dims": 0}


def make_scene(src: Path, dest: Path, seed: int) -> None:
    from PIL import Image

    from illusort.images import read_image

    rng = random.Random(seed)
    image, _ = read_image(src)
    w, h = image.size
    canvas_w, canvas_h = 3 * w, 3 * h
    noise = np.random.default_rng(seed).integers(150, 256, (canvas_h // 8, canvas_w // 8, 3), dtype=np.uint8)
    canvas = Image.fromarray(noise).resize((canvas_w, canvas_h), Image.BILINEAR)
    canvas.paste(image, (rng.randint(0, canvas_w - w), rng.randint(0, canvas_h - h)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(dest.with_suffix(".png"))


def embedded(folder: Path, character_of: dict, model: str, faces: str, index_name: str | None = None):
    """{path: (vector of the largest face or whole image, crop share or None)}, seconds."""
    from illusort.images import read_image
    from illusort.workflow import Settings, embed

    start = time.perf_counter()
    index = folder.parent / f"{folder.name}-{index_name}.db" if index_name else None
    loaded, index, _ = embed(folder, Settings(model=model, faces=faces, progress=False, index=index), links="any")
    seconds = time.perf_counter() - start
    with index:
        rows, vectors = index.embeddings(loaded.model_id)
    out = {}
    for k, r in enumerate(rows):
        if r.face == 0 and r.path in character_of:
            share = None
            if r.box is not None:
                w, h = read_image(folder / r.path)[0].size
                share = (r.box[2] - r.box[0]) * (r.box[3] - r.box[1]) / (w * h)
            out[r.path] = (vectors[k], share)
    return out, seconds


def scores(chosen: dict, character_of: dict) -> dict:
    """EER / AMI (paper settings) / share cropped, overall and per source."""
    from illusort.evaluate import score
    from illusort.metrics import embedding_eer

    paths = sorted(chosen)
    vectors = np.stack([chosen[p][0] for p in paths])
    labels = [character_of[p] for p in paths]
    cropped = np.array([chosen[p][1] is not None for p in paths])
    paper, _ = score(vectors, labels, PAPER)
    out = {"all": {"eer": paper["eer"], "ami": paper["ami"], "cropped": float(cropped.mean())}}
    sources = np.array([label.split("/")[0] for label in labels])
    for source in sorted(set(sources)):
        mask = sources == source
        sub = [lab for lab, m in zip(labels, mask) if m]
        if len(set(sub)) < 2 or len(sub) == len(set(sub)):
            continue  # a source the sample left with one character (or no pair) cannot be scored
        sub_scores, _ = score(vectors[mask], sub, PAPER)
        out[source] = {"eer": embedding_eer(vectors[mask], sub)["eer"], "ami": sub_scores["ami"],
                       "cropped": float(cropped[mask].mean())}
    return out


def score_kind(folder: Path, character_of: dict, model: str, modes=MODES, baseline: bool = False) -> dict:
    runs = {mode: embedded(folder, character_of, model, mode) for mode in modes}
    if baseline:  # `auto` by the code path before issue 14 (full decoding, one detection at DETECT_SIDE)
        os.environ["ILLUSORT_SLOW"] = BASELINE
        try:
            runs[BEFORE] = embedded(folder, character_of, model, "auto", index_name="before")
        finally:
            os.environ.pop("ILLUSORT_SLOW")
    results = {mode: scores(runs[mode][0], character_of) for mode in runs}
    if "off" in runs and "always" in runs:
        off, always = runs["off"][0], runs["always"][0]
        for limit in SHARES:
            mixed = {p: always[p] if always[p][1] is not None and always[p][1] < limit else off[p] for p in off}
            results[f"auto<{limit}"] = scores(mixed, character_of)
    results["seconds"] = {mode: runs[mode][1] for mode in runs}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--split-from", type=Path, default=Path(__file__).resolve().parent.parent / "models" /
                        "anime-lite0.pt")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--modes", default=",".join(MODES), help="face modes to embed with (comma-separated)")
    parser.add_argument("--baseline", action="store_true",
                        help=f"also `auto` by the code path before issue 14 (ILLUSORT_SLOW={BASELINE}), same run")
    parser.add_argument("--max-images", type=int, default=None, help="a seeded sample of the test images")
    args = parser.parse_args()
    modes = tuple(m for m in args.modes.split(",") if m)
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: this benchmark needs ../shared/data (absent here, so nothing measured)")
    warnings.simplefilter("ignore")
    from illusort.evaluate import labelled_images, select_characters
    from illusort.weights import read_checkpoint

    card, _ = read_checkpoint(args.split_from)
    items = select_characters(labelled_images(args.data, 2), card, "test")
    if args.max_images and len(items) > args.max_images:
        items = sorted(random.Random(0).sample(items, args.max_images))
    work = Path(tempfile.mkdtemp(prefix="illusort-faces-"))
    try:
        whole, scenes = work / "whole", work / "scenes"
        character_of = {"whole": {}, "scenes": {}}
        for n, (path, character) in enumerate(items):
            (whole / path).parent.mkdir(parents=True, exist_ok=True)
            (whole / path).symlink_to(args.data.resolve() / path)
            make_scene(args.data / path, scenes / path, n)
            character_of["whole"][path] = character
            character_of["scenes"][Path(path).with_suffix(".png").as_posix()] = character
        results = {kind: score_kind(work / kind, character_of[kind], args.model, modes, args.baseline)
                   for kind in ("whole", "scenes")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from illusort.faces import AUTO_MAX_SHARE

    first = next(iter(results["whole"]["seconds"]))
    sources = [s for s in results["whole"][first] if s != "all"]
    columns = [c for c in (*MODES, BEFORE, *(f"auto<{limit}" for limit in SHARES)) if c in results["whole"]]
    print(f"Test characters of {args.data} (split of {args.split_from.name}): {len(items)} images; "
          f"{time.strftime('%Y-%m-%d')}. EER / AMI (UMAP-32 + HDBSCAN mcs 10) / share of images cropped. "
          f"`auto` crops below a face share of {AUTO_MAX_SHARE}.\n")
    print("| images | source | " + " | ".join(columns) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in columns) + " |")
    for kind in ("whole", "scenes"):
        for source in ["all", *sources]:
            cells = [results[kind][m][source] for m in columns]
            print(f"| {kind} | {source} | " + " | ".join(
                f"{100 * c['eer']:.1f}% / {c['ami']:.3f} / {100 * c['cropped']:.0f}%" for c in cells) + " |")
        timed = [c for c in columns if c in results[kind]["seconds"]]
        print(f"| {kind} | embed seconds | " + " | ".join(f"{results[kind]['seconds'][m]:.0f}" for m in timed)
              + " |" + " |" * (len(columns) - len(timed)))


if __name__ == "__main__":
    main()

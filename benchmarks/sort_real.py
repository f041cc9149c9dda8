"""End-to-end check on real data: mix one labelled source of ../shared/data into a flat folder
(as a user's download folder looks), run `illusort sort` on it, and score the resulting
folders against the true characters (AMI with unsorted counted as one label, ARI).

    python benchmarks/sort_real.py holoen-faces [--model NAME] [--min-cluster-size 10]

The data is copyrighted: it is copied into a temporary folder and deleted afterwards.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder name under ../shared/data")
    parser.add_argument("--model", default=None)
    parser.add_argument("--min-cluster-size", type=int, default=10)
    parser.add_argument("--algorithm", default="hdbscan", choices=["hdbscan", "agglomerative"])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    source = args.data / args.source
    if not source.is_dir():
        sys.exit(f"{source} not found: this benchmark needs ../shared/data (absent here, so nothing measured)")

    from illusort.images import find_images
    from illusort.metrics import clustering_scores

    work = Path(tempfile.mkdtemp(prefix="illusort-real-"))
    try:
        flat, truth = work / "pics", {}
        flat.mkdir()
        for rel in find_images(source, links="any"):
            name = f"{len(truth):05d}{rel.suffix}"  # no identity in the name: the tool sees only pixels
            shutil.copyfile(source / rel, flat / name)
            truth[name] = rel.parts[0]
        cmd = ["illusort", "sort", str(flat), "--out", str(work / "out"), "-q", "--seed", "0",
               "--min-cluster-size", str(args.min_cluster_size), "--algorithm", args.algorithm]
        cmd += ["--model", args.model] if args.model else []
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            sys.exit(done.stderr)
        predicted = {}
        for link in (work / "out").glob("*/*"):
            predicted[Path(os.readlink(link)).name] = -1 if link.parent.name == "unsorted" else link.parent.name
        names = sorted(truth)
        labels = [predicted[n] for n in names]
        codes = {lab: i for i, lab in enumerate(sorted({str(x) for x in labels if x != -1}))}
        scores = clustering_scores([truth[n] for n in names], [codes[str(x)] if x != -1 else -1 for x in labels])
        print(f"`illusort sort <{args.source} flattened: {len(truth)} images, {len(set(truth.values()))} "
              f"characters> {' '.join(cmd[5:])}`")
        print(done.stdout.strip())
        print(f"AMI {scores['ami']:.3f}  ARI {scores['ari']:.3f}  noise {scores['noise']:.1%}  "
              f"clusters {scores['clusters']}  ({seconds:.0f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

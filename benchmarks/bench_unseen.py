"""The scoreboard on characters no model here trained on, every model side by side in one run.

The test characters of the split recorded in `--split-from`'s card (illusort train on
../shared/data --label-depth 2) are copied into one flat, shuffled folder, as a user's
download folder looks. For each model, a real `sort` of that folder (default options) gives:
- EER over pairs inside one source, pooled (the headline), per source and as the mean over
  sources; beside it the all-pairs EER, which pairs of two different games flatter;
- the AMI (unsorted counted as one label), ARI, folders and unsorted share of the sorted
  folder against the true characters, also for each source's characters sorted on their own.

    python benchmarks/bench_unseen.py --split-from runs/lite0-v2.pt lite0-imagenet anime-lite0 anime-lite0-v2

`--write benchmarks/RESULTS.md --section NAME` replaces that section there. The data is
copyrighted: it is copied into a temporary folder and deleted afterwards.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATA, flat_copy, load_split, pct

def sorted_labels(out: Path, names: list[str]) -> list:
    """Each picture's folder in OUT (its first entry; -1 for unsorted, not-a-character or skipped)."""
    manifest = json.loads((out / ".illusort-sort.json").read_text(encoding="utf-8"))
    folder = {}
    for entry in manifest["entries"]:
        folder.setdefault(Path(entry["src"]).name, entry["dest"].split("/")[0])
    return [folder.get(n, "unsorted") for n in names]


def ami_of(truth: list[str], predicted: list) -> dict:
    from illusort.metrics import clustering_scores

    codes = {f: i for i, f in enumerate(sorted({p for p in predicted if p != "unsorted"}))}
    return clustering_scores(truth, np.array([codes.get(p, -1) for p in predicted]))


def score_model(spec: str, flat: Path, truth: dict[str, str], work: Path, faces: str,
                precision: str = "auto") -> dict:
    from illusort.metrics import source_of, source_scores
    from illusort.workflow import Settings, open_index, sort

    names = sorted(truth)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{spec}-{precision}").strip("-")
    settings = Settings(model=spec, index=work / f"{slug}.db", progress=False, faces=faces, precision=precision)
    start = time.perf_counter()
    sort(flat, work / f"out-{slug}", settings, seed=0)
    seconds = time.perf_counter() - start
    model, index = open_index(flat, settings)
    with index:
        rows, vectors = index.embeddings(model.model_id)
    by_name = {}
    for row, vector in zip(rows, vectors):
        if row.face == 0:
            by_name[Path(row.path).name] = vector
    kept = [n for n in names if n in by_name]
    labels = [truth[n] for n in kept]
    eers = source_scores(np.stack([by_name[n] for n in kept]), labels)
    predicted = sorted_labels(work / f"out-{slug}", names)
    whole = ami_of([truth[n] for n in names], predicted)
    per_source = {}
    sources = sorted({source_of(truth[n]) for n in names})
    for source in sources:
        idx = [k for k, n in enumerate(names) if source_of(truth[n]) == source]
        per_source[source] = ami_of([truth[names[k]] for k in idx], [predicted[k] for k in idx])["ami"]
    return {"model": spec, "seconds": seconds, "eer": eers, "sort": whole, "sort_per_source": per_source,
            "images": len(names), "characters": len(set(truth.values()))}


def markdown(results: list[dict], args, truth: dict[str, str]) -> str:
    sources = sorted(results[0]["eer"]["per_source"])
    lines = [f"Test characters of `../shared/data` from the split in `{args.split_from}`: "
             f"{len(set(truth.values()))} characters, {len(truth)} images, {len(sources)} sources, sorted as one "
             f"flat folder with `--faces {args.faces}` and default options. {time.strftime('%Y-%m-%d')}, "
             f"{platform.machine()} CPU.", "",
             f"`python benchmarks/bench_unseen.py --split-from {args.split_from} {' '.join(args.models)}"
             + (f" --precision {' '.join(args.precision)}" if args.precision != ["auto"] else "") + "`", "",
             "| model | within-source EER | mean over sources | all-pairs EER | `sort` AMI | ARI | folders | "
             "unsorted | sort time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        e, s = r["eer"], r["sort"]
        lines.append(f"| {r['model']} | **{pct(e['eer'])}** | {pct(e.get('mean_source_eer'))} | "
                     f"{pct(e['all_pairs_eer'])} | **{s['ami']:.3f}** | {s['ari']:.3f} | {s['clusters']} | "
                     f"{s['noise']:.1%} | {r['seconds']:.0f} s |")
    lines += ["", "Per source: within-source EER · AMI of `sort` restricted to that source's pictures.", "",
              "| source | characters | images | " + " | ".join(r["model"] for r in results) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in results) + " |"]
    for source in sources:
        info = results[0]["eer"]["per_source"][source]
        cells = []
        for r in results:
            ps = r["eer"]["per_source"].get(source)
            cells.append(f"{pct(ps and ps['eer'])} · {r['sort_per_source'].get(source, float('nan')):.2f}")
        lines.append(f"| {source} | {info['characters']} | {info['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(path: Path, section: str, text: str) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    header = f"## {section}"
    block = f"{header}\n\n{text}\n"
    if header in old:
        pattern = re.compile(rf"^{re.escape(header)}\n.*?(?=^## |\Z)", re.S | re.M)
        new = pattern.sub(lambda _: block + "\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--split-from", required=True, help="model card (or .pt) whose split's test characters to use")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--faces", default="auto", choices=["auto", "always", "off"])
    parser.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "float32", "bfloat16"],
                        help="sort each model at each of these precisions (auto: bfloat16 where the CPU has it)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument("--section", default="Unseen characters, scored within each source")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: this benchmark needs ../shared/data (absent here, so nothing measured)")
    split = load_split(args.split_from)
    work = Path(tempfile.mkdtemp(prefix="illusort-unseen-"))
    try:
        flat = work / "pictures"
        flat.mkdir()
        truth = flat_copy(args.data, set(split["test"]), flat)
        results = []
        for spec, precision in [(s, p) for s in args.models for p in args.precision]:
            results.append(score_model(spec, flat, truth, work, args.faces, precision))
            r = results[-1]
            if args.precision != ["auto"]:
                r["model"] = f"{spec} ({precision})"
            print(f"{r['model']}: within-source EER {pct(r['eer']['eer'])}, mean {pct(r['eer'].get('mean_source_eer'))}, "
                  f"all pairs {pct(r['eer']['all_pairs_eer'])}, sort AMI {r['sort']['ami']:.3f} "
                  f"({r['seconds']:.0f} s)", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = markdown(results, args, truth)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    if args.write:
        write_section(args.write, args.section, text)


if __name__ == "__main__":
    main()

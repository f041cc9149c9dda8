"""The scoreboard as a picture: within-source EER per source, and the AMI of `sort` on each
source's pictures, every model of one `bench_unseen.py --json` run side by side (PNG for a
model card or RESULTS.md).

    python benchmarks/plot_unseen.py runs/unseen.json -o models/scoreboard.png [--models a b]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the --json output of bench_unseen.py")
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=None, help="which models, in this order (default: all)")
    parser.add_argument("--names", nargs="+", default=None, help="their labels in the legend")
    args = parser.parse_args()
    from matplotlib.figure import Figure

    rows = {r["model"]: r for r in json.loads(args.results.read_text())}
    models = args.models or list(rows)
    names = args.names or models
    if len(names) != len(models) or any(m not in rows for m in models):
        raise SystemExit(f"--models must name models of {args.results} ({', '.join(rows)}), --names one label each")
    sources = sorted(rows[models[0]]["eer"]["per_source"])
    fig = Figure(figsize=(11, 7.5))
    eer_ax, ami_ax = fig.subplots(2, 1, sharex=True)
    width = 0.8 / len(models)
    for k, (model, name) in enumerate(zip(models, names)):
        r = rows[model]
        x = np.arange(len(sources)) + (k - (len(models) - 1) / 2) * width
        eer_ax.bar(x, [100 * r["eer"]["per_source"][s]["eer"] for s in sources], width,
                   label=f"{name}: {100 * r['eer']['mean_source_eer']:.1f}% mean")
        ami_ax.bar(x, [r["sort_per_source"].get(s, np.nan) for s in sources], width,
                   label=f"{name}: {r['sort']['ami']:.3f} on the whole mix")
    eer_ax.set(ylabel="within-source EER (%), lower is better",
               title=f"{rows[models[0]]['characters']} test characters no model trained on")
    ami_ax.set(ylabel="AMI of `sort`, higher is better")
    ami_ax.set_xticks(np.arange(len(sources)), sources, fontsize=8, rotation=20, ha="right")
    eer_ax.set_ylim(0, eer_ax.get_ylim()[1] * 1.2)
    ami_ax.set_ylim(min(0, ami_ax.get_ylim()[0]), 1.25)
    for ax in (eer_ax, ami_ax):
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncol=len(models), loc="upper center")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Learning curves from `illusort train` logs (OUT.log.jsonl): training loss and dev EER per
epoch, several runs side by side, as one PNG for a model card or RESULTS.md.

    python benchmarks/plot_training.py runs/a.log.jsonl runs/b.log.jsonl -o models/curves.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("-o", "--out", type=Path, required=True)
    args = parser.parse_args()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    loss_ax, eer_ax = fig.subplots(1, 2)
    for log in args.logs:
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        name = log.name.removesuffix(".log.jsonl")
        epochs = [r["epoch"] for r in rows]
        loss_ax.plot(epochs, [r["loss"] for r in rows], label=name)
        eer_ax.plot(epochs, [r.get("dev_eer") for r in rows], marker=".", label=name)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss (each method its own scale)")
    eer_ax.set(xlabel="epoch", ylabel="dev EER (unseen characters)", title="dev EER per epoch")
    for ax in (loss_ax, eer_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

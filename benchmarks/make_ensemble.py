"""Combine trained checkpoints into one ensemble model (`nets.Ensemble`) and calibrate it.

The members must come from one split (`illusort train` on ../shared/data, the same `--seed`).
The thresholds (`threshold` at the within-source EER point, `far_thresholds`) are calibrated
on the split's dev characters, as training calibrates a single model; the test characters are
scored into the card (`metrics.test`) and nothing is chosen on them.

    python benchmarks/make_ensemble.py runs/lite0-160.pt runs/lite2-160.pt --out runs/lite0-lite2.pt

Then ship it like any run: `python benchmarks/ship_model.py runs/lite0-lite2.pt NAME`.
The pictures are decoded in memory only (the data is copyrighted).
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import torch

from common import DATA, pct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("members", nargs="+", type=Path)
    parser.add_argument("--shares", nargs="+", type=float, default=None,
                        help="each member's weight in the cosine (default: equal)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--faces", default="auto", help="face crops as the members were trained (default auto)")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: calibrating needs ../shared/data (absent here, so nothing made)")
    from illusort.evaluate import labelled_images, select_characters
    from illusort.train.data import decode_images
    from illusort.train.scoring import dev_scores, embed_tensor, plain, score_test_set
    from illusort.weights import combine_models, save_checkpoint

    net, card = combine_models(args.members, args.shares)
    net.eval()
    split = card["split"]
    if not isinstance(split, dict) or not split.get("dev"):
        sys.exit("the members' cards hold no character split with dev characters to calibrate on")
    labelled = labelled_images(args.data, depth=2)
    scores = {}
    for part in ("dev", "test"):
        items = select_characters(labelled, card, part, args.out.stem)
        images, kept, _ = decode_images([args.data / rel for rel, _ in items], net.input_size, faces=args.faces)
        labels = [items[k][1] for k in kept]
        if part == "dev":
            scores[part] = dev_scores(embed_tensor(net, images, net.input_size, "cpu"), labels)
        else:
            scores[part] = score_test_set(net, images, labels, net.input_size, "cpu", 0, scores["dev"]["threshold"])
        if scores[part] is None:
            sys.exit(f"the {part} characters cannot be scored (too few characters or pictures)")
        print(f"{part}: {len(set(labels))} characters, within-source EER {pct(scores[part]['eer'])}", flush=True)
    dev = scores["dev"]
    card.update(name=args.out.stem, threshold=dev["threshold"], known_threshold=dev.get("threshold_far1"),
                far_thresholds=dev.get("far_thresholds"), metrics={"dev": dev, "test": scores["test"]},
                command="python benchmarks/make_ensemble.py " + " ".join(sys.argv[1:]),
                torch=str(torch.__version__), date=dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    save_checkpoint(args.out, net, plain(card))
    print(f"wrote {args.out} (threshold {dev['threshold']:.3f})")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

"""Embedding throughput, side by side in one run:

1. the whole `embed` path (find, read, decode, letterbox, forward, write the index) on N
   generated JPEGs, first run;
2. the bare network forward on pre-decoded tensors of the same input size (the ceiling the
   whole path can approach);
3. the second, incremental run on the unchanged folder (should cost a small fraction).

    python benchmarks/bench_embed.py [--n 1000] [--size 256] [--model NAME] [--workers 2]

Prints a markdown table; ratios are what to compare across machines.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def make_images(folder: Path, n: int, size: int) -> None:
    """Synthetic illustrations: smooth colour fields with shapes (decode cost like real JPEGs)."""
    from conftest import draw_character

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        image = draw_character(i % 6, i, size=(size, size))
        noise = rng.integers(0, 12, (size, size, 3), dtype=np.uint8)
        Image.fromarray(np.clip(np.asarray(image, np.int16) + noise - 6, 0, 255).astype(np.uint8)).save(
            folder / f"{i:05d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--model", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from illusort.weights import load_model
    from illusort.workflow import Settings, embed

    work = Path(tempfile.mkdtemp(prefix="illusort-bench-"))
    try:
        make_images(work / "pics", args.n, args.size)
        settings = Settings(model=args.model, workers=args.workers, batch_size=args.batch_size, progress=False,
                            device="cpu")
        model = load_model(args.model, quiet=True)
        start = time.perf_counter()
        _, index, summary = embed(work / "pics", settings)
        first = time.perf_counter() - start
        index.close()
        assert summary.embedded == args.n, summary.line()

        start = time.perf_counter()
        _, index, summary = embed(work / "pics", settings)
        second = time.perf_counter() - start
        index.close()
        assert summary.unchanged == args.n, summary.line()

        size = model.input_size
        net = model.net.to(memory_format=torch.channels_last)
        x = torch.rand(args.batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            net(x)
            batches = max(3, args.n // args.batch_size // 4)
            start = time.perf_counter()
            for _ in range(batches):
                net(x)
            bare = batches * args.batch_size / (time.perf_counter() - start)

        whole = args.n / first
        print(f"## embed benchmark — {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
              f"{torch.get_num_threads()} torch threads, model {model.model_id} at {size}px\n")
        print(f"`python benchmarks/bench_embed.py --n {args.n} --size {args.size} --workers {args.workers}`\n")
        print("| measurement | value |\n| --- | --- |")
        print(f"| whole `embed`, first run ({args.n} JPEGs {args.size}px) | {whole:.1f} img/s ({first:.1f} s) |")
        print(f"| bare forward on pre-decoded tensors | {bare:.1f} img/s |")
        print(f"| whole / bare | {whole / bare:.2f} |")
        print(f"| second (incremental) run | {second:.2f} s |")
        print(f"| second / first | {second / first:.3f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

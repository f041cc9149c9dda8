"""Embedding throughput, side by side in one run:

1. the whole `embed` path (find, read, decode, letterbox, forward, write the index) on N
   generated JPEGs, first run, with face crops off (and, as a second figure, `--faces auto`);
2. the bare network forward on pre-decoded tensors of the same input size (the ceiling the
   whole path can approach), in float32 and bfloat16 (with its cosine to float32);
3. the machine's float32 matmul rate turned into the network's FLOP ceiling;
4. the second, incremental run on the unchanged folder (should cost a small fraction).

Each rate is the median of --repeats runs.

    python benchmarks/bench_embed.py [--n 2000] [--size 512] [--model NAME] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
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


def timed_embed(folder: Path, settings) -> tuple[float, object]:
    from illusort.workflow import embed

    start = time.perf_counter()
    _, index, summary = embed(folder, settings)
    seconds = time.perf_counter() - start
    index.close()
    return seconds, summary


def forward_rate(net, size: int, batch_size: int, batches: int, dtype=None) -> float:
    x = torch.rand(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        net(x)
        start = time.perf_counter()
        for _ in range(batches):
            net(x)
    return batches * batch_size / (time.perf_counter() - start)


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def flops_per_image(net, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(torch.rand(1, 3, size, size))
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--model", default=None)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: illusort's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from illusort.embed import keep_freed_memory
    from illusort.weights import load_model
    from illusort.workflow import Settings

    work = Path(tempfile.mkdtemp(prefix="illusort-bench-"))
    try:
        make_images(work / "pics", args.n, args.size)
        settings = Settings(model=args.model, workers=args.workers, batch_size=args.batch_size, progress=False,
                            device="cpu", faces="off")
        model = load_model(args.model, quiet=True)
        keep_freed_memory()
        firsts, seconds = [], []
        for _ in range(args.repeats):
            shutil.rmtree(work / "pics" / ".illusort", ignore_errors=True)
            first, summary = timed_embed(work / "pics", settings)
            assert summary.embedded == args.n, summary.line()
            second, summary = timed_embed(work / "pics", settings)
            assert summary.unchanged == args.n, summary.line()
            firsts.append(first)
            seconds.append(second)
        bf16_first, summary = timed_embed(work / "pics", Settings(**{**settings.__dict__, "precision": "bfloat16"}))
        assert summary.embedded == args.n, summary.line()
        faces_n = min(args.n, 500)
        shutil.rmtree(work / "pics" / ".illusort", ignore_errors=True)
        for extra in sorted((work / "pics").glob("*.jpg"))[faces_n:]:
            extra.unlink()
        faces_seconds, _ = timed_embed(work / "pics", Settings(**{**settings.__dict__, "faces": "auto"}))

        size, net = model.input_size, model.net.to(memory_format=torch.channels_last)
        batches = max(3, args.n // args.batch_size // 4)
        bare = statistics.median(forward_rate(net, size, args.batch_size, batches) for _ in range(args.repeats))
        bf16 = forward_rate(net, size, args.batch_size, batches, torch.bfloat16)
        x = torch.rand(64, 3, size, size)
        with torch.inference_mode():
            a = net(x).float()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                b = net(x).float()
        bf16_cosine = float(torch.nn.functional.cosine_similarity(a, b).min())
        gflops = statistics.median(matmul_gflops() for _ in range(args.repeats))
        flops = flops_per_image(model.net, size)
        ceiling = gflops * 1e9 / flops

        whole = args.n / statistics.median(firsts)
        print(f"## embed — {time.strftime('%Y-%m-%d')}, {platform.machine()} ({os.cpu_count()} cores), "
              f"{torch.get_num_threads()} torch threads, model {model.model_id} at {size}px, "
              f"median of {args.repeats}\n")
        from illusort.embed import default_workers

        workers = default_workers() if args.workers is None else args.workers
        print(f"`python benchmarks/bench_embed.py --n {args.n} --size {args.size}` ({workers} decoding processes; "
              "0 = decoding in line)\n")
        print("| measurement | value | ratio |\n| --- | --- | --- |")
        print(f"| whole `embed --faces off`, first run ({args.n} JPEGs {args.size}px) | {whole:.1f} img/s | "
              f"{whole / bare:.2f} of bare forward |")
        print(f"| whole `embed --faces off --precision bfloat16` (one run) | {args.n / bf16_first:.1f} img/s | "
              f"{args.n / bf16_first / bare:.2f} of the float32 bare forward, {args.n / bf16_first / bf16:.2f} "
              "of the bfloat16 one |")
        print(f"| whole `embed --faces auto` ({faces_n} of them) | {faces_n / faces_seconds:.1f} img/s | "
              f"{faces_n / faces_seconds / bare:.2f} of bare forward |")
        print(f"| bare forward, float32, pre-decoded tensors | {bare:.1f} img/s | 1 |")
        print(f"| bare forward, bfloat16 autocast | {bf16:.1f} img/s | {bf16 / bare:.2f} (cosine to float32 "
              f"≥ {bf16_cosine:.4f}) |")
        print(f"| FLOP ceiling: {gflops:.0f} GFLOP/s float32 matmul / {flops / 1e6:.0f} MFLOP per image | "
              f"{ceiling:.0f} img/s | bare forward = {bare / ceiling:.2f} of it |")
        print(f"| second (incremental) run, nothing changed | {statistics.median(seconds):.2f} s | "
              f"{statistics.median(seconds) / statistics.median(firsts):.3f} of the first |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

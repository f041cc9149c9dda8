"""Re-running `sort` on a grown folder, side by side in one run: a first sort of N generated
pictures, the same sort again with nothing changed, then again after adding K pictures.
Targets: the unchanged re-run costs at most 5% of the first; adding K costs about K pictures'
worth (the first run's time per picture times K, plus the fixed cost of a re-run).

    python benchmarks/bench_incremental.py [--n 10000] [--add 100] [--faces auto]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--add", type=int, default=100)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--faces", default="auto")
    args = parser.parse_args()
    from conftest import draw_character

    from illusort.workflow import Settings, sort

    work = Path(tempfile.mkdtemp(prefix="illusort-incr-"))
    try:
        pics, out = work / "pics", work / "sorted"
        for i in range(args.n + args.add):
            folder = pics if i < args.n else work / "later"
            folder.mkdir(parents=True, exist_ok=True)
            draw_character(i % 40, i, size=(args.size, args.size)).save(folder / f"{i:06d}.jpg", quality=90)
        settings = Settings(progress=False, faces=args.faces)

        def timed() -> tuple[float, object]:
            start = time.perf_counter()
            # HDBSCAN, as measured in PERFORMANCE.md ("Incremental runs"); drawn test shapes are all
            # "similar" at a trained model's threshold, so `auto`'s average linkage would lump them
            _, result, clustering, summary = sort(pics, out, settings, algorithm="hdbscan")
            return time.perf_counter() - start, (result, clustering, summary)

        first, (r1, c1, s1) = timed()
        again, (r2, c2, s2) = timed()
        assert s2.embedded == 0 and r2.created == 0, (s2.line(), r2)
        for f in sorted((work / "later").iterdir()):
            shutil.move(str(f), pics / f.name)
        grown, (r3, c3, s3) = timed()
        assert s3.embedded == args.add, s3.line()
        per_picture = first / args.n
        print(f"## incremental sort — {time.strftime('%Y-%m-%d')}, {platform.machine()} ({os.cpu_count()} cores), "
              f"shipped model, --faces {args.faces}\n")
        print(f"`python benchmarks/bench_incremental.py --n {args.n} --add {args.add}` ({args.size} px JPEGs, "
              "40 drawn characters)\n")
        print("| run | seconds | ratio | what it did |\n| --- | --- | --- | --- |")
        print(f"| first sort of {args.n:,} | {first:.1f} | 1 | {s1.embedded} embedded; {c1.summary()} |")
        print(f"| same sort, nothing changed | {again:.2f} | {again / first:.3f} of the first | "
              f"{s2.unchanged} unchanged, clustering reused ({c2.params.get('reused', 0)} rows) |")
        print(f"| after adding {args.add} | {grown:.2f} | {grown / (again + args.add * per_picture):.2f} of "
              f"(unchanged re-run + {args.add} × first run's time per picture = "
              f"{again + args.add * per_picture:.1f} s) | {s3.embedded} embedded, {c3.params.get('placed', 0)} placed "
              f"into existing clusters, {r3.created} links made |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

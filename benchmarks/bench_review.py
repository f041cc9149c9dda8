"""Time each action of `illusort review` on a 10,000-picture sort (issue 27: each under 0.3 s).

    python benchmarks/bench_review.py [--pictures 10000] [--characters 100] [--dim 1000] [--repeat 5]

Builds a sort without a model: IN holds tiny PNG files, its index their vectors (clusters of
random unit vectors written directly, the shipped model's 1,000 dimensions), OUT the links,
the manifest and the index records a `sort` writes (5% of the pictures left in unsorted/).
First times `illusort review OUT --no-browser` as a fresh process, to its first page served.
Then drives the app through Starlette's TestClient (the app's whole request handling, no
socket): the time each action takes to answer (median and worst of --repeat; wall clock and
this process's CPU time, which a machine shared with other work does not inflate), and the
page the browser loads next (the view is collected again after every change).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from illusort.index import Index, Row, default_index_path, remember_output  # noqa: E402
from illusort.manifest import Entry, write_manifest  # noqa: E402
from illusort.layout import META_LAST_SORT as LAST_SORT, sort_key  # noqa: E402

# The smallest valid PNG (1x1, grey): what a thumbnail would read is not what is timed here.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
                    "0000000a49444154789c636800000082008177cd72b60000000049454e44ae426082")


def make_sort(work: Path, pictures: int, characters: int, dim: int, seed: int = 0) -> tuple[Path, Path]:
    """(IN, OUT) of a synthetic sort: symlinks, manifest and index as `illusort sort` leaves them."""
    rng = np.random.default_rng(seed)
    root, out = work / "pics", work / "out"
    (root / "batch").mkdir(parents=True)
    out.mkdir()
    centres = rng.normal(size=(characters, dim))
    label = rng.integers(0, characters, pictures)
    vectors = centres[label] + rng.normal(scale=1.2, size=(pictures, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    unsorted = rng.random(pictures) < 0.05
    entries, model = [], "bench:synthetic"
    with Index(default_index_path(root)) as index:
        for i in range(pictures):
            rel = f"batch/p{i:05d}.png"
            (root / rel).write_bytes(PNG)
            st = os.stat(root / rel)
            index.put(model, rel, st.st_size, st.st_mtime_ns, f"{i:040x}", [Row(rel, 0, None, vectors[i])])
            folder = "unsorted" if unsorted[i] else f"character-{label[i] + 1:03d}"
            (out / folder).mkdir(exist_ok=True)
            os.symlink(root.resolve() / rel, out / folder / f"p{i:05d}.png")
            entries.append(Entry(str(root.resolve() / rel), f"{folder}/p{i:05d}.png"))
        index.commit()
        record = {"out": os.path.realpath(out), "model": "synthetic", "model_id": model, "threshold": 0.2,
                  "mode": "symlink", "faces": "off"}
        index.set_meta(LAST_SORT, record)
        index.set_meta(sort_key(out), record)
        remember_output(index.path, out)
    write_manifest(out, root, "symlink", entries)
    return root, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=int, default=10_000)
    parser.add_argument("--characters", type=int, default=100)
    parser.add_argument("--dim", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from starlette.testclient import TestClient

    from illusort.review import Review, create_app, pair_key

    with tempfile.TemporaryDirectory(prefix="illusort-bench-review-") as scratch:
        os.environ.setdefault("XDG_CACHE_HOME", str(Path(scratch) / "cache"))
        began = time.perf_counter()
        root, out = make_sort(Path(scratch), args.pictures, args.characters, args.dim)
        print(f"made a sort of {args.pictures} pictures, {args.characters} characters, {args.dim}-d vectors "
              f"in {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "illusort.cli", "review", str(out), "--no-browser"],
                                  stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
        url = re.search(r"http://\S+", server.stdout.readline()).group(0)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        opener.open(url, timeout=60).read()
        print(f"illusort review: first page served {time.perf_counter() - began:.2f} s after the command started")
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
        review = Review(out, port=8000)
        http = TestClient(create_app(review), base_url="http://127.0.0.1:8000")
        began = time.perf_counter()
        http.get(f"/?token={review.token}")
        print(f"first page (view collected): {time.perf_counter() - began:.2f} s")
        headers = {"Content-Type": "application/json", "X-Illusort-Token": review.token,
                   "Origin": "http://127.0.0.1:8000"}
        timings: dict[str, list[tuple[float, float]]] = {}

        def clock(what: str, request) -> None:
            began, cpu = time.perf_counter(), time.process_time()
            answer = request()
            assert answer.status_code == 200, answer.text
            timings.setdefault(what, []).append((time.perf_counter() - began, time.process_time() - cpu))

        def timed(what: str, action: str, body: dict, page: str) -> None:
            clock(what, lambda: http.post(f"/action/{action}", content=json.dumps(body), headers=headers))
            clock("  then its page", lambda: http.get(page))

        for k in range(args.repeat):
            view = review.view()
            unsorted = [p.dest for p in view.folders["unsorted"] if p.hint]
            big = view.characters
            timed("accept a suggestion", "accept", {"files": [unsorted[0]]}, "/folder/unsorted")
            timed("not a character", "move", {"files": [unsorted[1]], "to": "not-a-character"}, "/folder/unsorted")
            two = [p.dest for p in view.folders[big[k]][:2]]
            timed("move 2 pictures to a new character", "move", {"files": two, "to": f"New{k}"}, f"/folder/{big[k]}")
            timed("rename a character", "name", {"folder": big[k], "name": f"Named{k}"}, f"/folder/Named{k}")
            timed("merge two characters", "merge", {"into": big[-1 - 2 * k], "others": [big[-2 - 2 * k]]},
                  f"/folder/{big[-1 - 2 * k]}")
            timed("undo the last action", "undo", {}, f"/folder/{big[-2 - 2 * k]}")
            timed("reject a suggestion", "reject", {"files": [unsorted[2]]}, "/folder/unsorted")
            pairs = review.pairs()
            if pairs:
                timed(f"accept a '{pairs[0].kind}' suggestion", "accept", {"pair": pair_key(pairs[0])}, "/folder/same")
        print(f"{'seconds':<40} {'wall median':>12} {'worst':>6} {'CPU median':>11} {'worst':>6}"
              f"   ({args.repeat} runs, {args.pictures} pictures)")
        for what, times in timings.items():
            wall, cpu = zip(*times)
            print(f"{what:<40} {statistics.median(wall):12.3f} {max(wall):6.3f} {statistics.median(cpu):11.3f} "
                  f"{max(cpu):6.3f}")


if __name__ == "__main__":
    main()

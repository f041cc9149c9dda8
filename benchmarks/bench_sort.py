"""A user's first `sort`, phase by phase, beside the floor of what the machine can do, old code
path and new side by side in one run (issue 14).

The folder: --n pictures (default 1,000), JPEG and PNG, 256-2,000 px: icons and busts
blown up (the character fills the picture), large illustrations, and scenes where one or two
characters are pasted small on a textured canvas (the face crops `auto` exists for). The
characters come from ../shared/data (copyrighted: the pictures are made in a temporary folder
and deleted); without it, drawn faces (`illusort.faces.draw_face`) stand in.

Each `sort` runs in a fresh process (start-up counts) through the CLI, timed by phase:
start-up (interpreter, imports, model, scan), decode, face detection, forward, index
writes, clustering, placing. With decoding processes, decode and detection run beside the
rest: their busy seconds are summed over the processes and the main process's waits shown.
Runs: first sort, unchanged re-run, +1% new pictures, each with the old code path
(ILLUSORT_SLOW=all --precision float32 --workers 0: what was the default) and the new one.

The floor: reading and decoding the same pictures at reduced scale where the format allows
(JPEG draft to twice the network's input; PNG has no reduced decoding) plus the bare forward
of the default model at the default precision on pre-decoded batches, same cores.

Also: `cluster` of 1,000 embeddings in a fresh process after the first (old and new), and
`query --no-update` over --query-n synthetic embeddings (read + rank, median of 5).

    python benchmarks/bench_sort.py [--n 1000] [--query-n 100000] [--skip-old]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
DATA = HERE.parent.parent.parent / "shared" / "data"
SOURCES = ("holoen-faces", "uma-musume-icons", "shinycolors-cards", "arknights-avatars", "kancolle-kc3-faces")
OLD_ENV = {"ILLUSORT_SLOW": "all"}
OLD_ARGS = ["--precision", "float32", "--workers", "0"]
PHASES = ("start-up", "decode", "face detection", "forward", "index", "clustering", "placing", "other")


# ---- the folder ----------------------------------------------------------------------------

def characters(count: int, seed: int) -> list[tuple[str, list]]:
    """(name, [source image or drawing parameters]) of `count` characters."""
    rng = random.Random(seed)
    if DATA.is_dir():
        found = []
        for source in SOURCES:
            folder = DATA / source
            if not folder.is_dir():
                continue
            for character in sorted(p for p in folder.iterdir() if p.is_dir()):
                images = sorted(p for p in character.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
                if len(images) >= 4:
                    found.append((f"{source}/{character.name}", images))
        rng.shuffle(found)
        return found[:count]
    out = []
    for k in range(count):
        hue = rng.random()
        import colorsys

        hair = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.6, 0.8))
        iris = tuple(int(255 * c) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1, 0.7, 0.8))
        out.append((f"drawn/{k:02d}", [(hair, iris)]))
    return out


def portrait(source):
    from illusort.faces import draw_face
    from illusort.images import read_image

    if isinstance(source, Path):
        return read_image(source)[0]
    hair, iris = source
    return draw_face(256, hair=hair, iris=iris, background=(250, 248, 240))


def make_picture(kind: str, sources: list, rng: random.Random, seed: int):
    from PIL import Image, ImageFilter

    first = portrait(sources[0])
    if kind == "icon":  # an icon or bust, saved large
        side = rng.randint(256, 1000)
    elif kind == "illustration":  # a large picture the character fills
        side = rng.randint(1000, 2000)
    if kind in ("icon", "illustration"):
        scale = side / max(first.size)
        return first.resize((max(1, round(first.width * scale)), max(1, round(first.height * scale))), Image.BICUBIC)
    width = rng.randint(800, 2000)
    height = int(width * rng.uniform(0.56, 1.4))
    noise = np.random.default_rng(seed).integers(120, 256, (max(2, height // 16), max(2, width // 16), 3), np.uint8)
    canvas = Image.fromarray(noise).resize((width, height), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    for source in sources:
        picture = portrait(source)
        target = rng.uniform(0.15, 0.35) * width
        scale = target / picture.width
        picture = picture.resize((max(8, round(picture.width * scale)), max(8, round(picture.height * scale))),
                                 Image.BICUBIC)
        canvas.paste(picture, (rng.randint(0, max(0, width - picture.width)),
                               rng.randint(0, max(0, height - picture.height))))
    return canvas


def make_folder(root: Path, n: int, seed: int, cast: list, start: int = 0) -> dict[str, str]:
    """n pictures under root (sub-folders of 200), made on every core; returns {relative path:
    character of its first (or only) face}. 45% icons/busts, 25% large illustrations, 30%
    scenes (a fifth of them with two characters); 55% JPEG, 45% PNG. Picture k depends on
    (seed, k) only."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(root, k, seed, cast) for k in range(start, start + n)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        return dict(pool.map(_make_one, jobs, chunksize=16))


def _make_one(job) -> tuple[str, str]:
    root, k, seed, cast = job
    rng = random.Random(f"{seed}:{k}")
    kind = rng.choices(("icon", "illustration", "scene"), (45, 25, 30))[0]
    chosen = [rng.choice(cast)]
    if kind == "scene" and rng.random() < 0.2:
        chosen.append(rng.choice(cast))
    sources = [rng.choice(images) for _, images in chosen]
    image = make_picture(kind, sources, rng, seed * 100_000 + k)
    fmt = "jpg" if rng.random() < 0.55 else "png"
    rel = f"batch{k // 200:02d}/{kind}-{k:05d}.{fmt}"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jpg":
        image.save(root / rel, quality=rng.choice((85, 90, 95)))
    else:
        image.save(root / rel, compress_level=6)
    return rel, chosen[0][0]


# ---- one timed run in a fresh process -----------------------------------------------------

def driver() -> None:
    """Run the CLI with its phases timed (sys.argv: --driver TIMES_DIR CLI-ARGS...)."""
    times_dir, args = Path(sys.argv[2]), sys.argv[3:]
    spawned = float(os.environ["BENCH_SPAWNED"])
    main_pid = os.getpid()
    totals: dict[str, float] = {}
    marks: dict[str, float] = {}

    def add(key, seconds):
        totals[key] = totals.get(key, 0.0) + seconds
        if os.getpid() != main_pid:  # a decoding process: leave its totals for the parent
            (times_dir / f"worker-{os.getpid()}.json").write_text(json.dumps(totals))

    def timed(key, function):
        def wrapper(*a, **k):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*a, **k)
            finally:
                add(key + " cpu", time.process_time() - cpu)
                add(key, time.perf_counter() - start)
        return wrapper

    from illusort import cli, embed, index, workflow, weights

    embed.face_boxes = timed("face detection", embed.face_boxes)
    if hasattr(embed, "load_crops"):
        embed.load_crops = timed("decode+detect", embed.load_crops)
    weights.LoadedModel.forward = timed("forward", weights.LoadedModel.forward)
    for name in ("put", "commit", "remove", "known_digests", "rows_by_digest", "file_stats", "embeddings"):
        setattr(index.Index, name, timed("index", getattr(index.Index, name)))
    workflow.cluster_rows = timed("clustering", workflow.cluster_rows)
    workflow.apply_plan = timed("placing", workflow.apply_plan)
    workflow.assign_folders = timed("placing", workflow.assign_folders)
    workflow.plan_entries = timed("placing", workflow.plan_entries)
    local = embed.local_results

    def local_results(*a, **k):
        marks["loop"] = time.time()
        loader_wait = 0.0
        iterator = local(*a, **k)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            loader_wait += time.perf_counter() - start
            yield batch
        totals["embed loop (batches)"] = loader_wait
        marks["loop end"] = time.time()

    embed.local_results = local_results
    try:
        cli.main.main(args=args, standalone_mode=False)
    except SystemExit as exit_:
        if exit_.code:
            raise
    marks["end"] = time.time()
    marks["spawned"] = spawned
    (times_dir / "main.json").write_text(json.dumps({"totals": totals, "marks": marks}))


def timed_run(args: list[str], env: dict, label: str) -> dict:
    """One CLI run in a new process; its phases in seconds."""
    with tempfile.TemporaryDirectory() as times:
        environment = {**os.environ, **env, "BENCH_SPAWNED": repr(time.time())}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(HERE), "--driver", times, *args], env=environment,
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
        main = json.loads((Path(times) / "main.json").read_text())
        workers = [json.loads(p.read_text()) for p in Path(times).glob("worker-*.json")]
    totals, marks = main["totals"], main["marks"]
    phases = {"wall": wall, "output": done.stdout.strip().splitlines()[-3:] if done.stdout else []}
    loop_start = marks.get("loop", marks["end"])
    phases["start-up"] = loop_start - marks["spawned"]
    in_workers = bool(workers)
    # in decoding processes (single-threaded): CPU seconds, robust to waiting for a core
    decode_detect = sum(w.get("decode+detect cpu", 0) for w in workers) if in_workers else totals.get("decode+detect", 0)
    detect = sum(w.get("face detection cpu", 0) for w in workers) if in_workers else totals.get("face detection", 0)
    phases["face detection"] = detect
    phases["decode"] = decode_detect - detect
    phases["forward"] = totals.get("forward", 0.0)
    phases["index"] = totals.get("index", 0.0)
    phases["clustering"] = totals.get("clustering", 0.0)
    phases["placing"] = totals.get("placing", 0.0)
    phases["workers"] = len(workers)
    phases["waiting for decoding"] = totals.get("embed loop (batches)", 0.0) - phases["forward"] if in_workers else None
    measured_in_main = phases["start-up"] + phases["forward"] + phases["index"] + phases["clustering"] \
        + phases["placing"] + (phases["waiting for decoding"] or 0 if in_workers else decode_detect)
    phases["other"] = max(0.0, wall - measured_in_main)
    print(f"  {label}: {wall:.1f} s", file=sys.stderr)
    return phases


# ---- the floor -----------------------------------------------------------------------------

def floor(root: Path, paths: list[str]) -> dict:
    """Seconds to read and decode every picture at reduced scale, and the bare forward."""
    import torch

    from illusort.embed import as_input, keep_freed_memory, preprocess
    from illusort.images import decode, read_regular_file
    from illusort.weights import load_model, with_precision

    model = with_precision(load_model(None), "auto")
    size = model.input_size
    start = time.perf_counter()
    tensors = []
    for rel in paths:
        image = decode(read_regular_file(root / rel), max_side=2 * size, reduce=False)[0]
        if len(tensors) < 640:
            tensors.append(preprocess(image, size))
    decoding = time.perf_counter() - start
    keep_freed_memory()
    model.net.to(memory_format=torch.channels_last)
    batches = [as_input(torch.stack(tensors[i:i + 32]), model.device) for i in range(0, len(tensors) - 31, 32)]
    out = {"decode": decoding, "precision": model.precision}
    threads = torch.get_num_threads()
    for precision in dict.fromkeys((model.precision, "float32")):
        m = with_precision(model, precision)
        best = []
        for count in sorted({1, threads}):  # the floor: the forward at its best thread count
            torch.set_num_threads(count)
            m.forward(batches[0])
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                for x in batches:
                    m.forward(x)
                runs.append((time.perf_counter() - start) / (32 * len(batches)))
            best.append((statistics.median(runs), count))
        torch.set_num_threads(threads)
        out[f"forward per image {precision}"], out[f"threads {precision}"] = min(best)
    out["forward"] = out[f"forward per image {model.precision}"] * len(paths)
    out["total"] = out["decode"] + out["forward"]
    return out


# ---- clustering and query ------------------------------------------------------------------

CLUSTER_SNIPPET = """
import sys, time, numpy as np
vectors = np.load(sys.argv[1])
start = time.perf_counter()
from illusort.cluster import cluster_embeddings
result = cluster_embeddings(vectors)
print(time.perf_counter() - start, result.n_clusters)
"""


def fresh_cluster(vectors_file: Path, env: dict) -> tuple[float, float]:
    """(whole process wall, clustering call incl. its imports) of the second fresh process."""
    out = None
    for _ in range(2):  # the first may compile (once per install); the second is what users see
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CLUSTER_SNIPPET, str(vectors_file)], env={**os.environ, **env},
                              capture_output=True, text=True, check=True)
        out = (time.perf_counter() - start, float(done.stdout.split()[0]))
    return out


def query_times(n: int, repeats: int = 5) -> dict:
    from illusort.index import Index, Row
    from illusort.query import rank

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, 500)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    reference = vectors[:1] + 0.05 * rng.normal(size=(1, 500)).astype(np.float32)
    reference /= np.linalg.norm(reference)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        with Index(Path(tmp) / "index.db") as index:
            for i in range(n):
                path = f"folder{i % 100}/{i:06d}.jpg"
                index.put("m", path, 1000, 1, f"{i:032x}", [Row(path, 0, None, vectors[i])])
            index.commit()

            def old():
                rows, loaded = index.embeddings("m")
                return [(rows[i].path, s) for i, s in rank(reference, loaded, threshold=0.434)]

            def new():
                keys, loaded = index.search_vectors("m")
                return [(keys[i][0], s) for i, s in rank(reference, loaded, threshold=0.434)]

            start = time.perf_counter()
            index.search_vectors("m")
            out["cache build"] = time.perf_counter() - start
            for name, fn in (("old", old), ("new", new)):
                runs = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    result = fn()
                    runs.append(time.perf_counter() - start)
                out[name], out[f"{name} result"] = statistics.median(runs), result
    out["equal"] = out.pop("old result") == out.pop("new result")
    return out


# ---- accuracy: old and new index rows of the same pictures ----------------------------------

def compare_rows(old_index: Path, new_index: Path, truth: dict) -> dict:
    from sklearn.metrics import adjusted_mutual_info_score

    from illusort.index import Index

    def load(db):
        with Index(db) as index:
            model = [m for m in index.models()][0]
            rows, vectors = index.embeddings(model)
            clustering = max(index.db.execute("SELECT DISTINCT run FROM clusterings").fetchall())[0]
            labels = index.clustering(clustering)
        by_path = {}
        for row, vector in zip(rows, vectors):
            by_path.setdefault(row.path, []).append((row.box, vector, labels.get((row.path, row.face), (-1, 0))[0]))
        return by_path

    old, new = load(old_index), load(new_index)
    common = sorted(set(old) & set(new) & set(truth))
    same_decision = np.mean([(old[p][0][0] is None) == (new[p][0][0] is None) and len(old[p]) == len(new[p])
                             for p in common])
    same_boxes = np.mean([[b for b, _, _ in old[p]] == [b for b, _, _ in new[p]] for p in common])
    cosine = [float(np.dot(old[p][0][1], new[p][0][1])) for p in common if len(old[p]) == len(new[p])
              and [b for b, _, _ in old[p]] == [b for b, _, _ in new[p]]]
    cropped = {"old": np.mean([old[p][0][0] is not None for p in common]),
               "new": np.mean([new[p][0][0] is not None for p in common])}
    true = [truth[p] for p in common]
    ami = {name: adjusted_mutual_info_score(true, [rows[p][0][2] for p in common]) for name, rows in
           (("old", old), ("new", new))}
    return {"pictures": len(common), "same decision": float(same_decision), "same boxes": float(same_boxes),
            "cosine median": float(np.median(cosine)) if cosine else None,
            "cosine min": float(np.min(cosine)) if cosine else None, "cropped": cropped, "ami": ami}


# ---- main ---------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="pictures in the folder")
    parser.add_argument("--query-n", type=int, default=100_000, help="embeddings for the query timing (0: skip)")
    parser.add_argument("--skip-old", action="store_true", help="new code path only")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the floor (decode + forward of every picture): for re-run ratios at large --n")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="illusort-bench-sort-"))
    cache_home = work / "cache"  # a fresh install: nothing compiled yet
    env_common = {"XDG_CACHE_HOME": str(cache_home), "PYTHONWARNINGS": "ignore"}
    try:
        root = work / "pictures"
        cast = characters(40, args.seed)
        what = "../shared/data characters" if DATA.is_dir() else "drawn faces: ../shared/data absent"
        print(f"making {args.n} pictures ({what})",
              file=sys.stderr)
        truth = make_folder(root, args.n, args.seed, cast)
        paths = sorted(truth)
        sizes = [os.path.getsize(root / p) for p in paths]
        fl = None if args.no_floor else floor(root, paths)
        runs = {}
        variants = [("new", {}, [])] if args.skip_old else [("old", OLD_ENV, OLD_ARGS), ("new", {}, [])]

        def sort_args(name, extra):
            return ["sort", str(root), "--out", str(work / f"out-{name}"), "--index", str(work / f"index-{name}.db"),
                    "-q", *extra]

        # once per install: the new code path's first clustering compiles UMAP into the cache
        warm = np.random.default_rng(0).normal(size=(1000, 500)).astype(np.float32)
        warm /= np.linalg.norm(warm, axis=1, keepdims=True)
        np.save(work / "warm.npy", warm)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", CLUSTER_SNIPPET, str(work / "warm.npy")],
                       env={**os.environ, **env_common}, check=True, capture_output=True)
        install_compile = time.perf_counter() - start
        for stage in ("first", "unchanged"):
            for name, env, extra in variants:
                runs[name, stage] = timed_run(sort_args(name, extra), {**env_common, **env}, f"{name} {stage}")
        added = max(1, args.n // 100)
        make_folder(root, added, args.seed + 1, cast, start=args.n)
        for name, env, extra in variants:
            runs[name, "+1%"] = timed_run(sort_args(name, extra), {**env_common, **env}, f"{name} +1%")
        # cluster 1,000 embeddings of this folder in a fresh process (after a first one)
        from illusort.index import Index

        with Index(work / "index-new.db") as index:
            _, vectors = index.embeddings(index.models()[0])
        np.save(work / "vectors.npy", vectors[:1000])
        cluster = {name: fresh_cluster(work / "vectors.npy", {**env_common, **env}) for name, env, _ in variants}
        accuracy = None if args.skip_old else compare_rows(work / "index-old.db", work / "index-new.db", truth)
        query = query_times(args.query_n) if args.query_n else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, fl, runs, variants, cluster, install_compile, accuracy, query, sizes, added)


def report(args, fl, runs, variants, cluster, install_compile, accuracy, query, sizes, added) -> None:
    n = args.n
    print(f"## bench_sort — {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()} ({os.cpu_count()} cores), "
          f"one run\n")
    flags = "".join(f" --{k.replace('_', '-')}" for k in ("skip_old", "no_floor") if getattr(args, k))
    precision = "" if fl is None else f" (precision {fl['precision']})"
    print(f"`python benchmarks/bench_sort.py --n {n} --query-n {args.query_n}{flags}`: {n} pictures "
          f"({'characters of ../shared/data' if DATA.is_dir() else 'drawn faces'}), "
          f"{sum(sizes) / 2**20:.0f} MB, median file {statistics.median(sizes) / 1024:.0f} KB; "
          f"old = `ILLUSORT_SLOW=all --precision float32 --workers 0` (the code path before issue 14), "
          f"new = defaults{precision}.\n")
    if fl is None:
        print("Floor: not measured (--no-floor).\n")
    else:
        print(f"Floor: decoding at reduced scale {fl['decode']:.1f} s + bare forward ({fl['precision']}, "
              f"{1000 * fl['forward per image ' + fl['precision']]:.2f} ms/picture on "
              f"{fl['threads ' + fl['precision']]} thread(s), the faster of 1 and all; float32 "
              f"{1000 * fl['forward per image float32']:.2f} ms on {fl['threads float32']}) {fl['forward']:.1f} s "
              f"= **{fl['total']:.1f} s** ({n / fl['total']:.1f} pictures/s).\n")
    header = ["run", *PHASES, "whole", "pictures/s", "vs floor"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for stage in ("first", "unchanged", "+1%"):
        for name, _, _ in variants:
            r = runs[name, stage]
            cells = [f"{name}: {stage}"] + [f"{r[p]:.1f}" for p in PHASES]
            if stage == "first":
                cells += [f"{r['wall']:.1f}", f"{n / r['wall']:.1f}",
                          "" if fl is None else f"**{fl['total'] / r['wall']:.2f}**"]
            elif stage == "unchanged":
                cells += [f"{r['wall']:.1f}", "", f"{r['wall'] / runs[name, 'first']['wall']:.3f} of the first"]
            else:
                cells += [f"{r['wall']:.1f}", "", f"{added} added"]
            print("| " + " | ".join(cells) + " |")
    print()
    for name, _, _ in variants:
        r = runs[name, "first"]
        if r["workers"]:
            print(f"- {name}: decode and detection ran in {r['workers']} processes beside the forward (their "
                  f"CPU seconds, summed over them); the main process waited {r['waiting for decoding']:.1f} s "
                  f"for batches. Other phases: wall seconds in the main process.")
    print(f"- clustering once per install (first process, compiling UMAP into the cache): {install_compile:.1f} s")
    for name, _, _ in variants:
        whole, call = cluster[name]
        print(f"- {name}: `cluster` of 1,000 embeddings in a fresh process after the first: {call:.2f} s "
              f"(imports included; whole process {whole:.2f} s)")
    if query:
        print(f"- query --no-update over {args.query_n:,} embeddings (read + rank, median of 5): old {query['old']:.3f} s, "
              f"new {query['new']:.4f} s (cache built once after a change: {query['cache build']:.2f} s); "
              f"same results: {query['equal']}")
    if accuracy:
        print(f"- old vs new rows of the same {accuracy['pictures']} pictures: same crop decision "
              f"{100 * accuracy['same decision']:.1f}%, same boxes {100 * accuracy['same boxes']:.1f}%, "
              f"cosine of the first row (same boxes) median {accuracy['cosine median']:.4f}, min "
              f"{accuracy['cosine min']:.4f}; cropped old {100 * accuracy['cropped']['old']:.0f}% / new "
              f"{100 * accuracy['cropped']['new']:.0f}%; AMI of the sort vs the first character: old "
              f"{accuracy['ami']['old']:.3f}, new {accuracy['ami']['new']:.3f}")
    for (name, stage), r in runs.items():
        print(f"  <!-- {name} {stage}: {' / '.join(r['output'])} -->")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--driver":
        driver()
    else:
        main()

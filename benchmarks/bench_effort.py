"""How much work a sort leaves: actions per 100 pictures to reach a clean collection.

A labelled folder (`DIR/<character>/<images>`, or `--label-depth 2` for `DIR/<source>/<character>/`)
is copied into one flat, shuffled folder under neutral names, as a user's download folder looks,
and sorted with the default options. Then:

1. **Static fixes**, what today's typed commands need: each folder belongs to the character
   most of its pictures show; every further folder of that character is 1 merge, every picture
   in another character's folder or in `unsorted/` is 1 move.
2. **A simulated user** who knows the truth works only through what illusort offers, in the
   order illusort ranks it (`illusort.suggest.suggestions`): a merge, split or placing it
   proposes is accepted or rejected (rejections are remembered). What the suggestions never
   reach is finished by hand with the static fixes. Every picture-level decision is 1 action,
   every folder-level decision (merge, split, a group of pictures accepted for one folder) is 1.
   It prints actions per 100 pictures and the AMI after 0, 1, 2, 5 and 10 actions per 100.

    python benchmarks/bench_effort.py ../shared/data --label-depth 2 --characters test
    python benchmarks/bench_effort.py ../shared/data/pokemas-3d-renders
    python benchmarks/bench_effort.py ../shared/data --label-depth 2 --characters test --shift mix

`--baseline` adds the same run with today's (before this benchmark) clustering and suggestions,
side by side. The last line reads `static_fixes_per_100=X actions_per_100=Y` for scripts. The data
is copyrighted: it is copied into a temporary folder (or `--work`, kept for re-runs) and never
into the project.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

SHIFTS = ("none", "gray", "colour", "blur", "mix")
CHECKPOINTS = (0, 1, 2, 5, 10)  # actions per 100 pictures at which the AMI is printed


# ---- the labelled folder, flat ----------------------------------------------------------------

def shifted(image, kind: str, rng: random.Random):
    """The picture as another domain would show it: grayscale (manga pages), a strong colour or
    contrast shift (another palette), or blur and downscale (sketches, small scans)."""
    from PIL import ImageEnhance, ImageFilter, ImageOps

    if kind == "mix":
        kind = rng.choice(("gray", "colour", "blur"))
    if kind == "gray":
        return ImageOps.grayscale(image).convert("RGB")
    if kind == "colour":
        hsv = np.asarray(image.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(int) + rng.randint(40, 215)) % 256
        from PIL import Image
        shifted_image = Image.fromarray(hsv, "HSV").convert("RGB")
        return ImageEnhance.Contrast(shifted_image).enhance(rng.choice((0.5, 1.8)))
    if kind == "blur":
        w, h = image.size
        small = image.resize((max(1, w // 3), max(1, h // 3)))
        return small.filter(ImageFilter.GaussianBlur(1.2)).resize((w, h))
    return image


def flat_folder(data: Path, depth: int, characters: str, shift: str, flat: Path) -> dict[str, str]:
    """Copy the chosen characters' pictures into FLAT under shuffled neutral names (converted to
    another domain with `shift`); returns {name: character}. A kept FLAT is reused as it is."""
    from illusort.evaluate import _card_preview, labelled_images, select_characters

    truth_file = flat.parent / "truth.json"
    if truth_file.is_file():
        return json.loads(truth_file.read_text(encoding="utf-8"))
    items = labelled_images(data, depth=depth)
    if characters != "all":
        items = select_characters(items, _card_preview(None) or {}, characters, "the default model")
    items = sorted(items)
    rng = random.Random(0)
    rng.shuffle(items)
    flat.mkdir(parents=True, exist_ok=True)
    truth = {}
    from PIL import Image
    for k, (rel, label) in enumerate(items):
        if shift == "none":
            name = f"{k:05d}{Path(rel).suffix.lower()}"
            shutil.copyfile(data / rel, flat / name)
        else:
            name = f"{k:05d}.png"
            with Image.open(data / rel) as image:
                shifted(image.convert("RGB"), shift, rng).save(flat / name)
        truth[name] = label
    truth_file.write_text(json.dumps(truth), encoding="utf-8")
    return truth


# ---- what OUT holds, against the truth -----------------------------------------------------------

def folders_of(out: Path) -> dict[str, set[str]]:
    """Picture name -> the folders of OUT it is in ('unsorted' counts as a folder)."""
    from illusort.manifest import read_manifest
    from illusort.naming import folder_of

    where = defaultdict(set)
    for e in read_manifest(out)["entries"]:
        where[Path(e.src).name].add(folder_of(e.dest) or "unsorted")
    return where


def owners(where: dict[str, set[str]], truth: dict[str, str]) -> dict[str, str]:
    """Each character folder's owner: the character most of its pictures show."""
    votes = defaultdict(Counter)
    for name, folders in where.items():
        for folder in folders:
            if folder not in ("unsorted", "not-a-character"):
                votes[folder][truth[name]] += 1
    return {folder: count.most_common(1)[0][0] for folder, count in votes.items()}


def static_fixes(where: dict[str, set[str]], truth: dict[str, str]) -> dict:
    """Today's typed fixes: 1 merge per further folder of a character, 1 move per picture
    outside its character's folders (an extra placement in a wrong folder is 1 move too)."""
    owner = owners(where, truth)
    merges = sum(n - 1 for n in Counter(owner.values()).values())
    moves = 0
    for name in truth:
        folders = where.get(name, {"unsorted"})
        right = [f for f in folders if owner.get(f) == truth[name]]
        moves += len(folders) - len(right)
    sizes = Counter(f for fs in where.values() for f in fs if f in owner)
    largest = max(sizes, key=sizes.get, default=None)
    inside = Counter(truth[n] for n, fs in where.items() if largest in fs)
    return {"merges": merges, "moves": moves, "fixes": merges + moves, "largest": sizes.get(largest, 0),
            "largest_characters": sum(n >= 2 for n in inside.values())}   # characters with 2+ pictures in it


def ami(where: dict[str, set[str]], truth: dict[str, str]) -> float:
    from illusort.metrics import clustering_scores

    names = sorted(truth)
    predicted = [min(where.get(n, {"unsorted"})) for n in names]
    codes = {f: i for i, f in enumerate(sorted(set(predicted) - {"unsorted"}))}
    return clustering_scores([truth[n] for n in names], np.array([codes.get(p, -1) for p in predicted]))["ami"]


def is_clean(where: dict[str, set[str]], truth: dict[str, str]) -> bool:
    """Every character in exactly one folder, alone there, and nothing unsorted."""
    folder_of_character = {}
    for name, folders in where.items():
        if len(folders) != 1 or "unsorted" in folders:
            return False
        folder = next(iter(folders))
        if folder_of_character.setdefault(truth[name], folder) != folder:
            return False
    return len(set(folder_of_character.values())) == len(folder_of_character)


# ---- the simulated user -------------------------------------------------------------------------

PAGE = 20  # place/move suggestions into one folder shown together, as the review page groups them


class Tally:
    """Actions so far and the AMI after each, for the checkpoints."""

    def __init__(self, out: Path, truth: dict[str, str]):
        self.out, self.truth, self.actions, self.curve = out, truth, 0, [(0, ami(folders_of(out), truth))]
        self.answers = Counter()  # (kind, accepted) -> suggestions answered so

    def add(self, n: int) -> None:
        self.actions += n
        self.curve.append((self.actions, ami(folders_of(self.out), self.truth)))

    def at(self, per_100: float) -> float:
        allowed = per_100 * len(self.truth) / 100
        return max((a for n, a in self.curve if n <= allowed), default=self.curve[0][1])


def right(s, where, owner, truth) -> bool:
    """Whether a user who knows the truth says yes to suggestion `s`."""
    if s.kind in ("place", "move"):
        return owner.get(s.folder) == truth[Path(s.files[0]).name]
    if s.kind == "new":   # all one character (one with a folder already is merged later)
        return len({truth[Path(f).name] for f in s.files}) == 1
    if s.kind == "merge":
        return owner.get(s.folder) is not None and owner.get(s.folder) == owner.get(s.other)
    part = Counter(truth[Path(f).name] for f in s.files).most_common(1)[0][0]
    return part != owner.get(s.folder)


def work_through_suggestions(out: Path, truth: dict[str, str], tally: Tally, kinds, give_up: int) -> int:
    """Answer illusort's suggestions in its order until none is left; returns the pages answered.
    A page is the top suggestion, with the other pictures proposed for the same folder (as the
    review page groups them): the wrong ones are rejected one by one, the rest accepted at once."""
    from illusort import suggest

    pages = 0
    while tally.actions < give_up:
        state = suggest.load_state(out)
        queue = suggest.rank(state, kinds)
        if not queue:
            break
        where = folders_of(out)
        owner = owners(where, truth)
        top = queue[0]
        page = [top] if top.kind in ("merge", "split", "new") else \
            [s for s in queue if s.kind in ("place", "move") and s.folder == top.folder][:PAGE]
        yes = [s for s in page if right(s, where, owner, truth)]
        no = [s for s in page if s not in yes]
        for s in page:
            tally.answers[s.kind, s in yes] += 1
        suggest.answer(state, yes, no)
        tally.add((1 if yes else 0) + len(no))   # the page accepted at once, each wrong one refused
        pages += 1
    return pages


def finish_by_hand(out: Path, truth: dict[str, str], tally: Tally) -> None:
    """The static fixes, done through the corrections: merges, then one move per picture."""
    from illusort import corrections

    where = folders_of(out)
    owner = owners(where, truth)
    by_character = defaultdict(list)
    for folder, character in owner.items():
        by_character[character].append(folder)
    sizes = Counter(f for fs in where.values() for f in fs)
    for folders in by_character.values():
        if len(folders) > 1:
            keep, *others = sorted(folders, key=lambda f: -sizes[f])
            for other in others:
                corrections.merge_characters(out, keep, [other])
                tally.add(1)
    where = folders_of(out)
    owner = owners(where, truth)
    home = {c: f for f, c in owner.items()}
    moves = defaultdict(list)
    for name, folders in where.items():
        character = truth[name]
        target = home.get(character) or f"truth-{character.replace('/', '-')}"
        home[character] = target
        for folder in folders:
            if folder != target:
                moves[target].append(f"{folder}/{name}")
    from illusort.manifest import read_manifest

    dest_of = {(Path(e.src).name, e.dest.rsplit('/', 1)[0] if '/' in e.dest else 'unsorted'): e.dest
               for e in read_manifest(out)["entries"]}
    for target, items in moves.items():
        dests = [dest_of[Path(i).name, i.rsplit("/", 1)[0]] for i in items]
        corrections.move_images(out, [Path(d) for d in dests], target)
        tally.add(len(dests))


def run(flat: Path, truth: dict[str, str], work: Path, label: str, cluster_options: dict, kinds) -> dict:
    from illusort.workflow import Settings, sort_folder

    out = work / f"out-{label}"
    if out.exists():
        from illusort.sort import undo_sort
        undo_sort(out)
        shutil.rmtree(out, ignore_errors=True)
    _forget_decisions(flat / ".illusort" / "index.db")
    start = time.perf_counter()
    sort_folder(flat, out, Settings(progress=False), **cluster_options)
    seconds = time.perf_counter() - start
    where = folders_of(out)
    static = static_fixes(where, truth)
    tally = Tally(out, truth)
    started = time.perf_counter()
    give_up = 3 * static["fixes"] + 10
    pages = work_through_suggestions(out, truth, tally, kinds, give_up)
    by_suggestion = tally.actions
    finish_by_hand(out, truth, tally)
    clean = is_clean(folders_of(out), truth)
    n = len(truth)
    return {"label": label, "sort_seconds": seconds, "static": static, "static_per_100": 100 * static["fixes"] / n,
            "actions_per_100": 100 * tally.actions / n, "by_suggestion": by_suggestion, "pages": pages,
            "by_hand": tally.actions - by_suggestion, "clean": clean, "ami": {c: tally.at(c) for c in CHECKPOINTS},
            "user_seconds": time.perf_counter() - started,
            "answers": {f"{kind} {'yes' if yes else 'no'}": n for (kind, yes), n in sorted(tally.answers.items())}}


def _forget_decisions(index: Path) -> None:
    """Each run starts from a first sort: no decision of an earlier run in the index."""
    import sqlite3

    if index.is_file():
        with sqlite3.connect(index) as db:
            for table in ("decisions", "rejections", "dismissed", "journal"):
                try:
                    db.execute(f"DELETE FROM {table}")
                except sqlite3.OperationalError:
                    pass


def table(results: list[dict], truth: dict[str, str]) -> str:
    lines = ["| code | static fixes / 100 | actions / 100 (suggested + by hand) | AMI after 0 · 1 · 2 · 5 · 10 "
             "actions / 100 | largest folder: pictures (characters with 2+ there) | sort time |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        s = r["static"]
        lines.append(f"| {r['label']} | {r['static_per_100']:.1f} ({s['merges']} merges, {s['moves']} moves) | "
                     f"**{r['actions_per_100']:.1f}** ({r['by_suggestion']} + {r['by_hand']}) | "
                     + " · ".join(f"{r['ami'][c]:.2f}" for c in CHECKPOINTS)
                     + f" | {s['largest']} ({s['largest_characters']}) | {r['sort_seconds']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="labelled folder: DIR/<character>/<images>")
    parser.add_argument("--label-depth", type=int, default=1, help="2 for DIR/<source>/<character>/")
    parser.add_argument("--characters", default="all", choices=["all", "train", "dev", "test"],
                        help="one part of the default model's split (test: characters it never trained on)")
    parser.add_argument("--shift", default="none", choices=SHIFTS, help="show the pictures as another domain would")
    parser.add_argument("--baseline", action="store_true", help="also run today's clustering and suggestions")
    parser.add_argument("--work", type=Path, default=None, help="keep the flat copy and its index here for re-runs")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found: this benchmark needs a labelled folder (e.g. ../shared/data; absent here, "
                 "so nothing measured)")
    work = args.work or Path(tempfile.mkdtemp(prefix="illusort-effort-"))
    try:
        flat = work / "pictures"
        truth = flat_folder(args.data, args.label_depth, args.characters, args.shift, flat)
        print(f"{len(truth)} pictures of {len(set(truth.values()))} characters from {args.data} "
              f"(characters: {args.characters}, shift: {args.shift})", file=sys.stderr)
        runs = [("new", {}, KINDS_NEW)]
        if args.baseline:
            runs.insert(0, ("today", BASELINE_OPTIONS, ()))  # today: every fix typed, one per picture or merge
        results = []
        for label, options, kinds in runs:
            results.append(run(flat, truth, work, label, options, kinds))
            print(json.dumps(results[-1], default=str), file=sys.stderr)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results, truth))
    last = results[-1]
    print(f"static_fixes_per_100={last['static_per_100']:.1f} actions_per_100={last['actions_per_100']:.1f}")


KINDS_NEW = ("place", "move", "new", "merge", "split")
BASELINE_OPTIONS = {"fit_cut": False, "min_cluster_size": 3}   # today: the card's threshold, 3 pictures up


if __name__ == "__main__":
    main()

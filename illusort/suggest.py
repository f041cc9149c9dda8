"""What illusort proposes to fix in a sort, ranked by how sure it is, and taking or refusing it.

Five kinds, one queue (`suggestions`), most confident first:
- `place`: an unsorted picture into the character it is most like;
- `move`: a picture more like another character than the rest of its own folder;
- `new`: unsorted pictures alike enough to be one new character;
- `merge`: two folders that look like one character ("same character?");
- `split`: a folder whose pictures form two tight groups that are less alike.

Similarities are average-linkage ones (the mean cosine similarity to a folder's members), so
one scale serves every kind: the confidence is the margin to the cut the last sort into OUT
used (the model's threshold, fitted to the collection). Each kind is offered only where it was
more often right than wrong on held-out characters (the BARS below; benchmarks/RESULTS.md,
"Actions to a clean collection"): a wrong suggestion costs the user an action.

`accept` applies suggestions through the same corrections as `name` / `merge` / `move`
(journaled, kept by later sorts, undone by `undo --last`); `reject` remembers a no ("not this
character" for a picture; a dismissed merge, split or group), so it is never proposed again.
Reading the queue changes nothing and needs no torch, like `status`.
"""
from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from itertools import count
from pathlib import Path

import numpy as np

from .errors import InputError
from .index import read_rejections
from .index import Index, default_index_path
from .layout import NOT_A_CHARACTER, UNSORTED, queue_key
from .naming import folder_of
from .status import find_sort, in_out, last_sort, model_key, open_index, relative, rows_of
from .terminal import command

KINDS = ("place", "move", "new", "merge", "split")
# Where each kind is offered, as a margin to the sort's cut: an unsorted picture this much above
# it; a move this much more like the other folder than its own; unsorted pictures this much more
# alike than the cut; two folders at least as alike as it (average linkage joins those, so this
# comes from corrections and new groups); halves this much tighter than their link. Below these,
# held-out characters (benchmarks/bench_effort.py) answered no more often than yes.
BARS = {"place": 0.05, "move": 0.075, "new": 0.075, "merge": 0.0, "split": 0.15}
SPLIT_MIN = 4         # folders smaller than this are never proposed for a split
DEFAULT_THRESHOLD = 0.5
NUMBERED = re.compile(r"character-(\d+)")


@dataclass
class Suggestion:
    number: int                 # what `status` shows and `accept N` takes: kept while the suggestion stands
    kind: str                   # place | move | merge | split
    confidence: float           # margin to the model's threshold: higher is surer
    similarity: float           # the average-linkage similarity it rests on
    folder: str                 # place/move/new: the target; merge: the folder kept; split: the folder split
    other: str | None = None    # move: the folder it leaves; merge: the folder merged in; split: the new folder
    files: list[str] = field(default_factory=list)  # OUT-relative pictures it moves (none for a merge)
    command: str = ""           # the illusort command that accepts it

    @property
    def key(self) -> str:
        """What a rejection remembers for a merge, split or new group (the folders, the pictures)."""
        if self.kind == "merge":
            return "merge\0" + "\0".join(sorted((self.folder, self.other)))
        digest = hashlib.sha1("\0".join(sorted(self.files)).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return f"{self.kind}\0{'' if self.kind == 'new' else self.folder}\0{digest}"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SortState:
    """OUT as suggestions see it: its manifest, the sorted folder, one vector per entry."""
    out: Path
    root: Path
    manifest: dict
    threshold: float
    vectors: dict[str, np.ndarray]          # dest -> the vectors (faces) that placed it
    rejected: dict[str, set[str]]           # dest -> the characters the user said it is not
    dismissed: set[str]
    numbers: dict = field(default_factory=dict)  # the numbers shown since the last answer (`queue_numbers`)

    def folders(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for e in self.manifest["entries"]:
            found.setdefault(folder_of(e.dest) or UNSORTED, []).append(e.dest)
        return found


def load_state(out: Path, index_path: Path | None = None) -> SortState:
    out, manifest = find_sort(out, "status")
    manifest = in_out(out, manifest)   # a picture deleted from OUT by hand is not suggested
    root = Path(manifest["source"])
    db = open_index(root, index_path)
    try:
        model = model_key(db, out)
        rows = rows_of(db, model, vectors=True)
        record = last_sort(db, out)  # the cut the sort used (fitted to this collection), else the model's
        threshold = record.get("cut") or record.get("threshold")
        rejected, dismissed = read_rejections(db) if db is not None else ({}, set())
        numbers = queue_numbers(db, out, record)
    finally:
        if db is not None:
            db.close()
    vectors, not_these = {}, {}
    for e in manifest["entries"]:
        rel = relative(e, manifest["source"])
        found = [rows[rel, f][1] for f in e.faces if (rel, f) in rows]
        if found:
            vectors[e.dest] = np.stack(found)
        said = set().union(*(rejected.get((rel, f), set()) for f in e.faces))
        if said:
            not_these[e.dest] = said
    return SortState(Path(out), root, manifest, DEFAULT_THRESHOLD if threshold is None else float(threshold),
                     vectors, not_these, dismissed, numbers)


def queue_numbers(db, out: Path, record: dict) -> dict:
    """The numbers given at the last answer since this sort: {"next": N, "numbers": {key: n}}.
    A suggestion keeps its number while it stands, so `accept OUT 2` after `reject OUT 1` is
    still the second one `status` showed; new suggestions take numbers never used."""
    fresh = {"sort": record.get("time")}
    try:
        row = db.execute("SELECT value FROM meta WHERE key=?", (queue_key(out),)).fetchone() if db else None
        kept = json.loads(row[0]) if row else {}
    except (sqlite3.Error, ValueError):
        return fresh
    fits = isinstance(kept, dict) and kept.get("sort") == fresh["sort"] and isinstance(kept.get("numbers"), dict)
    return kept if fits and isinstance(kept.get("next"), int) else fresh


def remember_numbers(state: SortState, queue: list[Suggestion], index_path: Path | None = None) -> None:
    """Keep the numbers of `queue` for the commands after this answer (see `queue_numbers`)."""
    index = Index(Path(index_path) if index_path else default_index_path(state.root))
    try:
        after = max([state.numbers.get("next", 1), *(s.number + 1 for s in queue)])
        index.set_meta(queue_key(state.out), {"sort": state.numbers.get("sort"), "next": after,
                                              "numbers": {s.key: s.number for s in queue}})
    finally:
        index.close()


def suggestions(out: Path, index_path: Path | None = None, kinds=KINDS) -> list[Suggestion]:
    """The ranked queue of fixes for OUT (see the module's docstring)."""
    return rank(load_state(out, index_path), kinds)


def rank(state: SortState, kinds=KINDS) -> list[Suggestion]:
    folders = {f: [d for d in dests if d in state.vectors] for f, dests in state.folders().items()}
    characters = sorted(f for f, dests in folders.items() if dests and f not in (UNSORTED, NOT_A_CHARACTER))
    numbers = iter(range(next_free_number(folders), 1_000_000))
    found: list[Suggestion] = []
    if characters:
        # each member by its first vector (the face that placed it); folder sums give mean similarities
        sums = np.stack([np.sum([state.vectors[d][0] for d in folders[f]], axis=0) for f in characters])
        sizes = np.array([len(folders[f]) for f in characters], float)
        if "place" in kinds:
            found += _places(state, folders.get(UNSORTED, []), characters, sums, sizes)
        if "move" in kinds:
            found += _moves(state, folders, characters, sums, sizes)
        if "merge" in kinds:
            found += _merges(state, characters, sums, sizes)
        if "split" in kinds:
            found += _splits(state, folders, characters, numbers)
    if "new" in kinds:
        found += _new_characters(state, folders.get(UNSORTED, []), numbers)
    found = [s for s in found if not (s.kind in ("merge", "split", "new") and s.key in state.dismissed)]
    found.sort(key=lambda s: (-s.confidence, s.kind, s.folder, s.files))
    kept, fresh = state.numbers.get("numbers", {}), count(state.numbers.get("next", 1))
    for s in found:
        s.number = kept[s.key] if isinstance(kept.get(s.key), int) else next(fresh)
        s.command = command_for(state.out, s)
    return found


def _not(state: SortState, dest: str, folder: str) -> bool:
    """The user said this picture is not `folder`'s character."""
    return folder in state.rejected.get(dest, ())


def _places(state, unsorted, characters, sums, sizes) -> list[Suggestion]:
    found = []
    for dest in unsorted:
        sims = (state.vectors[dest] @ sums.T / sizes).max(axis=0)
        for best in np.argsort(-sims)[:3]:  # the likeliest folder it was not rejected from
            margin = float(sims[best] - state.threshold)
            if margin < BARS["place"]:
                break
            if not _not(state, dest, characters[best]):
                found.append(Suggestion(0, "place", margin, float(sims[best]), characters[best], None, [dest]))
                break
    return found


def _moves(state, folders, characters, sums, sizes) -> list[Suggestion]:
    found = []
    for i, folder in enumerate(characters):
        if sizes[i] < 2:
            continue
        members = np.stack([state.vectors[d][0] for d in folders[folder]])
        sims = members @ sums.T / sizes
        own = (members @ sums[i] - (members * members).sum(axis=1)) / (sizes[i] - 1)
        sims[:, i] = -np.inf
        best = sims.argmax(axis=1)
        top = sims[np.arange(len(best)), best]
        for j in np.flatnonzero((top >= state.threshold) & (top - own >= BARS["move"])):  # the few candidates
            dest, b = folders[folder][j], best[j]
            if not _not(state, dest, characters[b]):
                found.append(Suggestion(0, "move", float(top[j] - own[j]), float(top[j]), characters[b], folder, [dest]))
    return found


def _merges(state, characters, sums, sizes) -> list[Suggestion]:
    means = sums / sizes[:, None]
    sims = means @ means.T
    found = []
    for a, b in zip(*np.nonzero(np.triu(sims >= state.threshold + BARS["merge"], 1))):
        keep, gone = sorted((characters[a], characters[b]),
                            key=lambda f: (bool(NUMBERED.fullmatch(f)), -sizes[characters.index(f)], f))
        found.append(Suggestion(0, "merge", float(sims[a, b] - state.threshold), float(sims[a, b]), keep, gone))
    return found


def _mean_inner(vectors: np.ndarray) -> float:
    """Mean similarity of distinct pairs (average linkage inside a group)."""
    n = len(vectors)
    total = vectors.sum(axis=0)
    return float((total @ total - (vectors * vectors).sum()) / (n * (n - 1)))


def _splits(state, folders, characters, numbers) -> list[Suggestion]:
    """Folders whose two average-linkage halves are each much tighter than the link between them."""
    found = []
    for folder in characters:
        dests = folders[folder]
        if len(dests) < SPLIT_MIN:
            continue
        vectors = np.stack([state.vectors[d][0] for d in dests]).astype(np.float64)
        key = (tuple(dests), hashlib.sha1(vectors.tobytes()).digest())
        if key not in _halves:  # a folder no correction changed is not split again (the review page asks often)
            if len(_halves) > 10_000:
                _halves.clear()
            _halves[key] = _halve(vectors)
        if _halves[key] is None:
            continue
        part, gap, cross = _halves[key]
        if gap >= BARS["split"]:
            found.append(Suggestion(0, "split", gap, cross, folder, f"character-{next(numbers):03d}",
                                    sorted(d for d, p in zip(dests, part) if p)))
    return found


_halves: dict = {}  # (a folder's pictures, their vectors' digest) -> `_halve` of them


def _halve(vectors: np.ndarray):
    """(the smaller average-linkage half, as a mask; the gap between the halves' own similarity
    and their link; that link), or None when the folder does not fall in two."""
    from scipy.cluster.hierarchy import fcluster, linkage

    halves = fcluster(linkage(vectors, "average", metric="cosine"), 2, "maxclust")
    if len(set(halves)) < 2:
        return None
    part = halves == np.bincount(halves)[1:].argmin() + 1   # the smaller half is split off
    if part.sum() < 2:
        return None
    cross = float((vectors[part] @ vectors[~part].T).mean())
    return part, min(_mean_inner(vectors[part]), _mean_inner(vectors[~part])) - cross, cross


def _new_characters(state, unsorted, numbers) -> list[Suggestion]:
    """Unsorted pictures that average linkage groups at the sort's cut, much more alike than it."""
    if len(unsorted) < 2:
        return []
    from scipy.cluster.hierarchy import fcluster, linkage

    vectors = np.stack([state.vectors[d][0] for d in unsorted]).astype(np.float64)
    labels = fcluster(linkage(vectors, "average", metric="cosine"), 1 - state.threshold, "distance")
    found = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        inner = _mean_inner(vectors[members])
        if inner - state.threshold >= BARS["new"]:
            found.append(Suggestion(0, "new", inner - state.threshold, inner, f"character-{next(numbers):03d}", None,
                                    sorted(unsorted[i] for i in members)))
    return found


def next_free_number(folders) -> int:
    """The number after the highest `character-NNN` folder (new folders never reuse a number)."""
    return max((int(m.group(1)) for f in folders if (m := NUMBERED.fullmatch(f))), default=0) + 1


def command_for(out: Path, s: Suggestion) -> str:
    """The typed command that does what accepting `s` does."""
    if s.kind == "merge":
        return command("illusort", "merge", out, s.folder, s.other)
    return command("illusort", "move", out, *s.files, "--to", s.other if s.kind == "split" else s.folder)


# ---- answering them ----------------------------------------------------------------------------

def chosen(queue: list[Suggestion], numbers=None, above: float | None = None) -> list[Suggestion]:
    if numbers:
        numbers = list(dict.fromkeys(numbers))   # `accept OUT 1 1` is one answer
        by_number = {s.number: s for s in queue}
        missing = [n for n in numbers if n not in by_number]
        if missing:
            raise InputError(f"no suggestion {missing[0]} now (answered, or changed by a later correction); "
                             "`illusort status OUT` lists them")
        return [by_number[n] for n in numbers]
    if above is None:
        raise InputError("say which suggestions: their numbers, or --all-above SIMILARITY")
    return [s for s in queue if s.kind != "split" and s.similarity >= above]


def accept(out: Path, numbers=None, above: float | None = None, index_path: Path | None = None,
           source: Path | None = None) -> list[Suggestion]:
    """Take suggestions by number, or every place/move/new/merge at `above` similarity or more."""
    state = load_state(out, index_path)
    queue = rank(state)
    taken = chosen(queue, numbers, above)
    remember_numbers(state, queue, index_path)
    answer(state, yes=taken, index_path=index_path, source=source)
    return taken


def reject(out: Path, numbers, index_path: Path | None = None, source: Path | None = None) -> list[Suggestion]:
    """Say no to suggestions by number."""
    state = load_state(out, index_path)
    queue = rank(state)
    taken = chosen(queue, numbers)
    remember_numbers(state, queue, index_path)
    answer(state, no=taken, index_path=index_path, source=source)
    return taken


def answer(state: SortState, yes=(), no=(), index_path: Path | None = None, source: Path | None = None) -> None:
    """Apply answers to suggestions of `state`'s queue as one correction (one step of `undo
    --last`). Yes: the pictures go to their folders, split parts to their new folders, merged
    folders (chains followed: B into A and C into B put C in A) into the one kept. No: a placed
    or moved picture is remembered as not that character; a merge keeps the two folders apart
    in later sorts; a merge, split or new group is not proposed again."""
    from . import corrections

    into: dict[str, str] = {}
    for s in (s for s in yes if s.kind == "merge"):
        keep, gone = final(into, s.folder), final(into, s.other)
        if keep != gone:
            into[gone] = keep
    targets = {dest: final(into, s.other if s.kind == "split" else s.folder)
               for s in yes if s.kind != "merge" for dest in s.files}
    folders = state.folders()
    for gone in into:
        for dest in folders.get(gone, []):
            targets.setdefault(dest, final(into, gone))
    moved = sum(len(s.files) for s in yes if s.kind != "merge")
    what = "; ".join([f"{gone} merged into {final(into, gone)}" for gone in into]
                     + ([f"{moved} picture{'s' * (moved != 1)} placed"] if moved else [])
                     + ([f"{plural_of(no)} rejected"] if no else []))
    corrections.answer(state.out, targets, sorted(set(into.values())),
                       {s.files[0]: s.folder for s in no if s.kind in ("place", "move")},
                       [s.key for s in no if s.kind in ("merge", "split", "new")],
                       [(s.folder, s.other) for s in no if s.kind == "merge"], what or "nothing", index_path, source)


def final(into: dict[str, str], folder: str) -> str:
    while folder in into:
        folder = into[folder]
    return folder


def plural_of(taken: list) -> str:
    return f"{len(taken)} suggestion" + ("" if len(taken) == 1 else "s")

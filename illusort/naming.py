"""Folder names for a sort, as pure functions (no file is touched here): which cluster becomes
which folder of OUT, what the user's decisions and earlier runs keep, and which names are
allowed. Unit-tested on their own (tests/test_naming.py).
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .errors import SortError
from .manifest import Entry
from .layout import NOT_A_CHARACTER, OWN_NAMES, UNSORTED
from .safepath import MAX_NAME_BYTES, bad_name



# A cluster takes the name the user gave to its members when they are at least this share
# of it: a named character gains the new images that cluster with it, while one image moved
# into a large unnamed cluster does not rename that cluster.
ADOPT_SHARE = 0.25


def folder_names(paths: list[str], labels: np.ndarray, previous: dict[str, set[str]]) -> dict[int, str]:
    """A folder name per cluster label. Clusters that overlap a folder of the previous sort
    keep its name (largest overlaps first, one-to-one); the rest get the next free number."""
    members = defaultdict(set)
    for path, label in zip(paths, labels):
        if label >= 0:
            members[int(label)].add(path)
    overlaps = sorted(((len(m & previous_members), label, name)
                       for label, m in members.items() for name, previous_members in previous.items()
                       if name != UNSORTED and m & previous_members), reverse=True)
    names, taken = {}, set()
    for _, label, name in overlaps:
        if label not in names and name not in taken:
            names[label], taken = name, taken | {name}
    numbers = [int(n.rsplit("-", 1)[1]) for n in previous if n.startswith("character-") and n[10:].isdigit()]
    next_number = max(numbers, default=0) + 1
    for label in sorted(members, key=lambda lab: (-len(members[lab]), min(members[lab]))):
        if label not in names:
            names[label] = f"character-{next_number:03d}"
            next_number += 1
    names[-1] = UNSORTED
    return names


def assign_folders(keys: list[tuple[str, int]], labels: np.ndarray, decided: dict, known: dict[int, str],
                   previous: dict[str, set[str]], rejected: dict | None = None) -> list[str]:
    """The folder of each index row (path, face): the user's decision (`decided`, by key), else
    a known character it matched (`known`, by row: `--known` references, or the pictures the
    user placed), else the name its cluster takes from members decided or matched
    (ADOPT_SHARE, and more than the members said not to be it), else a numbered folder kept
    stable across runs (`folder_names`), else
    'unsorted' (cluster label -1). A row never goes to a folder the user said it is not
    (`rejected`, by key: a cannot-link); it is unsorted instead."""
    chosen = [decided.get(key) for key in keys]
    for i, name in known.items():
        chosen[i] = chosen[i] or name
    members = defaultdict(list)
    for i, label in enumerate(labels):
        if label >= 0:
            members[int(label)].append(i)
    rejected = rejected or {}
    adopted = {}
    for label, rows in members.items():
        votes = Counter(chosen[i] for i in rows if chosen[i] and chosen[i] != NOT_A_CHARACTER)
        if votes:
            name, count = votes.most_common(1)[0]
            against = sum(name in rejected.get(keys[i], ()) for i in rows)
            if count >= ADOPT_SHARE * len(rows) and count > against:
                adopted[label] = name
    taken = set(adopted.values())  # a name decided for a few pictures stays its cluster's too
    numbered = [label if label >= 0 and label not in adopted else -1 for label in labels]
    names = folder_names([k[0] for k in keys], np.asarray(numbered),
                         {n: m for n, m in previous.items() if n not in taken})
    folders = [chosen[i] or adopted.get(int(label)) or names[numbered[i]] for i, label in enumerate(labels)]
    return [UNSORTED if folder in rejected.get(key, ()) and decided.get(key) != folder else folder
            for key, folder in zip(keys, folders)]


def plan_entries(root: Path, paths: list[str], folders: list[str], faces: list[int] | None = None,
                 one_folder: bool = False) -> list[Entry]:
    """Where each file goes ('' = OUT itself), from one (path, folder[, face]) per index row.
    An image with several faces in several folders goes to each, unless `one_folder` (a move:
    a file can be in one place only), where it goes to its largest face's folder (faces are
    numbered largest first). Same basenames within one folder get a short hash of their
    source path."""
    wanted = defaultdict(list)
    for path, folder, face in zip(paths, folders, faces or [0] * len(paths)):
        wanted[folder, path].append(face)
    if one_folder:
        best = {}
        for (folder, path), found in wanted.items():
            rank = (folder == UNSORTED, min(found))
            if path not in best or rank < best[path][0]:
                best[path] = (rank, folder)
        wanted = {(folder, path): found for (folder, path), found in wanted.items() if best[path][1] == folder}
    # An image that reached a character folder through one face is not also 'unsorted'.
    placed = {path for folder, path in wanted if folder != UNSORTED}
    entries, used = [], set()
    for folder, path in sorted(wanted):
        if folder == UNSORTED and path in placed:
            continue
        name = Path(path).name
        if (folder, name) in used or len(os.fsencode(name)) > MAX_NAME_BYTES:
            name = tagged_name(name, hashlib.sha1(path.encode('utf-8', 'surrogateescape')).hexdigest()[:8])
        used.add((folder, name))
        entries.append(Entry(str(Path(root).resolve() / path), f"{folder}/{name}" if folder else name, "planned",
                             tuple(sorted(wanted[folder, path]))))
    return entries


def tagged_name(name: str, tag: str) -> str:
    """`stem~tag.ext`, the stem shortened (whole characters) so the name fits `MAX_NAME_BYTES`:
    a 255-byte source name plus a tag would exceed the file-system limit (ENAMETOOLONG)."""
    stem, suffix = os.path.splitext(name)
    while stem and len(os.fsencode(f"{stem}~{tag}{suffix}")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return f"{stem}~{tag}{suffix}"


def folder_of(dest: str) -> str:
    return dest.rsplit("/", 1)[0] if "/" in dest else ""


def check_folder_name(name: str) -> str:
    """A character name usable as one folder of OUT."""
    if bad_name(name):
        raise SortError(f"{name!r} cannot be a folder name (not blank, no '/', no leading '.', not {', '.join(OWN_NAMES)}, "
                        f"at most {MAX_NAME_BYTES} bytes)")
    return name


def previous_folders(manifest: dict | None) -> dict[str, set[str]]:
    """Folder name -> source paths (relative to the sorted folder) of the previous sort."""
    folders = defaultdict(set)
    if manifest:
        source = Path(manifest["source"])
        for e in manifest["entries"]:
            try:
                folders[folder_of(e.dest)].add(Path(e.src).relative_to(source).as_posix())
            except ValueError:
                continue
    return folders

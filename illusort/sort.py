"""Turning clusters into per-character folders, safely: plan, then apply, then (maybe) undo.

Rules that protect the user's files:
- nothing is ever overwritten (every link/copy is created with a no-clobber primitive);
- `OUT/.illusort-sort.json` (the manifest) lists every entry this tool made, written
  atomically before and after changes, so undo and re-runs only touch what it made;
- a copy or hard link is removed only while its source still exists (never the last copy);
- a move is journaled (pending -> done), and refused across file systems; so is a move of an
  entry to another folder of OUT (`relocate`: name, merge, move);
- every path is checked on its real path at use (`safepath`): nothing outside OUT and IN is
  ever written, moved or deleted, whatever a manifest or a planted link says.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import safepath
from .errors import IllusortError
from .index import default_index_path, exclusive_lock, records_output
from .safepath import Unsafe, dest_path, is_regular, same_file, source_path

MANIFEST = ".illusort-sort.json"
LOCK = ".illusort-sort.lock"
REVIEW_FILES = ("report.html", ".illusort-thumbs", ".illusort-report.json")  # `illusort report`
# What a run killed before its first manifest was in place can leave in OUT, and the review
# page: not the user's.
OWN_FILES = {LOCK, MANIFEST + ".tmp", *REVIEW_FILES, ".report.html.tmp", ".illusort-report.json.tmp"}
UNSORTED = "unsorted"
NOT_A_CHARACTER = "not-a-character"  # where images the user marked so are kept (never deleted)
# A cluster takes the name the user gave to its members when they are at least this share
# of it: a named character gains the new images that cluster with it, while one image moved
# into a large unnamed cluster does not rename that cluster.
ADOPT_SHARE = 0.25
MODES = ("symlink", "copy", "hardlink", "move")
PARTIAL = ".illusort-partial"
# Longest name in OUT: 255 bytes (NAME_MAX of common file systems) less what turns `name`
# into the temporary `.name.illusort-partial` of a copy in progress.
MAX_NAME_BYTES = 255 - 1 - len(PARTIAL)


class SortError(IllusortError, ValueError):
    """A sort that cannot be done as asked; the message says why and what to do."""


class SourceUnavailable(Exception):
    """A file that vanished or became unreadable after it was embedded: that one file is
    skipped and reported; the rest of the sort goes on."""


@dataclass
class Entry:
    src: str          # absolute path of the user's file
    dest: str         # path inside OUT, '/'-separated, e.g. 'character-003/a.png'
    state: str = "done"  # 'pending' while a move is in flight
    faces: tuple = (0,)  # which faces of the image put it in this folder (index rows)
    moved_from: str | None = None  # a pending move inside OUT (`relocate`): its dest before

    def to_json(self):
        data = {"src": self.src, "dest": self.dest, "state": self.state, "faces": list(self.faces)}
        return data if self.moved_from is None else {**data, "from": self.moved_from}


# ---- planning --------------------------------------------------------------------------------

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
                   previous: dict[str, set[str]]) -> list[str]:
    """The folder of each index row (path, face): the user's decision (`decided`, by key), else
    a known character it matched (`known`, by row), else the name its cluster takes from
    decided members (ADOPT_SHARE), else a numbered folder kept stable across runs
    (`folder_names`), else 'unsorted' (cluster label -1)."""
    chosen = [decided.get(key) for key in keys]
    for i, name in known.items():
        chosen[i] = chosen[i] or name
    members = defaultdict(list)
    for i, label in enumerate(labels):
        if label >= 0:
            members[int(label)].append(i)
    adopted = {}
    for label, rows in members.items():
        votes = Counter(decided[keys[i]] for i in rows if keys[i] in decided)
        if votes:
            name, count = votes.most_common(1)[0]
            if count >= ADOPT_SHARE * len(rows):
                adopted[label] = name
    taken = set(adopted.values()) | {c for c in chosen if c}
    numbered = [label if label >= 0 and label not in adopted else -1 for label in labels]
    names = folder_names([k[0] for k in keys], np.asarray(numbered),
                         {n: m for n, m in previous.items() if n not in taken})
    return [chosen[i] or adopted.get(int(label)) or names[numbered[i]] for i, label in enumerate(labels)]


def plan_entries(root: Path, paths: list[str], folders: list[str], faces: list[int] | None = None) -> list[Entry]:
    """Where each file goes ('' = OUT itself), from one (path, folder[, face]) per index row.
    An image with several faces in several folders goes to each. Same basenames within one
    folder get a short hash of their source path."""
    wanted = defaultdict(list)
    for path, folder, face in zip(paths, folders, faces or [0] * len(paths)):
        wanted[folder, path].append(face)
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


# ---- manifest --------------------------------------------------------------------------------

def read_manifest(out: Path) -> dict | None:
    """OUT's manifest, its entries checked as text (`checked_entry`); each is checked again on
    real paths where it is used. None when OUT holds none."""
    path = Path(out) / MANIFEST
    raw = safepath.read_own(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode("utf-8", "surrogateescape"))
        if data["mode"] not in MODES or not isinstance(data["source"], str):
            raise ValueError(f"mode {data['mode']!r}")
        data["entries"] = [checked_entry(e, data["source"]) for e in data["entries"]]
        return data
    except Unsafe:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SortError(f"{path} is damaged ({error}); move it away to start a fresh sort in {out}") from None


def require_manifest(out: Path, hint: str = "run illusort sort first") -> dict:
    """OUT's manifest; a one-line `SortError` when OUT holds no sort."""
    manifest = read_manifest(out)
    if manifest is None:
        raise SortError(f"{out} holds no illusort sort (no {MANIFEST}); {hint}")
    return manifest


def write_manifest(out: Path, source: Path, mode: str, entries: list[Entry]) -> None:
    data = {"version": 1, "source": str(Path(source).resolve()), "mode": mode, "updated": time.strftime("%FT%T%z"),
            "entries": [e.to_json() for e in entries]}
    text = json.dumps(data, indent=1, ensure_ascii=False)
    safepath.write_own(Path(out) / MANIFEST, text.encode("utf-8", "surrogateescape"))  # the old one stays on failure


def save_manifest(out: Path, source: Path, mode: str, entries: list[Entry]) -> None:
    """`write_manifest` during a sort: a failure (disk full) is a one-line `SortError`. The
    manifest on disk is then the previous one, whose 'pending' entries the next run settles."""
    try:
        write_manifest(out, source, mode, entries)
    except OSError as error:
        raise SortError(f"cannot write {Path(out) / MANIFEST}: {error.strerror or error}; "
                        "fix that and run the same command again") from None


def checked_entry(e: dict, source: str) -> Entry:
    """A manifest entry whose text stays inside OUT and the sorted folder (real paths are
    checked where it is used: `safepath.dest_path`, `safepath.source_path`)."""
    moved_from = e.get("from")
    if moved_from is not None:
        safepath.check_manifest_dest(moved_from)
    state = e.get("state", "done")
    if state not in ("done", "pending", "planned"):
        raise ValueError(f"state {state!r}")
    dest = safepath.check_manifest_dest(e["dest"])
    return Entry(safepath.check_manifest_source(e["src"], source), dest, state,
                 tuple(int(f) for f in e.get("faces", (0,))), moved_from)


def confirm_source(out: Path, manifest: dict, given: Path | None = None, index_path: Path | None = None) -> Path:
    """The sorted folder (IN) of OUT's sort, for commands that get no IN (undo, name, merge,
    move, report): undo and corrections write there, so the manifest's `source` (which anyone
    who can write OUT can edit) is trusted only when it is the real path of the IN given on
    the command line, or when that IN's own index records a sort into OUT (`sort` writes the
    record, see `index.remember_output`: an edited manifest cannot make another folder hold it)."""
    source = manifest["source"]
    if given is not None:
        if os.path.realpath(given) != source:
            raise SortError(f"{out} holds a sort of {source}, not of {given}")
        return Path(source)
    if not os.path.isabs(source) or os.path.realpath(source) != source or not os.path.isdir(source):
        raise Unsafe(f"the manifest of {out} names {source!r} as the sorted folder, which is not a real folder path; "
                     "refusing to use it")
    if not records_output(index_path or default_index_path(Path(source)), Path(out)):
        raise Unsafe(f"the manifest of {out} names {source} as the sorted folder, but {source} holds no record of a "
                     f"sort into {out}; refusing to use it (if that is right, give the folder: "
                     f"illusort sort --undo --out {out} {source}, or --in {source})")
    return Path(source)


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


# ---- checks ----------------------------------------------------------------------------------

def check_output(root: Path, out: Path, mode: str) -> dict | None:
    """Validate OUT before anything is written; returns the previous manifest, if any."""
    if mode not in MODES:
        raise SortError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    root_r, out_r = Path(root).resolve(), output_folder(out)
    if out_r == root_r or root_r in out_r.parents:
        raise SortError(f"output folder {out} is inside the folder being sorted; choose a folder outside {root}")
    if out_r in root_r.parents:
        raise SortError(f"output folder {out} contains the folder being sorted; choose another")
    if out_r.exists() and not out_r.is_dir():
        raise SortError(f"output {out} exists and is not a folder")
    manifest = read_manifest(out_r) if out_r.exists() else None
    if out_r.exists() and manifest is None and any(p.name not in OWN_FILES for p in out_r.iterdir()):
        raise SortError(f"output folder {out} already holds files that illusort did not make; "
                        "choose an empty or new folder")
    if manifest and Path(manifest["source"]) != root_r:
        raise SortError(f"{out} holds a sort of {manifest['source']}, not of {root}; choose another output folder")
    if mode == "move":
        if manifest and manifest["mode"] != "move":
            raise SortError(f"{out} holds a {manifest['mode']} sort; undo it first or choose another folder")
        probe = out_r if out_r.exists() else out_r.parent
        if probe.exists() and os.stat(probe).st_dev != os.stat(root_r).st_dev:
            raise SortError("--mode move across file systems is refused (a crash mid-copy could lose a file); "
                            "use --mode copy, then delete the originals yourself")
    elif manifest and manifest["mode"] != mode:
        raise SortError(f"{out} holds a {manifest['mode']} sort; use --mode {manifest['mode']}, "
                        "or undo it first (illusort sort --undo)")
    return manifest


def output_folder(out: Path) -> Path:
    """The real path of OUT as given; refused when OUT itself is a symbolic link (a planted
    `DIR-sorted -> /elsewhere` would send the whole sort there) or not a folder."""
    if os.path.islink(out):
        raise Unsafe(f"output folder {out} is a symbolic link; give a real folder (its target: "
                     f"{os.path.realpath(out)})")
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise SortError(f"output {out} exists and is not a folder")
    return out


@contextmanager
def output_lock(out: Path):
    """One sort at a time per output folder: a second one refuses instead of interleaving."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        safepath.real_folder(out)
        with exclusive_lock(out / LOCK, SortError(f"another illusort run is writing {out}; wait for it to finish")):
            yield
    except PermissionError as error:
        raise SortError(f"cannot write in {error.filename or out}: {error.strerror}; "
                        "choose an output folder you may write to") from None


# ---- applying --------------------------------------------------------------------------------

def make_entry(entry: Entry, out: Path, mode: str, source: str) -> None:
    """Create one link/copy/move without ever replacing an existing file (raises FileExistsError).
    A source that leads outside `source` (IN) through a link is skipped (`SourceUnavailable`)."""
    dest = dest_path(out, entry.dest)
    try:
        source_path(entry.src, source, mode == "move")
    except Unsafe as error:
        raise SourceUnavailable(str(error)) from None
    if mode == "move" and os.path.islink(entry.src):
        raise SourceUnavailable("a symbolic link: --mode move moves only regular files")
    if not os.path.exists(entry.src):  # deleted since it was embedded (a link to it would dangle)
        raise SourceUnavailable("vanished since it was embedded")
    if dest.parent != out:
        safepath.make_folder(dest.parent)
    try:
        if mode == "symlink":
            os.symlink(entry.src, dest)
        elif mode == "hardlink":
            os.link(entry.src, dest)
        elif mode == "move":
            # same file system (checked): link then unlink is atomic and no-clobber
            os.link(entry.src, dest, follow_symlinks=False)
            os.unlink(entry.src)
        else:
            copy_file(entry.src, dest)
    except FileExistsError:
        raise
    except OSError:
        if not os.path.exists(entry.src):  # deleted between the check and the link
            raise SourceUnavailable("vanished since it was embedded") from None
        raise


def copy_file(src: str, dest: Path) -> None:
    """Copy to a hidden temporary name, fsync, then link it in place (no-clobber), so `dest`
    is either absent or complete, even if the disk fills or the run is killed."""
    try:
        fin = open(src, "rb")
    except OSError as error:  # the source's problem (permission, vanished), not OUT's
        raise SourceUnavailable(f"cannot read: {error.strerror or error}") from None
    tmp = partial_path(dest)
    try:
        with fin, open(tmp, "xb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, tmp)
        os.link(tmp, dest)      # no-clobber: fails if dest appeared meanwhile
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def is_ours(entry: Entry, out: Path, mode: str, source: str) -> bool:
    """True when OUT/dest is still exactly what this tool made, and removing it loses nothing."""
    dest = dest_path(out, entry.dest)
    if not os.path.lexists(dest):
        return False
    if mode == "symlink":
        return dest.is_symlink() and os.readlink(dest) == entry.src
    source_path(entry.src, source, mode == "move")  # compared with it: read only inside IN
    if dest.is_symlink() or not os.path.exists(entry.src):
        return False  # the source is gone: OUT holds the last copy, keep it
    if mode == "hardlink":
        return os.path.samefile(dest, entry.src)
    if mode == "copy":
        return same_content(dest, Path(entry.src))
    return False


def same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def partial_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}{PARTIAL}")


def check_entries(entries: list[Entry], out: Path, mode: str, source: str) -> None:
    """Refuse a manifest any of whose entries leads outside OUT or IN on real paths, before
    anything is changed (each is checked again where it is used)."""
    for e in entries:
        dest_path(out, e.dest)
        if e.moved_from is not None:
            dest_path(out, e.moved_from)
        source_path(e.src, source, mode == "move")


def settle_pending(entries: list[Entry], out: Path, mode: str, source: str) -> list[Entry]:
    """Entries a killed run left 'pending', made definite: a move that was linked but not yet
    unlinked is completed; a move inside OUT (`relocate`) is completed once its new name
    exists, else rolled back to its old one; a link/copy that exists and is ours is done; the
    rest never happened and are dropped (with any half-written copy). `source`: IN's real path.
    Every command on an existing OUT starts here, so every entry is checked first (`check_entries`)."""
    check_entries(entries, out, mode, source)
    settled = []
    for e in entries:
        if e.state == "pending":
            dest = dest_path(out, e.dest)
            if e.moved_from is not None:
                old = dest_path(out, e.moved_from)
                if same_file(old, dest):
                    os.unlink(old)  # linked under the new name, old one not yet gone
                if not (is_regular(dest) and not os.path.lexists(old)):
                    e.dest = e.moved_from  # never linked: it stays where it was
                e.moved_from, e.state = None, "done"
            elif mode == "move":
                source_path(e.src, source, True)
                if same_file(dest, e.src):
                    os.unlink(e.src)
                e.state = "done" if is_regular(dest) and not os.path.lexists(e.src) else "planned"
            else:
                if os.path.lexists(partial_path(dest)):
                    partial_path(dest).unlink()
                e.state = "done" if is_ours(e, out, mode, source) else "planned"
        if e.state == "done":
            settled.append(e)
    return settled


@dataclass
class SortResult:
    created: int = 0
    removed: int = 0
    kept: int = 0
    conflicts: list = None
    folders: Counter = None
    unavailable: list = None  # (source, reason): vanished or unreadable since embedding; skipped


def apply_sort(root: Path, out: Path, planned: list[Entry], mode: str, progress: bool = True) -> SortResult:
    """Make OUT match the plan: remove old entries that are no longer wanted (only if still
    ours), create new ones. The manifest is saved before any change and after every batch."""
    out = Path(out).resolve()
    with output_lock(out):
        # The manifest is read under the lock: another run may have sorted into OUT since the
        # caller's check; applying over a stale manifest would drop its entries.
        manifest = check_output(root, out, mode)
        return _apply(root, out, planned, mode, manifest, progress)


def _apply(root, out, planned, mode, manifest, progress) -> SortResult:
    source = str(Path(root).resolve())
    old = settle_pending(manifest["entries"], out, mode, source) if manifest else []
    if mode == "move":
        moved = {e.src for e in old}
        planned = [e for e in planned if e.src not in moved]  # a vanished source is reported by make_entry
    wanted = {(e.src, e.dest): e.faces for e in planned}
    result = SortResult(conflicts=[], folders=Counter(), unavailable=[])
    keep = []
    for e in old:
        if (e.src, e.dest) in wanted or mode == "move":
            e.faces = wanted.get((e.src, e.dest), e.faces)
            keep.append(e)
        elif is_ours(e, out, mode, source):
            dest_path(out, e.dest).unlink()
            result.removed += 1
        elif os.path.lexists(dest_path(out, e.dest)):
            keep.append(e)  # changed by the user since: leave it alone, keep tracking it
    have = {(e.src, e.dest) for e in keep}
    todo = [e for e in planned if (e.src, e.dest) not in have]
    for e in todo:
        e.state = "pending"
    save_manifest(out, root, mode, keep + todo)  # journal first: a crash leaves 'pending' entries
    from tqdm import tqdm

    done = []
    for n, e in enumerate(tqdm(todo, desc=f"{mode}ing", unit="file", disable=not progress or not todo,
                               file=sys.stderr), 1):
        try:
            make_entry(e, out, mode, source)
            e.state = "done"
            done.append(e)
            result.created += 1
        except FileExistsError:
            e.state = "planned"
            result.conflicts.append(e.dest)
        except SourceUnavailable as error:
            e.state = "planned"
            result.unavailable.append((e.src, str(error)))
        except OSError as error:
            try:
                write_manifest(out, root, mode, keep + done + [x for x in todo if x.state == "pending"])
            except OSError:
                pass  # the journal still lists every entry not yet made as pending: the next run settles them
            raise SortError(f"cannot write {out / e.dest}: {error.strerror or error}; "
                            f"{result.created} entries were made; fix that and run the same command again") from None
        if n % 500 == 0:
            save_manifest(out, root, mode, keep + done + [x for x in todo if x.state == "pending"])
    final = keep + done
    save_manifest(out, root, mode, final)
    remove_empty_folders(out)
    result.kept = len(keep)
    result.folders = Counter(folder_of(e.dest) for e in final)
    return result


# ---- corrections -----------------------------------------------------------------------------

def check_folder_name(name: str) -> str:
    """A character name usable as one folder of OUT."""
    if not name or name in (".", "..") or "/" in name or "\0" in name or name.startswith(".") \
            or len(os.fsencode(name)) > MAX_NAME_BYTES:
        raise SortError(f"{name!r} cannot be a folder name (no '/', no leading '.', at most {MAX_NAME_BYTES} bytes)")
    return name


def find_renamed_folders(out: Path, entries: list[Entry]) -> dict[str, str]:
    """Character folders the user renamed by hand: {old: new} where none of the old folder's
    entries is where the manifest says, and one folder unknown to the manifest holds most of
    them (by name; symbolic links must still point at the same source)."""
    by_folder = defaultdict(list)
    for e in entries:
        by_folder[folder_of(e.dest)].append(e)
    strangers = [d for d in Path(out).iterdir()
                 if d.is_dir() and not d.is_symlink() and not d.name.startswith(".") and d.name not in by_folder]
    renamed = {}
    for folder, members in by_folder.items():
        if not folder or any(os.path.lexists(out / e.dest) for e in members):
            continue
        for candidate in strangers:
            found = [e for e in members if _same_entry(e, candidate / Path(e.dest).name)]
            if len(found) * 2 > len(members) and candidate.name not in renamed.values():
                renamed[folder] = candidate.name
                break
    return renamed


def _same_entry(e: Entry, path: Path) -> bool:
    if not os.path.lexists(path):
        return False
    return os.readlink(path) == e.src if path.is_symlink() else not os.path.islink(e.src)


def relocate(root: Path, out: Path, targets: dict[str, str]) -> list[Entry]:
    """Move entries of OUT to other character folders: {dest: new folder}. Links and copies
    are made anew from the source and the old one removed (only if still ours); a moved file
    is renamed inside OUT. Nothing is overwritten: a name already taken in the new folder
    gets a short tag. Returns the entries moved, with their new dest.

    Journaled like a sort: every new name is saved as 'pending' before any change, so a run
    killed at any step is completed or rolled back by the next one (`settle_pending`)."""
    out = output_folder(out)
    source = str(Path(root).resolve())
    with output_lock(out):
        manifest = require_manifest(out)
        mode = manifest["mode"]
        entries = settle_pending(manifest["entries"], out, mode, source)
        used = {e.dest for e in entries}
        plan = []  # (entry, its new dest)
        for e in entries:
            folder = targets.get(e.dest)
            if folder is None or folder_of(e.dest) == folder:
                continue
            name = Path(e.dest).name
            dest = f"{folder}/{name}"
            if dest in used or os.path.lexists(dest_path(out, dest)):
                name = tagged_name(name, hashlib.sha1(e.src.encode("utf-8", "surrogateescape")).hexdigest()[:8])
                dest = f"{folder}/{name}"
            dest_path(out, dest)
            used.discard(e.dest)
            used.add(dest)
            plan.append((e, dest))
        try:
            moved = _relocate_moves(out, root, entries, plan) if mode == "move" else \
                _relocate_links(out, root, mode, entries, plan)
        except OSError as error:
            raise SortError(f"cannot move {error.filename or ''} in {out}: {error.strerror or error}; "
                            "run the same command again to finish (or illusort sort --undo)") from None
        save_manifest(out, root, mode, entries)
    remove_empty_folders(out)
    return moved


def _relocate_moves(out: Path, root: Path, entries: list[Entry], plan) -> list[Entry]:
    """Move mode: each file is the user's only copy. Journal every rename (pending, with its
    old name), then link under the new name (no-clobber), unlink the old, mark it done."""
    for e, dest in plan:
        e.moved_from, e.dest, e.state = e.dest, dest, "pending"
    save_manifest(out, root, "move", entries)
    moved = []
    for e, _ in plan:
        old, new = dest_path(out, e.moved_from), dest_path(out, e.dest)
        if is_regular(old):
            safepath.make_folder(new.parent)
            os.link(old, new, follow_symlinks=False)
            os.unlink(old)
            moved.append(e)
        else:
            e.dest = e.moved_from  # gone or replaced since the sort: left where it is
        e.moved_from, e.state = None, "done"
    return moved


def _relocate_links(out: Path, root: Path, mode: str, entries: list[Entry], plan) -> list[Entry]:
    """Link/copy modes: journal every new link/copy as pending once (a killed run settles
    them), make it from the source, then remove the old one if still ours."""
    source = str(Path(root).resolve())
    save_manifest(out, root, mode, entries + [Entry(e.src, dest, "pending", e.faces) for e, dest in plan])
    moved = []
    for e, dest in plan:
        try:
            make_entry(Entry(e.src, dest, "pending", e.faces), out, mode, source)
        except SourceUnavailable:  # deleted since the sort: nothing to link any more
            continue
        if is_ours(e, out, mode, source):
            dest_path(out, e.dest).unlink()
        e.dest = dest
        moved.append(e)
    return moved


def adopt_renamed_folders(out: Path, entries: list[Entry]) -> list[Entry]:
    """Point the manifest's entries at folders the user renamed (see `find_renamed_folders`);
    returns the entries whose folder changed."""
    renamed = find_renamed_folders(out, entries)
    changed = []
    for e in entries:
        folder = folder_of(e.dest)
        if folder in renamed:
            e.dest = f"{renamed[folder]}/{Path(e.dest).name}"
            changed.append(e)
    return changed


def take_renames(root: Path, out: Path) -> list[Entry]:
    """Bring OUT's manifest up to date with folders renamed by hand; returns their entries."""
    out = output_folder(out)
    if read_manifest(out) is None:
        return []
    with output_lock(out):
        manifest = read_manifest(out)
        pending = any(e.state != "done" for e in manifest["entries"])
        entries = settle_pending(manifest["entries"], out, manifest["mode"], str(Path(root).resolve()))
        changed = adopt_renamed_folders(out, entries)
        if changed or pending:  # a killed run's journal, settled: saved before anything else reads it
            save_manifest(out, root, manifest["mode"], entries)
    return changed


def undo_sort(out: Path, source: Path | None = None, index_path: Path | None = None) -> tuple[int, int]:
    """Reverse a sort: remove links/copies it made (only if still ours), move moved files back.
    `source`: the sorted folder, if given (else the one OUT's manifest names, once confirmed:
    `confirm_source`). Returns (undone, left) where `left` entries were changed by the user and kept."""
    out = output_folder(out)
    confirm_source(out, require_manifest(out, "nothing to undo"), source, index_path)
    with output_lock(out):
        manifest = require_manifest(out, "nothing to undo")
        root = confirm_source(out, manifest, source, index_path)  # read again under the lock
        result = _undo(out, manifest, str(root))
    if not (out / MANIFEST).exists():
        remove_review_files(out)
        (out / LOCK).unlink(missing_ok=True)
    remove_empty_folders(out)
    return result


def remove_review_files(out: Path) -> None:
    """The review page describes a sort that no longer exists."""
    for name in REVIEW_FILES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.is_file() and not path.is_symlink():
            path.unlink()


def _undo(out: Path, manifest: dict, source: str) -> tuple[int, int]:
    mode = manifest["mode"]
    entries = settle_pending(manifest["entries"], out, mode, source)
    undone, left = 0, []
    for e in entries:
        dest = dest_path(out, e.dest)
        if mode == "move":
            source_path(e.src, source, True)
            if is_regular(dest) and not os.path.lexists(e.src):
                Path(e.src).parent.mkdir(parents=True, exist_ok=True)
                os.link(dest, e.src, follow_symlinks=False)
                os.unlink(dest)
                undone += 1
            elif same_file(dest, e.src):
                os.unlink(dest)  # an undo killed between link and unlink: finish it
                undone += 1
            elif not os.path.lexists(dest) and os.path.exists(e.src):
                undone += 1  # moved back by an undo killed before it could update the manifest
            else:
                left.append(e)
        elif is_ours(e, out, mode, source):
            dest.unlink()
            undone += 1
        elif os.path.lexists(dest):
            left.append(e)
    if left:
        write_manifest(out, manifest["source"], mode, left)
    else:
        # Empty folders go before the manifest: a run killed in between leaves only files
        # a new sort accepts, not folders that look like someone else's.
        remove_empty_folders(out)
        (out / MANIFEST).unlink()
    return undone, len(left)


def remove_empty_folders(out: Path) -> None:
    for child in Path(out).iterdir():
        if child.is_dir() and not child.is_symlink() and not any(child.iterdir()):
            child.rmdir()

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

import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


from . import safepath
from .errors import IllusortError, SortError
from .index import recorded_outputs
from .layout import LOCK, MANIFEST, OWN_FILES, REVIEW_FILES
from .manifest import (BUSY_WAIT, MODES, Entry, confirm_source, output_folder, output_lock, read_manifest,
                       require_manifest, save_manifest, write_manifest)
from .naming import folder_of
from .progress import progress_bar
from .layout import PARTIAL
from .safepath import Unsafe, check_dest, dest_path, is_regular, same_file, source_path



class SourceUnavailable(Exception):
    """A file that vanished or became unreadable after it was embedded: that one file is
    skipped and reported; the rest of the sort goes on."""


# ---- planning --------------------------------------------------------------------------------


# ---- manifest --------------------------------------------------------------------------------


def present(out: Path, entries: list[Entry]) -> list[Entry]:
    """The entries whose file is still in OUT: one deleted by hand is not counted, shown or kept."""
    out = os.fspath(out)  # string joins: 10,000 entries in a blink (Path objects cost 20x more)
    return [e for e in entries if os.path.lexists(os.path.join(out, e.dest))]


def unmoved(planned: list[Entry], old: list[Entry], mode: str) -> list[Entry]:
    """The planned entries left to make over OUT's `old` ones: in move mode a file already
    moved into OUT stays where it is (its source is gone; `old` keeps it)."""
    if mode != "move":
        return planned
    moved = {e.src for e in old}
    return [e for e in planned if e.src not in moved]


def moved_members(root: Path, index_path: Path) -> set[str]:
    """Paths (relative to ROOT) of the files a move-mode sort took from ROOT into an output
    folder ROOT's index records, and still there. They left ROOT but are still the members of
    their characters: their index rows (vectors, clusters, decisions) are kept, so new
    pictures join those characters. Reads only."""
    source = os.path.realpath(root)
    kept = set()
    for out in recorded_outputs(index_path):
        try:
            manifest = read_manifest(out)
        except (IllusortError, OSError):
            continue  # an output folder damaged or gone is not this folder's problem
        if not manifest or manifest["mode"] != "move" or manifest["source"] != source:
            continue
        for e in manifest["entries"]:
            try:
                if e.state == "done" and e.src.startswith(source + os.sep) and is_regular(dest_path(out, e.dest)):
                    kept.add(e.src[len(source) + 1:])
            except (Unsafe, OSError):
                continue
    return kept


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
    anything is changed (each is checked again where it is used). Each folder is looked up
    once per call."""
    outs, ins = {}, {}
    for e in entries:
        check_dest(out, e.dest, outs)
        if e.moved_from is not None:
            check_dest(out, e.moved_from, outs)
        source_path(e.src, source, mode == "move", ins)


def settle_pending(entries: list[Entry], out: Path, mode: str, source: str) -> list[Entry]:
    """Entries a killed run left 'pending', made definite: a move that was linked but not yet
    unlinked is completed; a move inside OUT (`relocate`) is completed once its new name
    exists, else rolled back to its old one; a link/copy that exists and is ours is done; the
    rest never happened and are dropped (with any half-written copy). A link/copy that
    `relocate` made anew in another folder replaces its old one (removed if still ours), so a
    re-run never places a picture twice. `source`: IN's real path.
    Every command on an existing OUT starts here, so every entry is checked first (`check_entries`)."""
    check_entries(entries, out, mode, source)
    settled, replaced = [], set()
    for e in entries:
        if e.state == "pending":
            dest = dest_path(out, e.dest)
            if e.moved_from is not None and mode == "move":
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
                if e.state == "done" and e.moved_from is not None:
                    replaced.add((e.src, e.moved_from))
                e.moved_from = None
        if e.state == "done":
            settled.append(e)
    for e in settled:
        if (e.src, e.dest) in replaced and is_ours(e, out, mode, source):
            dest_path(out, e.dest).unlink()
    return [e for e in settled if (e.src, e.dest) not in replaced]


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
        return apply_plan(root, out, planned, mode, progress)


def apply_plan(root: Path, out: Path, planned: list[Entry], mode: str, progress: bool = True) -> SortResult:
    """`apply_sort` for a caller that holds OUT's lock (a sort holds it from reading OUT's
    corrections on). An entry whose file was deleted from OUT by hand is dropped: made again
    when the plan still wants it."""
    out = Path(out).resolve()
    # The manifest is read under the lock: another run may have sorted into OUT since the
    # caller's check; applying over a stale manifest would drop its entries.
    manifest = check_output(root, out, mode)
    source = str(Path(root).resolve())
    old = present(out, settle_pending(manifest["entries"], out, mode, source)) if manifest else []
    planned = unmoved(planned, old, mode)  # a vanished source is reported by make_entry
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
    for e in todo:  # a plan built from stored names is checked before it is journaled
        safepath.check_manifest_dest(e.dest)
        safepath.check_manifest_source(e.src, source)
        e.state = "pending"
    save_manifest(out, root, mode, keep + todo)  # journal first: a crash leaves 'pending' entries
    done = []
    for n, e in enumerate(progress_bar(todo, desc=f"{mode}ing", unit="file", enabled=progress and bool(todo)), 1):
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


def undo_sort(out: Path, source: Path | None = None, index_path: Path | None = None) -> tuple[int, int]:
    """Reverse a sort: remove links/copies it made (only if still ours), move moved files back.
    `source`: the sorted folder, if given (else the one OUT's manifest names, once confirmed:
    `confirm_source`). Returns (undone, left) where `left` entries were changed by the user and kept."""
    out = output_folder(out)
    confirm_source(out, require_manifest(out, "nothing to undo"), source, index_path)
    with output_lock(out, BUSY_WAIT):
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

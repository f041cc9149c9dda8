"""Corrections the user makes to a sort: named, merged and moved characters, and folders
renamed by hand. Each is applied to OUT and remembered in the sorted folder's index, so later
sorts keep it (`sort.assign_folders`). Nothing here imports torch or loads a model, so these
commands start in a fraction of a second.
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from . import safepath
from .errors import InputError, SortError
from .index import Index, default_index_path
from .manifest import (BUSY_WAIT, Entry, confirm_source, output_folder, output_lock, read_manifest,
                       require_manifest, save_manifest)
from .layout import NOT_A_CHARACTER, SPECIAL_FOLDERS, UNSORTED
from .naming import check_folder_name, folder_of, tagged_name
from .safepath import bad_name, dest_path, is_regular
from .terminal import command
from .sort import SourceUnavailable, is_ours, make_entry, remove_empty_folders, settle_pending


def check_character_name(name: str, option: str = "NAME") -> str:
    """A name the user may give a character: a folder name, and not one of illusort's own
    (checked by the `name`, `merge` and `move` commands; the functions here stay general)."""
    if name == UNSORTED:
        raise InputError(f"'{UNSORTED}' is where illusort keeps pictures that fit no character; "
                         f"choose another {option}")
    if name == NOT_A_CHARACTER:
        raise InputError(f"'{NOT_A_CHARACTER}' is reserved; set pictures aside with "
                         "illusort move OUT FILE... --not-character")
    return check_folder_name(name)


def check_character_folder(folder: str, out: Path | None = None) -> str:
    """FOLDER of `name`/`merge` must be a character, not the leftovers or the set-aside. Returns
    it as the manifest spells it (`Rem/` and `./Rem`, as shells complete them, are `Rem`); a
    path that leads to a folder of OUT (absolute, or from the current folder) is that folder,
    as `move` takes its FILES."""
    path = Path(folder)
    if out is not None and (path.is_absolute() or not (Path(out) / path).is_dir()):
        inside = os.path.relpath(os.path.realpath(path), os.path.realpath(out))
        if inside != "." and not inside.startswith("..") and "/" not in inside:
            path = Path(inside)
    folder = path.as_posix()
    if folder in SPECIAL_FOLDERS:
        raise InputError(f"'{folder}' is not a character folder; move its pictures one by one with "
                         f"illusort move OUT {folder}/FILE --to NAME")
    return folder


def keys_of(root: Path, entries: list[Entry]) -> list[tuple[str, int]]:
    """The index rows (path relative to the sorted folder, face) of OUT entries."""
    base = Path(root).resolve()
    return [(Path(e.src).relative_to(base).as_posix(), face) for e in entries for face in e.faces]


def record_renames(index: Index, root: Path, entries: list[Entry]) -> None:
    """Entries whose folder the user chose are decisions: later sorts keep them there."""
    by_folder: dict[str, list] = {}
    for e in entries:
        by_folder.setdefault(folder_of(e.dest), []).extend(keys_of(root, [e]))
    for folder, keys in by_folder.items():
        index.decide(keys, folder)


def sorted_output(out: Path, index_path: Path | None = None, source: Path | None = None) -> tuple[Path, Index]:
    """(sorted folder, its index) of an output folder made by `sort`; the sorted folder is
    `source` if given, else the manifest's once confirmed (`manifest.confirm_source`)."""
    out = output_folder(out)
    root = confirm_source(out, require_manifest(out), source, index_path)
    return root, Index(index_path or default_index_path(root))


@contextmanager
def corrections(out: Path, index_path: Path | None = None, source: Path | None = None):
    """(sorted folder, its open index) for a correction of OUT, with folders the user renamed
    by hand already taken in (and remembered), holding OUT's lock."""
    root, index = sorted_output(out, index_path, source)
    # OUT's lock for the whole correction: a sort running meanwhile would plan without it and
    # undo it; a correction waits a little for it (`BUSY_WAIT`), then refuses as busy
    with index, output_lock(output_folder(out), BUSY_WAIT):
        record_renames(index, root, take_renames(root, out))
        yield root, index


def folder_entries(out: Path, folder: str) -> list[Entry]:
    entries = [e for e in read_manifest(Path(out))["entries"] if folder_of(e.dest) == folder]
    if not entries:
        raise SortError(f"{Path(out) / folder} is not a character folder of this sort")
    return entries


def _correct(root, index, out, targets: dict[str, str], confirmed=(), what: str = "",
             not_these: dict[str, str] | None = None, dismissed=(), apart=()) -> list[Entry]:
    """Remember where OUT entries ({dest: folder}) and `confirmed` belong, then move them. The
    decision is stored first: a run killed while moving is completed or rolled back by the
    next command (`sort.relocate` is journaled), and the next sort still puts them there.
    The user's no's: `not_these` {dest: the character it is not} (its decision is forgotten:
    the sort chooses again, never that character); `dismissed` suggestion keys; `apart` folder
    pairs that are not one character (every picture of each is not the other). All of it is
    journaled in the index as one correction, for `undo_last`, before anything moves: a killed
    run can be taken back too. Pictures are journaled by source and faces, not by their place
    in OUT, which a folder renamed by hand changes."""
    entries = {e.dest: e for e in read_manifest(output_folder(out))["entries"]}
    targets = {d: folder for d, folder in targets.items() if d in entries and folder_of(d) != folder}
    not_these = {d: c for d, c in (not_these or {}).items() if d in entries}
    if not (targets or confirmed or not_these or dismissed or apart):
        return []   # nothing to do: no journal step either
    decided = [Entry(entries[d].src, f"{folder}/{Path(d).name}", faces=entries[d].faces)
               for d, folder in targets.items() if d not in not_these]
    placed = decided + list(confirmed)
    rejected = [(key, character) for d, character in not_these.items() for key in keys_of(root, [entries[d]])]
    for a, b in apart:
        for folder, other in ((a, b), (b, a)):
            rejected += [(key, other) for key in keys_of(root, folder_entries(out, folder))]
    before = index.decisions()
    forget = {key: None for d, c in not_these.items() for key in keys_of(root, [entries[d]]) if before.get(key) == c}
    after = {**{key: folder_of(e.dest) for e in placed for key in keys_of(root, [e])}, **forget}
    index.journal(os.path.realpath(output_folder(out)), what or f"{len(targets)} moved", {
        "decisions": [[p, f, before.get((p, f)), character] for (p, f), character in after.items()],
        "rejected": [[p, f, character] for (p, f), character in rejected], "dismissed": list(dismissed),
        "back": [[entries[d].src, list(entries[d].faces), folder_of(d)] for d in targets]})
    index.decide_many(forget)
    for key, character in rejected:
        index.reject([key], character)
    index.dismiss(dismissed)
    record_renames(index, root, placed)
    for e in placed:  # placed there by the user: no longer "not" that character
        index.reject(keys_of(root, [e]), folder_of(e.dest), forget=True)
    return relocate(root, out, targets) if targets else []


def undo_last(out: Path, index_path: Path | None = None, source: Path | None = None) -> str:
    """Take back the last correction of OUT since its last sort (name, merge, move, accept,
    reject): its decisions and rejections as they were before (a decision changed since, e.g.
    through another output folder, is left alone), its pictures back in their folders. A sort
    re-plans OUT from the decisions, so corrections before it are kept, not undone. Returns
    what it was."""
    with corrections(out, index_path, source) as (root, index):
        last = index.last_journal(os.path.realpath(output_folder(out)))
        if last is None:
            raise InputError(f"no correction of {out} since its last sort to take back "
                             f"({command('illusort', 'undo', out)} removes the whole sort)")
        seq, what, undo = last
        try:
            decisions = [(str(p), int(f), before, after) for p, f, before, after in undo["decisions"]]
            rejected = [(str(p), int(f), str(c)) for p, f, c in undo["rejected"]]
            dismissed = [str(k) for k in undo["dismissed"]]
            back = {(str(src), tuple(int(f) for f in faces)): str(folder) for src, faces, folder in undo["back"]}
        except (KeyError, TypeError, ValueError):
            index.drop_journal(seq)
            raise InputError(f"the record of the last correction of {out} is damaged; it was dropped "
                             "(nothing was changed)") from None
        targets = {e.dest: back[e.src, tuple(e.faces)] for e in read_manifest(output_folder(out))["entries"]
                   if (e.src, tuple(e.faces)) in back}
        for folder in set(targets.values()):
            check_folder_name(folder)
        now = index.decisions()
        index.decide_many({(p, f): before for p, f, before, after in decisions if now.get((p, f)) == after})
        for p, f, character in rejected:
            index.reject([(p, f)], character, forget=True)
        index.dismiss(dismissed, forget=True)
        relocate(root, out, targets)
        index.drop_journal(seq)
        return what


def reject_images(out: Path, files: list[Path], character: str, index_path: Path | None = None,
                  source: Path | None = None) -> list[Entry]:
    """"Not this character": FILES (paths inside OUT) are remembered as not `character`; those
    in its folder go to unsorted/, and no later sort or suggestion puts them back there."""
    out_r = output_folder(out)
    with corrections(out, index_path, source) as (root, index):
        entries = {e.dest: e for e in read_manifest(out_r)["entries"]}
        dests = [dest_in(out, out_r, file, entries) for file in files]
        return _correct(root, index, out, {d: UNSORTED for d in dests if folder_of(d) == character},
                        what=f"{len(dests)} marked not {character}", not_these={d: character for d in dests})


def answer(out: Path, targets: dict[str, str], keep: list[str], not_these: dict[str, str], dismissed: list[str],
           apart: list[tuple[str, str]], what: str, index_path: Path | None = None,
           source: Path | None = None) -> list[Entry]:
    """Answers to suggestions as one correction (see `_correct`): entries moved ({dest:
    folder}); `keep`, folders merged into, whose pictures are now decided as they are; and the
    no's: pictures that are not a character, dismissed suggestions, folders kept apart."""
    with corrections(out, index_path, source) as (root, index):
        kept = [e for folder in keep for e in folder_entries(out, folder) if e.dest not in targets]
        return _correct(root, index, out, targets, kept, what, not_these, dismissed, apart)


def name_character(out: Path, folder: str, name: str, index_path: Path | None = None,
                   source: Path | None = None) -> list[Entry]:
    """Rename a character folder (merging it into NAME if that folder exists)."""
    check_folder_name(name)
    with corrections(out, index_path, source) as (root, index):
        index.rename_character(folder, name)
        existing = [e for e in read_manifest(output_folder(out))["entries"] if folder_of(e.dest) == name]
        return _correct(root, index, out, {e.dest: name for e in folder_entries(out, folder)}, confirmed=existing,
                        what=f"{folder} named {name}")


def merge_characters(out: Path, into: str, others: list[str], index_path: Path | None = None,
                     source: Path | None = None) -> list[Entry]:
    """Merge character folders into `into`; all their images are remembered as that character."""
    with corrections(out, index_path, source) as (root, index):
        kept = folder_entries(out, into)
        targets = {e.dest: into for folder in others for e in folder_entries(out, folder)}
        return _correct(root, index, out, targets, confirmed=kept, what=f"{', '.join(others)} merged into {into}")


def move_images(out: Path, files: list[Path], to: str, index_path: Path | None = None,
                source: Path | None = None) -> list[Entry]:
    """Move images to character `to` ('not-a-character' sets them aside). FILES are paths
    inside OUT, relative to OUT (`character-007/x.png`) or absolute/relative to the current
    folder when they lead into OUT."""
    check_folder_name(to)
    out_r = output_folder(out)
    with corrections(out, index_path, source) as (root, index):
        entries = {e.dest: e for e in read_manifest(out_r)["entries"]}
        targets = {dest_in(out, out_r, file, entries): to for file in files}
        return _correct(root, index, out, targets, confirmed=[entries[d] for d in targets if folder_of(d) == to],
                        what=f"{len(targets)} moved to {to}")


def dest_in(out: Path, out_r: Path, file: Path, entries: dict) -> str:
    """The manifest path ('folder/name') of FILE, a picture of OUT: relative to OUT first,
    else as given (absolute, or relative to the current folder)."""
    file = Path(file)
    candidates = [] if file.is_absolute() else [file.as_posix()]
    inside = True
    try:
        candidates.append((file.parent.resolve() / file.name).relative_to(out_r).as_posix())
    except ValueError:
        inside = not file.is_absolute()
    for dest in candidates:
        if dest in entries:
            return dest
    example = next(iter(sorted(entries)), "character-001/x.png")
    where = "is not a picture this sort placed in" if inside else "is not inside"
    raise SortError(f"{file} {where} {out}; give its path inside {out} as `illusort status` and the report "
                    f"show it, e.g. {example}")


# ---- moving entries of OUT ----------------------------------------------------------------

def find_renamed_folders(out: Path, entries: list[Entry]) -> dict[str, str]:
    """Character folders the user renamed by hand: {old: new} where none of the old folder's
    entries is where the manifest says, and one folder unknown to the manifest holds most of
    them (by name; symbolic links must still point at the same source)."""
    by_folder = defaultdict(list)
    for e in entries:
        by_folder[folder_of(e.dest)].append(e)
    strangers = [d for d in Path(out).iterdir()
                 if d.is_dir() and not d.is_symlink() and not bad_name(d.name) and d.name not in by_folder]
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
    killed at any step is completed or rolled back by the next one (`settle_pending`). The
    caller holds OUT's lock (`corrections`)."""
    out = output_folder(out)
    source = str(Path(root).resolve())
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
    """Link/copy modes: journal every new link/copy as pending once, with the entry it replaces
    (a killed run's are settled: `settle_pending` completes each one made), make it from the
    source, then remove the old one if still ours."""
    source = str(Path(root).resolve())
    save_manifest(out, root, mode, entries + [Entry(e.src, dest, "pending", e.faces, e.dest) for e, dest in plan])
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
    """Bring OUT's manifest up to date with folders renamed by hand; returns their entries.
    The caller holds OUT's lock (a sort, a correction)."""
    out = output_folder(out)
    manifest = read_manifest(out)
    if manifest is None:
        return []
    pending = any(e.state != "done" for e in manifest["entries"])
    entries = settle_pending(manifest["entries"], out, manifest["mode"], str(Path(root).resolve()))
    changed = adopt_renamed_folders(out, entries)
    if changed or pending:  # a killed run's journal, settled: saved before anything else reads it
        save_manifest(out, root, manifest["mode"], entries)
    return changed

"""Corrections the user makes to a sort: named, merged and moved characters, and folders
renamed by hand. Each is applied to OUT and remembered in the sorted folder's index, so later
sorts keep it (`sort.assign_folders`). Nothing here imports torch or loads a model, so these
commands start in a fraction of a second.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from .errors import InputError
from .index import Index, default_index_path
from .sort import (NOT_A_CHARACTER, UNSORTED, Entry, SortError, check_folder_name, confirm_source, folder_of,
                   output_folder, read_manifest, relocate, require_manifest, take_renames)

RESERVED = (UNSORTED, NOT_A_CHARACTER)


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


def check_character_folder(folder: str) -> str:
    """FOLDER of `name`/`merge` must be a character, not the leftovers or the set-aside."""
    if folder in RESERVED:
        raise InputError(f"'{folder}' is not a character folder; move its pictures one by one with "
                         f"illusort move OUT {folder}/FILE --to NAME")
    return folder


def record_renames(index: Index, root: Path, entries: list[Entry]) -> None:
    """Entries whose folder the user chose are decisions: later sorts keep them there."""
    by_folder: dict[str, list] = {}
    for e in entries:
        rel = Path(e.src).relative_to(Path(root).resolve()).as_posix()
        by_folder.setdefault(folder_of(e.dest), []).extend((rel, face) for face in e.faces)
    for folder, keys in by_folder.items():
        index.decide(keys, folder)


def sorted_output(out: Path, index_path: Path | None = None, source: Path | None = None) -> tuple[Path, dict, Index]:
    """(sorted folder, manifest, its index) of an output folder made by `sort`; the sorted
    folder is `source` if given, else the manifest's once confirmed (`sort.confirm_source`)."""
    out = output_folder(out)
    manifest = require_manifest(out)
    root = confirm_source(out, manifest, source, index_path)
    return root, manifest, Index(index_path or default_index_path(root))


@contextmanager
def corrections(out: Path, index_path: Path | None = None, source: Path | None = None):
    """(sorted folder, its open index) for a correction of OUT, with folders the user renamed
    by hand already taken in (and remembered)."""
    root, _, index = sorted_output(out, index_path, source)
    with index:
        record_renames(index, root, take_renames(root, out))
        yield root, index


def folder_entries(out: Path, folder: str) -> list[Entry]:
    entries = [e for e in read_manifest(Path(out))["entries"] if folder_of(e.dest) == folder]
    if not entries:
        raise SortError(f"{Path(out) / folder} is not a character folder of this sort")
    return entries


def _correct(root, index, out, targets: dict[str, str], confirmed=()) -> list[Entry]:
    """Remember where OUT entries ({dest: folder}) and `confirmed` belong, then move them. The
    decision is stored first: a run killed while moving is completed or rolled back by the
    next command (`sort.relocate` is journaled), and the next sort still puts them there."""
    entries = {e.dest: e for e in read_manifest(output_folder(out))["entries"]}
    decided = [Entry(entries[d].src, f"{folder}/{Path(d).name}", faces=entries[d].faces)
               for d, folder in targets.items() if d in entries]
    record_renames(index, root, decided + list(confirmed))
    return relocate(root, out, targets)


def name_character(out: Path, folder: str, name: str, index_path: Path | None = None,
                   source: Path | None = None) -> list[Entry]:
    """Rename a character folder (merging it into NAME if that folder exists)."""
    check_folder_name(name)
    with corrections(out, index_path, source) as (root, index):
        return _correct(root, index, out, {e.dest: name for e in folder_entries(out, folder)})


def merge_characters(out: Path, into: str, others: list[str], index_path: Path | None = None,
                     source: Path | None = None) -> list[Entry]:
    """Merge character folders into `into`; all their images are remembered as that character."""
    with corrections(out, index_path, source) as (root, index):
        kept = folder_entries(out, into)
        targets = {e.dest: into for folder in others for e in folder_entries(out, folder)}
        return _correct(root, index, out, targets, confirmed=kept)


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
        return _correct(root, index, out, targets, confirmed=[entries[d] for d in targets if folder_of(d) == to])


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

"""OUT's manifest (`OUT/.illusort-sort.json`): every entry a sort made, its format, its
validation and its lock. Entries are untrusted (a shared OUT can be edited by anyone): each
is checked against real paths (`safepath`) when read and again where it is used, and the IN
it names is trusted only when confirmed (`confirm_source`).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import safepath
from .errors import SortError
from .index import default_index_path, exclusive_lock, records_output
from .layout import LOCK, MANIFEST
from .safepath import Unsafe
from .terminal import command, shell_word





MODES = ("symlink", "copy", "hardlink", "move")


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


_checked: dict = {}  # sha1 of the last manifest read -> (the rest of it, its entries as checked)


def read_manifest(out: Path) -> dict | None:
    """OUT's manifest, its entries checked as text (`checked_entry`); each is checked again on
    real paths where it is used. None when OUT holds none."""
    path = Path(out) / MANIFEST
    raw = safepath.read_own(path)
    if raw is None:
        return None
    digest = hashlib.sha1(raw).digest()
    known = _checked.get(digest)
    if known is not None:  # the same bytes as last time: checked already (a correction reads it often)
        data = json.loads(known[0])
        data["entries"] = [Entry(*e) for e in known[1]]
        return data
    try:
        data = json.loads(raw.decode("utf-8", "surrogateescape"))
        if data["mode"] not in MODES or not isinstance(data["source"], str):
            raise ValueError(f"mode {data['mode']!r}")
        data["entries"] = [checked_entry(e, data["source"]) for e in data["entries"]]
        head = json.dumps({k: v for k, v in data.items() if k != "entries"})
        _checked.clear()
        _checked[digest] = (head, [(e.src, e.dest, e.state, e.faces, e.moved_from) for e in data["entries"]])
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
    data = {"version": 1, "source": str(Path(source).resolve()), "mode": mode, "updated": time.strftime("%FT%T%z")}
    # one entry a line, each by json's C encoder (indent= would take the pure-Python one: 10x slower)
    lines = ",\n".join(json.dumps(e.to_json(), ensure_ascii=False) for e in entries)
    text = json.dumps(data, indent=1, ensure_ascii=False)[:-2] + f',\n "entries": [\n{lines}\n ]\n}}'
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
                     f"{command('illusort', 'sort', '--undo', '--out', out, source)}, or --in {shell_word(source)})")
    return Path(source)


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


# How long a correction or the report waits for a sort (or another correction) holding OUT's
# lock before it refuses: long enough for a sort's last steps, short enough to say so.
BUSY_WAIT = 10.0


class OutputBusy(SortError):
    """OUT's lock is held by another run (a sort in another terminal): nothing was changed."""


_held = threading.local()  # the OUT folders this thread holds (`output_lock(hold=True)`)


@contextmanager
def output_lock(out: Path, wait: float = 0.0, hold: bool = False):
    """One writer at a time per output folder: a second one waits up to `wait` seconds, then
    refuses (`OutputBusy`) instead of interleaving. A sort holds it from reading OUT's
    corrections to its last entry, so a correction is never made in between and then undone.
    `hold`: the corrections made inside it, in this thread, pass through (the review app holds
    OUT over an action of several corrections, so a sort cannot start halfway)."""
    held = _held.__dict__.setdefault("folders", set())
    key = os.path.realpath(out)
    if key in held:
        yield
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        safepath.real_folder(out)
        busy = OutputBusy(f"{out} is busy: another illusort run is writing it; nothing in it was changed: "
                          "run this again when that run has finished")
        with exclusive_lock(out / LOCK, busy, wait):
            if hold:
                held.add(key)
            try:
                yield
            finally:
                if hold:
                    held.discard(key)
    except PermissionError as error:
        raise SortError(f"cannot write in {error.filename or out}: {error.strerror}; "
                        "choose an output folder you may write to") from None

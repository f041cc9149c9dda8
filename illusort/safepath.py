"""The one rule for folders other people and programs can write to (see SECURITY.md):

    illusort writes, moves and deletes only inside OUT and inside its own `DIR/.illusort`
    folder, and reads the files it sorts only inside IN.

"Inside" is decided on real paths (every symbolic link resolved), never on the text of a
path, and at the moment of use: a manifest can be edited and a link planted at any time.
Every check of that rule lives here; the rest of illusort calls these functions:

- `dest_path` / `source_path`: a manifest entry's place in OUT and its file in IN;
- `real_folder`: OUT, `DIR/.illusort` and `OUT/.illusort-thumbs` are real folders, not links;
- `open_own` / `read_own` / `write_own`: illusort's fixed-name files (locks, manifest,
  temporaries, report) are opened with O_NOFOLLOW, temporaries with O_CREAT|O_EXCL, so a
  symbolic link planted at such a name is refused, never followed;
- `same_file`: the identity test before a move's second name is unlinked (never through a link).

A refusal is `Unsafe`, a one-line message; nothing has been changed when it is raised.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import IllusortError
from .layout import OWN_NAMES, PARTIAL

NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK  # NONBLOCK: a FIFO never hangs
# Longest name in OUT: 255 bytes (NAME_MAX of common file systems) less what turns `name`
# into the temporary `.name.illusort-partial` of a copy in progress.
MAX_NAME_BYTES = 255 - 1 - len(PARTIAL)


class Unsafe(IllusortError, ValueError):
    """A path that would lead outside IN or OUT, or a link where illusort's own file should be."""


def is_inside(path, root, folders: dict | None = None) -> bool:
    """True when the real path of `path` is `root` or below it (`root` must be a real path).
    `folders`: a cache of folders' real paths for one check of many entries (`real_path`)."""
    real, root = real_path(path, folders), str(root).rstrip("/") or "/"
    return real == root or real.startswith(root + "/")


def bad_name(name) -> bool:
    """True for what cannot be one folder or file of OUT, whether typed on the command line or
    read back from a manifest or an index (both editable by anyone who shares the folder):
    blank, '.', '..', a '/' or NUL, a leading '.' (illusort's own files), an own name, or
    longer than MAX_NAME_BYTES."""
    return (not isinstance(name, str) or not name.strip() or "/" in name or "\0" in name or name.startswith(".")
            or name in OWN_NAMES or len(os.fsencode(name)) > MAX_NAME_BYTES)


def real_path(path, folders: dict | None = None) -> str:
    """`os.path.realpath(path)`. With `folders` (a dict kept for one check of many entries), each
    parent folder is resolved once; the last name is still resolved when it is a link."""
    if folders is None:
        return os.path.realpath(path)
    parent, name = os.path.split(os.fspath(path))
    if parent not in folders:
        folders[parent] = os.path.realpath(parent)
    joined = os.path.join(folders[parent], name)
    return os.path.realpath(joined) if os.path.islink(joined) else joined


def check_manifest_dest(dest: str) -> str:
    """The text of a manifest `dest`: 'name' or 'folder/name', each part a name `bad_name` accepts."""
    parts = dest.split("/") if isinstance(dest, str) else [""]
    if len(parts) > 2 or any(bad_name(p) for p in parts):
        raise Unsafe(f"manifest entry {dest!r} points outside the output folder or at illusort's own files; "
                     "refusing to use it")
    return dest


def dest_path(out: Path, dest: str) -> Path:
    """OUT/dest, refused when its folder is a symbolic link (`OUT/evil -> /elsewhere` would
    make `evil/x.jpg` a file outside OUT) or not a folder. `out` must be a real path. The
    file itself may be a link: illusort only creates, unlinks or inspects (lstat) it."""
    check_dest(out, dest)
    return Path(out) / dest


def check_dest(out: Path, dest: str, folders: dict | None = None) -> None:
    """`dest_path`'s check alone (no Path is made). `folders`: the folders found real, kept
    for one check of many entries (10,000 entries lie in a few hundred folders)."""
    check_manifest_dest(dest)
    name = dest.split("/", 1)[0]
    if "/" in dest and (folders is None or name not in folders):
        folder = os.path.join(out, name)
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            return  # made by `make_folder` when used
        if not stat.S_ISDIR(st.st_mode):
            raise Unsafe(f"{folder} is a symbolic link or not a folder; refusing to use manifest entry {dest!r}")
        if folders is not None:
            folders[name] = True


def make_folder(folder: Path) -> None:
    """Create a character folder of OUT (its parent is OUT); an existing one must be real."""
    real_folder(folder, create=True)


def check_manifest_source(src: str, source: str) -> str:
    """The text of a manifest `src`: an absolute, normalised path below the sorted folder."""
    if not (isinstance(src, str) and os.path.isabs(src) and os.path.normpath(src) == src
            and src.startswith(source.rstrip("/") + "/")):
        raise Unsafe(f"manifest entry source {src!r} is not inside {source}; refusing to use it")
    return src


def source_path(src: str, source: str, move: bool, folders: dict | None = None) -> str:
    """A manifest `src`, checked on real paths. `source` is the real path of IN.

    Links and copies only read the source: its real path must be inside IN. A move writes
    there (undo links the file back, creating folders) and deletes there (settling a move):
    no folder between IN and the file may be a symbolic link, even one pointing inside IN.
    `folders`: a cache of folders' real paths, for one check of many entries."""
    check_manifest_source(src, source)
    if not move:
        if not is_inside(src, source, folders):
            raise Unsafe(f"{src} leads outside {source} through a symbolic link; refusing to use it")
        return src
    folder = os.path.dirname(src)
    while not os.path.lexists(folder):  # undo may create missing folders, below a real one
        folder = os.path.dirname(folder)
    if os.path.realpath(folder) != folder or not os.path.isdir(folder):
        raise Unsafe(f"{src} lies behind a symbolic link to a folder (or a file) inside {source}; "
                     "refusing to move it")
    return src


def real_folder(path: Path, create: bool = False) -> Path:
    """A folder illusort owns or writes into (OUT, `DIR/.illusort`, the thumbnails): a real
    folder, never a symbolic link (which could send every later write elsewhere)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            raise
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
        st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise Unsafe(f"{path} is a symbolic link; illusort does not follow links at its own folders "
                     "(remove the link)")
    if not stat.S_ISDIR(st.st_mode):
        raise Unsafe(f"{path} is not a folder")
    return path


def open_own(path: Path, flags: int, mode: int = 0o644) -> int:
    """A descriptor of one of illusort's fixed-name files, opened without following a link
    (or a FIFO: non-blocking), and refused unless it is a regular file."""
    try:
        fd = os.open(path, flags | NOFOLLOW, mode)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK):
            raise Unsafe(f"{path} is a symbolic link; illusort does not follow links at its own files "
                         "(remove the link)") from None
        if error.errno == errno.ENXIO:
            raise Unsafe(f"{path} is not a regular file (a FIFO?); remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Unsafe(f"{path} is not a regular file; remove it")
    os.set_blocking(fd, True)
    return fd


def read_own(path: Path) -> bytes | None:
    """The bytes of one of illusort's own files; None when there is none."""
    try:
        fd = open_own(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def temporary_for(path: Path) -> Path:
    """The fixed temporary name beside `path` ('.NAME.tmp'; 'NAME.tmp' for a hidden NAME)."""
    name = path.name if path.name.startswith(".") else "." + path.name
    return path.with_name(name + ".tmp")


def write_own(path: Path, data: bytes) -> None:
    """Atomically replace one of illusort's own files: a temporary created with O_EXCL (a
    leftover of a killed run, or a link planted there, is unlinked first: unlinking never
    follows a link), fsynced, then renamed over `path` (a rename replaces a link, never its
    target). Callers hold the folder's lock, so no other run uses the same temporary."""
    path = Path(path)
    tmp = temporary_for(path)
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = open_own(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def same_file(a, b) -> bool:
    """Both regular files (not links) and the same inode: two names of one moved file, so
    one name may go. `os.path.samefile` follows links: a link in OUT to the user's only copy
    would pass it, and unlinking the 'other' name would lose the file."""
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode) and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def is_regular(path) -> bool:
    """A regular file, not a link (lstat)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False

"""The embedding index: one SQLite file per sorted folder (default `DIR/.illusort/index.db`).

One row per (model, file, face). Paths are stored relative to the folder, so the folder can
move. A file whose size and mtime are unchanged is never embedded again; a changed stat
with the same content hash (a touched or renamed file) reuses the stored vector. Rows are
committed per batch, so an interrupted run loses at most one batch and resumes.

A damaged index (not a database, truncated, the wrong tables, a folder in its place) is moved
aside, kept as `index.db.damaged-TIME`, and a new one started, with a warning: the embeddings
are recomputed; the name/merge/move decisions it held are in the kept file.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import safepath
from .errors import IllusortError
from .layout import INDEX_DIRNAME, INDEX_FILE, META_IDENTITY, VECTOR_CACHE_SUFFIX

SCHEMA = """
CREATE TABLE IF NOT EXISTS items(
    model    TEXT NOT NULL,
    path     BLOB NOT NULL,          -- relative to the indexed folder, '/'-separated, file-system bytes
    face     INTEGER NOT NULL,       -- 0: whole image (or first face); 1..: further faces
    size     INTEGER,
    mtime_ns INTEGER,
    digest   TEXT,                   -- content hash (blake2b-128)
    box      TEXT,                   -- JSON [x0, y0, x1, y1] of a face crop; NULL = whole image
    vector   BLOB,                   -- float32 embedding; NULL when the file was skipped
    error    TEXT,                   -- why it was skipped
    PRIMARY KEY (model, path, face)
);
CREATE INDEX IF NOT EXISTS items_digest ON items(model, digest);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS decisions(  -- the user's corrections; they hold for every model
    path      BLOB NOT NULL,
    face      INTEGER NOT NULL,
    character TEXT NOT NULL,         -- folder name the user gave (or 'not-a-character')
    PRIMARY KEY (path, face)
);
CREATE TABLE IF NOT EXISTS rejections(  -- "not this character": no later sort or suggestion puts it there
    path      BLOB NOT NULL,
    face      INTEGER NOT NULL,
    character TEXT NOT NULL,
    PRIMARY KEY (path, face, character)
);
CREATE TABLE IF NOT EXISTS dismissed(key TEXT PRIMARY KEY);  -- merge/split suggestions the user said no to
CREATE TABLE IF NOT EXISTS journal(  -- every correction, newest last, so the last ones can be taken back
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    out  TEXT NOT NULL,              -- the output folder it changed (real path)
    what TEXT NOT NULL,              -- what it did, in words
    undo TEXT NOT NULL               -- JSON: what restores the state before it
);
CREATE TABLE IF NOT EXISTS changes(n INTEGER NOT NULL);  -- bumped by every change to items
INSERT INTO changes(n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM changes);
CREATE TRIGGER IF NOT EXISTS items_inserted AFTER INSERT ON items BEGIN UPDATE changes SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS items_updated AFTER UPDATE ON items BEGIN UPDATE changes SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS items_deleted AFTER DELETE ON items BEGIN UPDATE changes SET n = n + 1; END;
CREATE TABLE IF NOT EXISTS clusterings(  -- the last clustering per model and settings (`run`)
    run         TEXT NOT NULL,
    path        BLOB NOT NULL,
    face        INTEGER NOT NULL,
    label       INTEGER NOT NULL,
    probability REAL NOT NULL,
    PRIMARY KEY (run, path, face)
);
"""


class IndexBusy(IllusortError, RuntimeError):
    """Another illusort process is writing this index."""


class IndexUnusable(IllusortError, RuntimeError):
    """The index cannot be opened or written (disk full, read-only); a one-line message."""


# Every column the code reads: an index whose tables lack one is damaged (or not ours).
COLUMNS = {"items": "model, path, face, size, mtime_ns, digest, box, vector, error", "meta": "key, value",
           "decisions": "path, face, character", "clusterings": "run, path, face, label, probability"}


@dataclass
class Row:
    path: str
    face: int
    box: list | None
    vector: np.ndarray | None = None
    error: str | None = None


@contextmanager
def exclusive_lock(lock_file: Path, busy: Exception, wait: float = 0.0):
    """Hold an flock on `lock_file` (released when the process dies); raise `busy` if it is
    still taken after `wait` seconds. Opened without following a link and without
    truncating: a link planted at the lock's name must not make illusort empty another file."""
    handle = os.fdopen(safepath.open_own(lock_file, os.O_WRONLY | os.O_CREAT), "w")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise busy from None
            time.sleep(0.05)
    try:
        yield
    finally:
        handle.close()


def open_read_only(path: Path, timeout: float = 30) -> sqlite3.Connection:
    """An index opened read-only, by a URI whose path is percent-escaped: in a plain
    `file:{path}?mode=ro` a `#` or `?` in a folder name ends the path, and SQLite then opens
    (and creates) another file, read-write."""
    return sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True, timeout=timeout)


def default_index_path(root: Path) -> Path:
    """DIR/.illusort/index.db; for a folder we may not write to (a read-only share), a
    per-folder file under ~/.cache/illusort/indexes instead."""
    root = Path(root).resolve()
    local = root / INDEX_DIRNAME
    target = local if local.exists() else root
    # Mode bits too: root passes os.access on a folder marked read-only.
    if os.access(target, os.W_OK) and target.stat().st_mode & 0o222:
        return local / INDEX_FILE
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "illusort" / "indexes"
    key = hashlib.sha1(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return cache / f"{root.name}-{key}.db"


def remember_output(index_path: Path, out: Path) -> None:
    """Record, beside the sorted folder's index, that it was sorted into OUT: the proof
    `sort.confirm_source` asks for before undo or a correction writes into the folder a
    manifest names (one file per OUT, named by a hash of its real path)."""
    out = os.path.realpath(out)
    folder = Path(index_path).with_suffix(".outputs")
    safepath.real_folder(folder.parent, create=folder.parent.name == INDEX_DIRNAME)
    safepath.real_folder(folder, create=True)
    record = folder / hashlib.sha1(os.fsencode(out)).hexdigest()[:20]
    if safepath.read_own(record) != os.fsencode(out):
        safepath.write_own(record, os.fsencode(out))


def records_output(index_path: Path, out: Path) -> bool:
    """True when the index at `index_path` records a sort into OUT (`remember_output`). Reads only."""
    out = os.path.realpath(out)
    folder = Path(index_path).with_suffix(".outputs")
    try:
        if os.path.islink(folder) or os.path.islink(folder.parent):
            return False
        return safepath.read_own(folder / hashlib.sha1(os.fsencode(out)).hexdigest()[:20]) == os.fsencode(out)
    except (OSError, safepath.Unsafe):
        return False


def recorded_outputs(index_path: Path) -> list[Path]:
    """Every output folder the index at `index_path` records a sort into (`remember_output`)."""
    folder = Path(index_path).with_suffix(".outputs")
    if os.path.islink(folder) or not folder.is_dir():
        return []
    found = []
    for record in sorted(folder.iterdir()):
        try:
            out = safepath.read_own(record)
        except (OSError, safepath.Unsafe):
            continue
        if out and hashlib.sha1(out).hexdigest()[:20] == record.name:
            found.append(Path(os.fsdecode(out)))
    return found


class Index:
    def __init__(self, path: Path):
        self.path = Path(path)
        if self.path.parent.name == INDEX_DIRNAME:  # DIR/.illusort: a real folder, never a link
            safepath.real_folder(self.path.parent, create=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-journal"):  # sqlite follows links: refuse them
            if os.path.islink(f"{self.path}{suffix}"):
                raise safepath.Unsafe(f"{self.path}{suffix} is a symbolic link; illusort does not follow links "
                                      "at its own files (remove the link)")
        try:
            self.db = self._open()
        except sqlite3.OperationalError as error:
            if not damaged(error):
                raise IndexUnusable(f"cannot open the index {self.path}: {error}") from None
            self._move_aside(error)
        except sqlite3.DatabaseError as error:
            self._move_aside(error)
        self._lock_file = None

    def _open(self) -> sqlite3.Connection:
        if os.path.lexists(self.path) and not os.path.isfile(self.path):
            raise sqlite3.DatabaseError("not a file")
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            for table, columns in COLUMNS.items():
                db.execute(f"SELECT {columns} FROM {table} LIMIT 0")
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, error: Exception) -> None:
        """Keep the damaged index under another name and start a new one (see the module note)."""
        kept = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.rename(self.path, kept)
            for suffix in ("-wal", "-shm", "-journal"):
                if os.path.lexists(f"{self.path}{suffix}"):
                    os.rename(f"{self.path}{suffix}", f"{kept}{suffix}")
            self.db = self._open()
        except (OSError, sqlite3.Error) as again:
            raise IndexUnusable(f"the index {self.path} is damaged ({error}) and could not be moved aside ({again}); "
                              f"move it away yourself to start a new one") from None
        warnings.warn(f"the index {self.path} was damaged ({error}): kept as {kept.name}, started a new one "
                      "(images are embedded again)", stacklevel=3)

    def close(self) -> None:
        self.db.close()
        if self._lock_file:
            self._lock_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def writing(self):
        """Exclusive writer lock (a second `embed`/`sort` on the same folder refuses clearly)."""
        with exclusive_lock(self.path.with_suffix(".lock"),
                            IndexBusy(f"another illusort run is writing {self.path}; wait for it to finish")):
            try:
                yield self
            finally:
                self.db.commit()

    # ---- reading -------------------------------------------------------------------------
    def file_stats(self, model: str) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, digest) for every file known under `model`."""
        rows = self.db.execute("SELECT path, size, mtime_ns, digest FROM items WHERE model=? AND face=0",
                               (model,))
        return {os.fsdecode(p): (s, m, d) for p, s, m, d in rows}

    def rows_by_digest(self, model: str, digest: str) -> list[Row]:
        rows = self.db.execute("SELECT path, face, box, vector, error FROM items WHERE model=? AND digest=? "
                               "ORDER BY path, face", (model, digest)).fetchall()
        if not rows:
            return []
        first = rows[0][0]
        return [_row(os.fsdecode(r[0]), *r[1:]) for r in rows if r[0] == first]

    def known_digests(self, model: str, digests: list[str]) -> set[str]:
        """Which of these content hashes the index already holds (one query per batch)."""
        marks = ",".join("?" * len(digests))
        rows = self.db.execute(f"SELECT DISTINCT digest FROM items WHERE model=? AND digest IN ({marks})",
                               (model, *digests)) if digests else []
        return {d for (d,) in rows}

    def embeddings(self, model: str) -> tuple[list[Row], np.ndarray]:
        """All usable rows of `model` (sorted by path, face) and their vectors as one float32 matrix."""
        rows = self.db.execute("SELECT path, face, box, vector FROM items WHERE model=? AND vector IS NOT NULL "
                               "ORDER BY path, face", (model,)).fetchall()
        keys = [Row(os.fsdecode(p), f, json.loads(b) if b else None) for p, f, b, _ in rows]
        if not rows:
            return keys, np.zeros((0, 0), np.float32)
        return keys, np.stack([np.frombuffer(v, np.float32) for *_, v in rows])

    def usable_rows(self, model: str) -> int:
        """How many rows of `model` have a vector."""
        return self.db.execute("SELECT COUNT(*) FROM items WHERE model=? AND vector IS NOT NULL", (model,)).fetchone()[0]

    def stamp(self) -> tuple[str, int]:
        """(identity of this index file, count of changes to its rows): equal stamps mean the
        same rows. The count is kept by triggers in the file, so any writer bumps it."""
        identity = self.get_meta(META_IDENTITY)
        if identity is None:
            import uuid

            self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                            (META_IDENTITY, json.dumps(uuid.uuid4().hex)))
            self.db.commit()
            identity = self.get_meta(META_IDENTITY)
        return identity, self.db.execute("SELECT n FROM changes").fetchone()[0]

    def search_vectors(self, model: str) -> tuple["SearchKeys", np.ndarray]:
        """What `query` reads: (path, face) of every usable row of `model` and their vectors,
        in the order and with the values of `embeddings`, from a memory-mapped cache beside
        the index (`VectorCache`), rebuilt when the index has changed. Falls back to reading
        the index when the cache cannot be used."""
        from . import fastpaths

        if fastpaths.enabled("vcache"):
            try:
                return VectorCache(self).load(model)
            except (OSError, ValueError, sqlite3.Error):
                pass  # a cache that cannot be written or read: the index has everything
        rows, vectors = self.embeddings(model)
        return SearchKeys.from_rows(rows), vectors

    def errors(self, model: str) -> list[tuple[str, str]]:
        rows = self.db.execute("SELECT path, error FROM items WHERE model=? AND error IS NOT NULL ORDER BY path",
                               (model,))
        return [(os.fsdecode(p), e) for p, e in rows]

    def models(self) -> list[str]:
        return [m for (m,) in self.db.execute("SELECT DISTINCT model FROM items ORDER BY model")]

    def decisions(self) -> dict[tuple[str, int], str]:
        """(path, face) -> the character the user put it in (`name`, `merge`, `move`). The index
        is as editable as the folder it lives in: a stored name that could not be typed (`..`,
        `/x`, `.illusort`, see `safepath.bad_name`) is ignored, with a warning."""
        found, ignored = {}, set()
        for p, f, c in self.db.execute("SELECT path, face, character FROM decisions"):
            if safepath.bad_name(c):
                ignored.add(repr(c))
            else:
                found[os.fsdecode(p), f] = c
        if ignored:
            warnings.warn(f"{self.path}: ignored decisions naming {', '.join(sorted(ignored))}, "
                          "which cannot be a folder name", stacklevel=2)
        return found

    def rejections(self) -> dict[tuple[str, int], set[str]]:
        """(path, face) -> the characters the user said it is not."""
        return read_rejections(self.db)[0]

    def clustering(self, run: str) -> dict[tuple[str, int], tuple[int, float]]:
        """(path, face) -> (label, probability) of the last clustering saved under `run`."""
        rows = self.db.execute("SELECT path, face, label, probability FROM clusterings WHERE run=?", (run,))
        return {(os.fsdecode(p), f): (lab, prob) for p, f, lab, prob in rows}

    # ---- writing -------------------------------------------------------------------------
    def save_clustering(self, run: str, keys, labels, probabilities) -> None:
        self.db.execute("DELETE FROM clusterings WHERE run=?", (run,))
        self.db.executemany("INSERT INTO clusterings(run, path, face, label, probability) VALUES (?,?,?,?,?)",
                            [(run, os.fsencode(p), int(f), int(lab), float(prob))
                             for (p, f), lab, prob in zip(keys, labels, probabilities)])
        self.db.commit()

    def decide(self, keys, character: str) -> None:
        """Record that these (path, face) rows are `character`, for this and later sorts."""
        self.db.executemany("INSERT OR REPLACE INTO decisions(path, face, character) VALUES (?,?,?)",
                            [(os.fsencode(p), int(f), character) for p, f in keys])
        self.db.commit()

    def decide_many(self, decided: dict[tuple[str, int], str | None]) -> None:
        """Set (or, for None, forget) the decision of each (path, face): how undo restores them."""
        for (p, f), character in decided.items():
            if character is None:
                self.db.execute("DELETE FROM decisions WHERE path=? AND face=?", (os.fsencode(p), int(f)))
            else:
                self.db.execute("INSERT OR REPLACE INTO decisions(path, face, character) VALUES (?,?,?)",
                                (os.fsencode(p), int(f), character))
        self.db.commit()

    def reject(self, keys, character: str, forget: bool = False) -> None:
        """Remember (or, with `forget`, drop) that these (path, face) rows are not `character`."""
        sql = ("DELETE FROM rejections WHERE path=? AND face=? AND character=?" if forget else
               "INSERT OR IGNORE INTO rejections(path, face, character) VALUES (?,?,?)")
        self.db.executemany(sql, [(os.fsencode(p), int(f), character) for p, f in keys])
        self.db.commit()

    def dismiss(self, keys, forget: bool = False) -> None:
        sql = "DELETE FROM dismissed WHERE key=?" if forget else "INSERT OR IGNORE INTO dismissed(key) VALUES (?)"
        self.db.executemany(sql, [(k,) for k in keys])
        self.db.commit()

    def rename_character(self, old: str, new: str) -> None:
        """A renamed folder keeps what was said against it ("not OLD" is now "not NEW")."""
        self.db.execute("UPDATE OR IGNORE rejections SET character=? WHERE character=?", (new, old))
        self.db.commit()

    def journal(self, out: str, what: str, undo: dict) -> None:
        self.db.execute("INSERT INTO journal(out, what, undo) VALUES (?,?,?)", (out, what, json.dumps(undo)))
        self.db.commit()

    def last_journal(self, out: str) -> tuple[int, str, dict] | None:
        """(seq, what, undo record) of OUT's last correction; a record that is not a JSON object is {}."""
        row = self.db.execute("SELECT seq, what, undo FROM journal WHERE out=? ORDER BY seq DESC LIMIT 1",
                              (out,)).fetchone()
        if row is None:
            return None
        try:
            record = json.loads(row[2])
        except (TypeError, ValueError):
            record = {}
        return row[0], str(row[1]), record if isinstance(record, dict) else {}

    def drop_journal(self, seq: int | None = None, out: str | None = None) -> None:
        """Forget one journaled correction (`seq`), or all of OUT's (a new sort re-planned it)."""
        self.db.execute("DELETE FROM journal WHERE seq=? OR out=?", (seq, out))
        self.db.commit()

    def put(self, model: str, path: str, size: int, mtime_ns: int, digest: str | None, rows: list[Row]) -> None:
        """Replace every row of `path` under `model` (not committed: see `commit`)."""
        self.db.execute("DELETE FROM items WHERE model=? AND path=?", (model, os.fsencode(path)))
        self.db.executemany(
            "INSERT INTO items(model, path, face, size, mtime_ns, digest, box, vector, error) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            [(model, os.fsencode(path), r.face, size, mtime_ns, digest, json.dumps(r.box) if r.box else None,
              None if r.vector is None else np.asarray(r.vector, np.float32).tobytes(), r.error)
             for r in rows])

    def remove(self, model: str, paths) -> None:
        self.db.executemany("DELETE FROM items WHERE model=? AND path=?", [(model, os.fsencode(p)) for p in paths])

    def commit(self) -> None:
        self.db.commit()

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))
        self.db.commit()


def read_rejections(db: sqlite3.Connection) -> tuple[dict[tuple[str, int], set[str]], set[str]]:
    """What the user said no to: {(path, face): characters it is not}, and the keys of dismissed
    suggestions. Empty for an index from before they were kept (read-only, no tables)."""
    found: dict[tuple[str, int], set[str]] = {}
    try:
        rows = db.execute("SELECT path, face, character FROM rejections").fetchall()
        dismissed = {k for (k,) in db.execute("SELECT key FROM dismissed") if isinstance(k, str)}
    except sqlite3.OperationalError:
        return {}, set()
    for p, f, c in rows:
        if isinstance(p, (bytes, str)) and isinstance(f, int) and isinstance(c, str):
            found.setdefault((os.fsdecode(p), f), set()).add(c)
    return found, dismissed


def _row(path, face, box, vector, error) -> Row:
    return Row(path, face, json.loads(box) if box else None,
               None if vector is None else np.frombuffer(vector, np.float32), error)


def damaged(error: sqlite3.OperationalError) -> bool:
    """An OperationalError that says the file is not a usable index (rather than that the disk
    is full, read-only or locked, which moving the index aside would not fix)."""
    text = str(error).lower()
    return any(s in text for s in ("no such column", "no such table", "has no column", "malformed", "not a database"))


class SearchKeys:
    """(path, face) of each row of a vector matrix: paths kept as one byte string and offsets
    (memory-mapped from the cache), decoded only for the rows asked for."""

    def __init__(self, blob, offsets: np.ndarray, faces: np.ndarray):
        self.blob, self.offsets, self.faces = blob, offsets, faces

    @classmethod
    def from_rows(cls, rows: list[Row]) -> "SearchKeys":
        encoded = [os.fsencode(r.path) for r in rows]
        offsets = np.zeros(len(rows) + 1, np.int64)
        offsets[1:] = np.cumsum([len(e) for e in encoded])
        return cls(np.frombuffer(b"".join(encoded), np.uint8), offsets, np.array([r.face for r in rows], np.int32))

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int) -> tuple[str, int]:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return os.fsdecode(bytes(self.blob[start:end])), int(self.faces[i])


class VectorCache:
    """The vectors of one model as raw float32 arrays beside the index
    (`index.db.vectors/<model key>-*.npy`, memory-mapped: a query over 100k rows reads no
    SQLite blob), valid while the index's `stamp` is the one they were written at."""

    FORMAT = 1

    def __init__(self, index: Index):
        self.index = index
        self.folder = index.path.with_name(index.path.name + VECTOR_CACHE_SUFFIX)

    def key(self, model: str) -> str:
        return hashlib.sha1(model.encode("utf-8", "surrogateescape")).hexdigest()[:16]

    def load(self, model: str) -> tuple[SearchKeys, np.ndarray]:
        stamp = list(self.index.stamp())
        meta_path = self.folder / f"{self.key(model)}.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = None
        if not meta or meta.get("format") != self.FORMAT or meta.get("stamp") != stamp or meta.get("model") != model:
            meta = self.build(model, stamp)
        try:
            arrays = {name: np.load(self.folder / file, mmap_mode="r") for name, file in meta["files"].items()}
        except (OSError, ValueError):  # removed by a concurrent rebuild, or damaged: write it again
            meta = self.build(model, stamp)
            arrays = {name: np.load(self.folder / file, mmap_mode="r") for name, file in meta["files"].items()}
        vectors = arrays["vectors"] if meta["rows"] else np.zeros((0, 0), np.float32)
        return SearchKeys(arrays["paths"], arrays["offsets"], arrays["faces"]), vectors

    def build(self, model: str, stamp: list) -> dict:
        """Write the cache of `model` from the index (as `Index.embeddings` reads it)."""
        import uuid

        rows, vectors = self.index.embeddings(model)
        if list(self.index.stamp()) != stamp:  # a writer changed it meanwhile: use what was read, cache nothing
            raise ValueError("index changed while building the vector cache")
        keys = SearchKeys.from_rows(rows)
        self.folder.mkdir(exist_ok=True)
        tag = f"{self.key(model)}-{uuid.uuid4().hex[:8]}"
        files = {}
        for name, array in (("vectors", np.ascontiguousarray(vectors, np.float32)), ("paths", keys.blob),
                            ("offsets", keys.offsets), ("faces", keys.faces)):
            files[name] = f"{tag}.{name}.npy"
            np.save(self.folder / files[name], array)
        meta = {"format": self.FORMAT, "model": model, "stamp": stamp, "rows": len(rows), "files": files}
        meta_path = self.folder / f"{self.key(model)}.json"
        tmp = meta_path.with_name(f".{tag}.json.tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)
        for old in self.folder.glob(f"{self.key(model)}-*.npy"):  # earlier versions (best effort)
            if old.name not in files.values():
                try:
                    old.unlink()
                except OSError:
                    pass
        return meta

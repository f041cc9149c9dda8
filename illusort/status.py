"""What a sort looks like now, read without changing anything and without loading a model:
`illusort status`, the suggestions for unsorted pictures, and the face boxes the review page
shows. Everything here reads OUT's manifest and the sorted folder's index (read-only).
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import InputError, MissingPath
from .index import default_index_path, open_read_only, recorded_outputs
from .layout import INDEX_DIRNAME, MANIFEST, META_LAST_SORT as LAST_SORT, NOT_A_CHARACTER, UNSORTED, sort_key
from .manifest import Entry, read_manifest
from .naming import folder_of
from .terminal import command, shell_word

NUMBERED = re.compile(r"character-\d+")


def find_sort(path: Path, verb: str = "report") -> tuple[Path, dict]:
    """(OUT, its manifest) for a command that works on a sort's output folder, with an error
    that names the right folder when the user gave the sorted folder, a missing path or a
    folder that holds no sort."""
    path = Path(path)
    if not path.exists():
        raise MissingPath(f"folder {path} does not exist; give the output folder of a sort "
                          "(illusort sort DIR --out OUT)")
    if not path.is_dir():
        raise InputError(f"{path} is not a folder; give the output folder of a sort")
    manifest = read_manifest(path)
    if manifest is not None:
        return path, manifest
    outputs = sorted_into_all(path)
    if len(outputs) == 1:
        raise InputError(f"{path} is the folder you sorted, not its output; run: {command('illusort', verb, outputs[0])}")
    if outputs:
        raise InputError(f"{path} is the folder you sorted, not its output; it was sorted into "
                         f"{len(outputs)} folders: {', '.join(map(shell_word, outputs))}; "
                         f"run: illusort {verb} OUT with one of them")
    above = enclosing_output(path)
    if above is not None:
        raise InputError(f"{path} is a folder inside the sort output {above}; give the output folder itself: "
                         f"{command('illusort', verb, above)} ...")
    if (path / INDEX_DIRNAME).is_dir():
        raise InputError(f"{path} is indexed but not sorted; sort it first: {command('illusort', 'sort', path)}")
    raise InputError(f"{path} holds no illusort sort (no {MANIFEST}); give the output folder of a sort")


def enclosing_output(path: Path) -> Path | None:
    """The sort output folder that PATH lies inside (a character folder, say), or None."""
    for parent in Path(path).resolve().parents:
        try:
            if read_manifest(parent) is not None:
                return parent
        except Exception:  # a damaged manifest elsewhere is not this command's problem
            continue
    return None


def sorted_into_all(root: Path) -> list[Path]:
    """Every output folder that still holds a sort of ROOT: those its index records
    (`index.recorded_outputs`), the last one (its meta), and the default ROOT-sorted;
    the last sort's first."""
    resolved = Path(root).resolve()
    meta = last_sort(open_index(root))
    candidates = [Path(meta["out"])] if meta.get("out") else []
    candidates += recorded_outputs(default_index_path(resolved)) if resolved.is_dir() else []
    candidates.append(resolved.with_name(resolved.name + "-sorted"))
    found = []
    for out in candidates:
        try:
            manifest = read_manifest(out)
        except Exception:  # a damaged manifest elsewhere is not this command's problem
            continue
        if manifest is not None and Path(manifest["source"]) == resolved and out not in found:
            found.append(out)
    return found


def sorted_into(root: Path) -> Path | None:
    """The output folder the last sort of ROOT wrote (recorded in its index, or the default
    ROOT-sorted), when it still holds that sort."""
    outputs = sorted_into_all(root)
    return outputs[0] if outputs else None


# ---- the index, read-only ---------------------------------------------------------------------

def open_index(root: Path, index_path: Path | None = None) -> sqlite3.Connection | None:
    """The sorted folder's index opened read-only, or None when there is none."""
    path = Path(index_path) if index_path else default_index_path(Path(root))
    if not path.is_file():
        return None
    try:
        db = open_read_only(path)
        db.execute("SELECT 1 FROM items LIMIT 1")
        return db
    except sqlite3.Error:
        return None


def last_sort(db: sqlite3.Connection | None, out: Path | None = None) -> dict:
    """The record of the last sort into OUT (of any output when OUT is None); {} when none."""
    if db is None:
        return {}
    try:
        row = db.execute("SELECT value FROM meta WHERE key=?", (sort_key(out) if out else LAST_SORT,)).fetchone()
        if row is None and out is not None:  # an index from before per-output records
            latest = last_sort(db)
            return latest if latest.get("out") == os.path.realpath(out) else {}
    except sqlite3.Error:
        return {}
    return json.loads(row[0]) if row else {}


def model_key(db: sqlite3.Connection | None, out: Path | None = None) -> str | None:
    """The index key of the model the last sort into OUT used (else the one with most rows)."""
    if db is None:
        return None
    meta = last_sort(db, out)
    if meta.get("model_id"):
        return meta["model_id"]
    row = db.execute("SELECT model FROM items GROUP BY model ORDER BY COUNT(*) DESC LIMIT 1").fetchone()
    return row[0] if row else None


def rows_of(db: sqlite3.Connection | None, model: str | None, vectors: bool = False) -> dict:
    """(path, face) -> box (and vector when asked) of `model`'s usable rows."""
    if db is None or model is None:
        return {}
    rows = db.execute("SELECT path, face, box" + (", vector" if vectors else "") +
                      " FROM items WHERE model=? AND vector IS NOT NULL", (model,))
    found = {}
    for path, face, box, *vector in rows:
        box = json.loads(box) if box else None
        found[os.fsdecode(path), face] = (box, np.frombuffer(vector[0], np.float32)) if vectors else box
    return found


def relative(e: Entry, source: str) -> str:
    """An entry's source relative to the sorted folder, as the index keys it (manifest sources
    are normalised absolute paths: `manifest.checked_entry`)."""
    prefix = source.rstrip("/") + "/"
    return e.src[len(prefix):] if e.src.startswith(prefix) else e.src


def face_boxes(manifest: dict, db: sqlite3.Connection | None, model: str | None,
               rows: dict | None = None) -> dict[str, list]:
    """dest -> the face box that placed the picture in its folder (only for face crops).
    `rows`: `rows_of(db, model, vectors=True)` when the caller has them already."""
    boxes = rows_of(db, model) if rows is None else {key: box for key, (box, _) in rows.items()}
    found = {}
    for e in manifest["entries"]:
        rel = relative(e, manifest["source"])
        for face in e.faces:
            if boxes.get((rel, face)):
                found[e.dest] = boxes[rel, face]
                break
    return found


# ---- suggestions for unsorted pictures -------------------------------------------------------

def face_vectors(manifest: dict, rows: dict, placed: bool) -> tuple[list, list, list]:
    """(vectors, dests, folders) of every face in the index of the pictures in a character
    folder (`placed`), or of those in unsorted/. `rows`: `rows_of(db, model, vectors=True)`."""
    source, vectors, dests, folders = manifest["source"], [], [], []
    for e in manifest["entries"]:
        folder = folder_of(e.dest)
        if (folder and folder not in (UNSORTED, NOT_A_CHARACTER)) if placed else folder == UNSORTED:
            for face in e.faces:
                row = rows.get((relative(e, source), face))
                if row is not None:
                    vectors.append(row[1])
                    dests.append(e.dest)
                    folders.append(folder)
    return vectors, dests, folders


def suggestions(manifest: dict, db: sqlite3.Connection | None, model: str | None,
                out: Path | None = None, rows: dict | None = None) -> dict[str, dict]:
    """dest of each unsorted picture -> {'folder', 'similarity', 'command'}: the character
    folder holding its most similar picture (cosine similarity of the embeddings, best face
    against any member face), and the one `illusort move` that accepts the suggestion.
    `rows`: `rows_of(db, model, vectors=True)` when the caller has them already."""
    rows = rows_of(db, model, vectors=True) if rows is None else rows
    members, _, names = face_vectors(manifest, rows, placed=True)
    if not members:
        return {}
    member_matrix = np.stack(members)
    threshold = last_sort(db, out).get("threshold")  # the model's same-character point
    faces, owners, _ = face_vectors(manifest, rows, placed=False)
    best: dict[str, tuple[float, int]] = {}  # dest -> (similarity, member) of its best face
    for start in range(0, len(faces), 1024):  # one matrix product per block: 10,000 pictures in a blink
        sims = np.stack(faces[start:start + 1024]) @ member_matrix.T
        top = sims.argmax(axis=1)
        for dest, member, sim in zip(owners[start:start + 1024], top, sims[np.arange(len(top)), top]):
            if dest not in best or sim > best[dest][0]:
                best[dest] = (float(sim), int(member))
    found = {}
    for dest, (sim, member) in best.items():
        folder = names[member]
        found[dest] = {"folder": folder, "similarity": round(sim, 3),
                       "command": command("illusort", "move", out or "OUT", dest, "--to", folder)}
        if threshold is not None:
            found[dest]["likely"] = bool(sim >= threshold)
    return found


def confidence(manifest: dict, rows: dict) -> dict[str, float]:
    """dest of each picture in a character folder -> cosine similarity of its best face to the
    mean of its folder: the review page shows the least confident first, where mistakes are.
    `rows`: `rows_of(db, model, vectors=True)`."""
    vectors, owners, folders = face_vectors(manifest, rows, placed=True)
    if not vectors:
        return {}
    matrix = np.stack(vectors)
    names, index = np.unique(folders, return_inverse=True)
    order = np.argsort(index, kind="stable")
    means = np.add.reduceat(matrix[order], np.searchsorted(index[order], np.arange(len(names))))
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    sims = np.einsum("ij,ij->i", matrix, means[index])
    found: dict[str, float] = {}
    for dest, sim in zip(owners, sims.tolist()):
        found[dest] = max(found.get(dest, -2.0), round(sim, 3))
    return found


# ---- status -----------------------------------------------------------------------------------

def status(path: Path) -> dict:
    """Where a sort stands: PATH is its output folder or the folder that was sorted."""
    path = Path(path)
    if not path.exists():
        raise MissingPath(f"folder {path} does not exist")
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest is not None:
        out, root = path, Path(manifest["source"])
    else:
        if not path.is_dir():
            raise InputError(f"{path} is not a folder; give a sorted folder or the output of a sort")
        root, out = path, sorted_into(path)
        if out is None:
            db = open_index(root)
            if db is None:
                raise InputError(no_sort_here(path))
            db.close()
        manifest = read_manifest(out) if out else None
    db = open_index(root)
    try:  # absolute paths throughout: the JSON and the commands shown work from any folder
        return _status(Path(root).resolve(), Path(out).resolve() if out else None, manifest, db)
    finally:
        if db is not None:
            db.close()


def no_sort_here(path: Path) -> str:
    """Why `status PATH` has nothing to show. It offers no `illusort sort PATH`: PATH may be
    /tmp, or an output folder emptied by undo, and sorting either is not what was meant."""
    above = enclosing_output(path)
    if above is not None:
        return f"{path} is a folder inside the sort output {above}; run: {command('illusort', 'status', above)}"
    return (f"{path} holds no sort and has no index: it is neither a sort's output (an undone one leaves none) "
            "nor a sorted folder; give the folder you sorted or its output folder (illusort sort DIR makes one)")


def _status(root: Path, out: Path | None, manifest: dict | None, db) -> dict:
    meta = last_sort(db, out)
    model = model_key(db, out)
    result = {"folder": str(root), "out": str(out) if out else None, "model": meta.get("model") or model,
              "faces": meta.get("faces"), "last_run": meta.get("time") or (manifest or {}).get("updated"),
              "mode": (manifest or {}).get("mode")}
    indexed, skipped = Counter(), []
    if db is not None and model:
        for (p,) in db.execute("SELECT DISTINCT path FROM items WHERE model=? AND vector IS NOT NULL", (model,)):
            indexed[os.fsdecode(p)] += 1
        skipped = [(os.fsdecode(p), e) for p, e in
                   db.execute("SELECT path, error FROM items WHERE model=? AND error IS NOT NULL ORDER BY path",
                              (model,))]
    result["indexed"] = len(indexed)
    result["skipped"] = [{"path": p, "reason": r} for p, r in skipped]
    shown = in_out(out, manifest)
    folders = Counter(folder_of(e.dest) or UNSORTED for e in (shown or {}).get("entries", []))
    result["folders"] = dict(sorted(folders.items(), key=lambda kv: (kv[0] in (UNSORTED, NOT_A_CHARACTER),
                                                                       -kv[1], kv[0])))
    characters = [f for f in folders if f not in (UNSORTED, NOT_A_CHARACTER)]
    result["named"] = sorted(f for f in characters if not NUMBERED.fullmatch(f))
    result["numbered"] = sorted(f for f in characters if NUMBERED.fullmatch(f))
    result["unsorted"] = folders.get(UNSORTED, 0)
    result["not_a_character"] = folders.get(NOT_A_CHARACTER, 0)
    result["suggestions"] = ([{"file": dest, **s} for dest, s in sorted(suggestions(shown, db, model, out).items())]
                             if manifest else [])
    result["rerun"] = rerun_changes(root, out, manifest, db, model, meta)
    result["sort_again"] = sort_again(root, out, meta)
    return result


def in_out(out: Path | None, manifest: dict | None) -> dict | None:
    """The manifest with only the entries still in OUT (a link deleted by hand is not shown)."""
    from .sort import present

    return {**manifest, "entries": present(out, manifest["entries"])} if manifest and out else manifest


def sort_again(root: Path, out: Path | None, meta: dict) -> str:
    """The `illusort sort` that repeats the last sort (output folder, model, faces, mode): the
    one that reuses the index's vectors instead of embedding the pictures again."""
    from .registry import DEFAULT_MODEL
    from .workflow import default_output

    out = out or (Path(meta["out"]) if meta.get("out") else None)
    model = meta.get("model_arg", meta.get("model"))
    options = meta.get("options") or {}
    words = ["illusort", "sort", str(root)]
    for option, value, default in (("--out", out and str(out), str(default_output(root).resolve())),
                                   ("--model", model, DEFAULT_MODEL), ("--layer", meta.get("layer"), None),
                                   ("--faces", meta.get("faces"), "auto"), ("--precision", meta.get("precision"), "auto"),
                                   ("--mode", meta.get("mode"), "symlink"), ("--known", meta.get("known"), None),
                                   *((f"--{name.replace('_', '-')}", options.get(name), CLUSTER_DEFAULTS[name])
                                     for name in CLUSTER_DEFAULTS)):
        if value is not None and value != default:
            words += [option, str(value)]
    if "strictness" in options and options["strictness"] is None:
        words.append("--paper-selection")
    return command(*words)


# The clustering options as the command line gives them (`cli.cluster_options`) with their
# defaults: a repeated sort must cluster as the last one did, or it would not reuse its clustering.
CLUSTER_DEFAULTS = {"algorithm": "auto", "min_cluster_size": None, "strictness": 0.5, "min_samples": 1,
                    "umap_dims": 32, "seed": None, "similarity": None}


def rerun_changes(root: Path, out: Path | None, manifest: dict | None, db, model: str | None,
                  meta: dict | None = None) -> dict:
    """What `illusort sort` would change in OUT now, against what OUT's last sort placed (its
    manifest) and recorded (`meta`): pictures new (or indexed since by another command but not
    in OUT), changed or deleted (by size and mtime, nothing read), entries deleted from OUT by
    hand, corrections OUT does not show yet (made while a sort ran), a clustering made anew by a
    sort into another folder, and folders renamed by hand."""
    from .cluster import run_key
    from .images import find_images
    from .corrections import find_renamed_folders
    from .sort import moved_members, present

    known = {}
    if db is not None and model:
        known = {os.fsdecode(p): (size, mtime, usable) for p, size, mtime, usable in
                 db.execute("SELECT path, size, mtime_ns, vector IS NOT NULL FROM items WHERE model=? AND face=0",
                            (model,))}
    entries = [e for e in (manifest or {}).get("entries", []) if e.state == "done"]
    placed = {relative(e, str(root)) for e in entries}
    new, changed, seen = [], [], set()
    for rel in find_images(root):
        rel = rel.as_posix()
        seen.add(rel)
        try:
            st = os.stat(root / rel)
        except OSError:
            continue
        if rel not in known or (out and known[rel][2] and rel not in placed):
            new.append(rel)
        elif known[rel][:2] != (st.st_size, st.st_mtime_ns):
            changed.append(rel)
    deleted = sorted((set(known) | placed) - seen - moved_members(root, default_index_path(root)))
    on_disk = present(out, entries) if out else []
    missing = sorted({e.dest for e in entries} - {e.dest for e in on_disk})
    meta = meta or {}
    unapplied = not_in_place(db, model, on_disk, str(root)) if manifest and manifest["mode"] != "move" else []
    reclustered = False
    if db is not None and model and meta.get("clustering"):
        run = run_key(meta.get("options") or {}, model, meta.get("threshold"))
        now = db.execute("SELECT value FROM meta WHERE key=?", (f"clustered {run}",)).fetchone()
        reclustered = now is not None and json.loads(now[0]).get("digest") != meta["clustering"]
    renamed = find_renamed_folders(out, entries) if manifest and out and Path(out).is_dir() else {}
    return {"new": new, "changed": changed, "deleted": deleted, "missing": missing, "corrections": unapplied,
            "reclustered": reclustered, "renamed_folders": renamed,
            "up_to_date": not (new or changed or deleted or missing or unapplied or reclustered or renamed)}


def not_in_place(db, model: str | None, entries: list[Entry], source: str) -> list[str]:
    """Pictures whose correction (`name`, `merge`, `move`) OUT does not show: a sort that was
    running meanwhile placed them by its older plan; a re-run puts them where you said."""
    if db is None or model is None:
        return []
    folders = {}
    for e in entries:
        folders.setdefault(relative(e, source), set()).add(folder_of(e.dest))
    usable = {(os.fsdecode(p), f) for p, f in
              db.execute("SELECT path, face FROM items WHERE model=? AND vector IS NOT NULL", (model,))}
    return sorted({path for path, face, character in ((os.fsdecode(p), f, c) for p, f, c in
                                                       db.execute("SELECT path, face, character FROM decisions"))
                   if (path, face) in usable and path in folders and character not in folders[path]})

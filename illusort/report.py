"""What a sort looks like, as pages: the static `illusort report OUT` (report.html, a snapshot
to share) and the pages `illusort review OUT` serves. Both come from one view of the sort
(`collect`) and one set of Jinja2 templates (illusort/templates/), which escape every value
by default: a manifest can be edited, and no name reaches a page unescaped.

Each character folder is a contact sheet. A picture placed by one of its faces (`--faces`) is
shown as that face crop, so the page shows why it is there (the whole picture is a click
away). Each unsorted picture shows the character it is nearest to, with the similarity and
the `illusort move` that accepts it. Thumbnails are JPEG files cached in OUT/.illusort-thumbs,
made once per source file version. The report marks and lists first the images new since the
previous report.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from . import safepath
from .images import BadImage, read_image
from .manifest import BUSY_WAIT, Entry, confirm_source, output_folder, output_lock, require_manifest
from .layout import REPORT, SEEN, SPECIAL_FOLDERS, THUMBS, UNSORTED
from .naming import folder_of
from .progress import progress_bar

THUMB_SIDE = 160


def shown(value):
    """Text as a page shows it: bytes of a name that is not UTF-8 become U+FFFD (escaping is
    the templates' own, by default)."""
    if not isinstance(value, str) or hasattr(value, "__html__"):  # markup made by a template is done
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@functools.cache
def templates():
    """The Jinja2 environment of every page: autoescape on for all of them."""
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("illusort", "templates"), autoescape=True,
                              finalize=shown, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def render(template: str, **context) -> str:
    return templates().get_template(template).render(**context)


@dataclass
class Picture:
    """One picture of OUT as a page shows it."""
    entry: Entry
    box: list | None = None      # the face that placed it, if one did
    hint: dict | None = None     # unsorted: the nearest character {'folder', 'similarity', 'command'}
    confidence: float | None = None  # similarity to its folder's mean
    new: bool = False

    @property
    def dest(self) -> str:
        return self.entry.dest

    @property
    def name(self) -> str:
        return Path(self.entry.dest).name

    @property
    def folder(self) -> str:
        return folder_of(self.entry.dest) or UNSORTED

    @property
    def classes(self) -> str:
        return " ".join(c for c, on in (("new", self.new), ("face", self.box)) if on)


@dataclass
class View:
    """A sort as the pages show it: its folders, characters first (largest first), then
    unsorted, then the pictures set aside."""
    out: Path
    root: str
    manifest: dict
    folders: dict[str, list[Picture]] = field(default_factory=dict)

    @property
    def order(self) -> list[str]:
        characters = sorted((f for f in self.folders if f not in SPECIAL_FOLDERS), key=lambda f: (-len(self.folders[f]), f))
        return characters + [f for f in SPECIAL_FOLDERS if f in self.folders]

    @property
    def characters(self) -> list[str]:
        return [f for f in self.order if f not in SPECIAL_FOLDERS]

    @functools.cached_property
    def pictures(self) -> dict[str, Picture]:
        return {p.dest: p for members in self.folders.values() for p in members}

    def readable(self, picture: Picture) -> str | None:
        """What a picture is read from: a moved file in OUT (a regular file, never a link),
        or a link's or copy's source inside IN; None for anything else."""
        try:
            if self.manifest["mode"] == "move":
                dest = safepath.dest_path(self.out, picture.dest)
                return str(dest) if safepath.is_regular(dest) else None
            return safepath.source_path(picture.entry.src, self.root, move=False)
        except safepath.Unsafe:
            return None

    def thumbnail(self, picture: Picture) -> str | None:
        """The cached thumbnail file name of a picture (made now if need be), or None."""
        readable = self.readable(picture)
        cache = safepath.real_folder(self.out / THUMBS, create=True)
        return thumbnail(readable, cache, picture.box) if readable else None


def collect(out: Path, source: Path | None = None, index_path: Path | None = None) -> View:
    """The view of OUT's sort: its pictures by folder (by name, least confident first in
    `by_confidence`), with the face that placed each one and each unsorted picture's nearest
    character, read from the sorted folder's index (read-only). Sources are read only inside
    the sorted folder (`source`, or the manifest's once confirmed)."""
    from . import status

    out = output_folder(out)
    manifest = status.in_out(out, require_manifest(out))  # a picture deleted from OUT is not shown
    root = str(confirm_source(out, manifest, source, index_path))
    db = status.open_index(Path(root), index_path)
    try:
        model = status.model_key(db, out)
        rows = status.rows_of(db, model, vectors=True)
        boxes = status.face_boxes(manifest, db, model, rows=rows)
        hints = status.suggestions(manifest, db, model, out, rows=rows)
        scores = status.confidence(manifest, rows)
    finally:
        if db is not None:
            db.close()
    view = View(out, root, manifest)
    for e in sorted((e for e in manifest["entries"] if e.state == "done"), key=lambda e: e.dest):
        picture = Picture(e, boxes.get(e.dest), hints.get(e.dest), scores.get(e.dest))
        view.folders.setdefault(picture.folder, []).append(picture)
    return view


def by_confidence(pictures: list[Picture]) -> list[Picture]:
    """Least confident first (where the mistakes are); suggestions by similarity, weakest first."""
    def score(p: Picture) -> float:
        return p.confidence if p.confidence is not None else p.hint["similarity"] if p.hint else 2.0
    return sorted(pictures, key=lambda p: (score(p), p.dest))


def thumbnail(src: str, cache: Path, box: list | None = None) -> str | None:
    """Cached thumbnail file name of an image, or of its face crop `box` (pixels of the image
    as `embed` decodes it); None if it cannot be read. `src` is checked by the caller (inside
    IN, or a regular file of OUT)."""
    try:
        st = os.stat(src)
    except OSError:
        return None
    key = hashlib.sha1(f"{src}\0{st.st_size}\0{st.st_mtime_ns}\0{box}".encode("utf-8", "surrogateescape")).hexdigest()
    name = f"{key[:20]}.jpg"
    if not safepath.is_regular(cache / name):
        try:
            if box:
                from .faces import DECODE_SIDE

                image, _ = read_image(Path(src), max_side=DECODE_SIDE)
                image = image.crop(tuple(box))
            else:
                image, _ = read_image(Path(src), max_side=THUMB_SIDE * 2)
        except BadImage:
            return None
        image.thumbnail((THUMB_SIDE, THUMB_SIDE))
        data = io.BytesIO()
        image.save(data, "JPEG", quality=85)
        safepath.write_own(cache / name, data.getvalue())
    return name


def write_report(out: Path, progress: bool = True, source: Path | None = None,
                 index_path: Path | None = None) -> tuple[Path, dict]:
    """Write OUT/report.html; returns (its path, {'images', 'characters', 'new'})."""
    out = output_folder(out)
    with output_lock(out, BUSY_WAIT):
        return _write_report(out, progress, source, index_path)


def _write_report(out: Path, progress: bool, source: Path | None, index_path: Path | None) -> tuple[Path, dict]:
    view = collect(out, source, index_path)
    seen_file = out / SEEN
    try:
        raw = safepath.read_own(seen_file)
        seen = set(json.loads(raw)) if raw is not None else None
    except (ValueError, TypeError):  # damaged: mark nothing as new
        seen = None
    pictures = list(view.pictures.values())
    thumbs = {}
    for p in progress_bar(pictures, desc="thumbnails", unit="img", enabled=progress and bool(pictures)):
        thumbs[p.dest] = view.thumbnail(p)  # a moved file lives in OUT now; links and copies are read from IN
        p.new = seen is not None and p.entry.src not in seen  # a picture renamed or moved is not new
    new = [p for p in pictures if p.new]
    page = render("report.html", view=view, new=len(new), out=out,
                  thumb=lambda p: thumbs[p.dest] and f"{THUMBS}/{thumbs[p.dest]}",
                  href=lambda p: quote(os.fsencode(p.dest)))
    path = out / REPORT
    safepath.write_own(path, page.encode("utf-8"))
    safepath.write_own(seen_file, json.dumps(sorted({p.entry.src for p in pictures}), ensure_ascii=True).encode())
    return path, {"images": len(pictures), "characters": len(view.characters), "new": len(new)}

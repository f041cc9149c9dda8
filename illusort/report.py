"""`illusort report OUT`: one HTML page to review a sort at a glance.

Each character folder is a contact sheet with its count; then the unsorted images and those
set aside as not a character. Images new since the previous report are marked and listed
first. The page is self-contained (inline style, no network); thumbnails are JPEG files
cached in OUT/.illusort-thumbs, made once per source file version.

A picture placed by one of its faces (`--faces`) is shown as that face crop, so the page
shows why it is there (the whole picture is a click away). Each unsorted picture shows the
character it is nearest to, with the similarity and the `illusort move` that accepts it.
"""
from __future__ import annotations

import hashlib
import html
import io
import json
import os
from pathlib import Path
from urllib.parse import quote

from . import safepath
from .images import BadImage, read_image
from .manifest import BUSY_WAIT, confirm_source, output_folder, output_lock, require_manifest
from .naming import NOT_A_CHARACTER, UNSORTED, folder_of
from .progress import progress_bar

# The review page's files in OUT (`sort --undo` removes them too).
REPORT, THUMBS, SEEN = "report.html", ".illusort-thumbs", ".illusort-report.json"  # SEEN: pictures shown last time
REVIEW_FILES = (REPORT, THUMBS, SEEN)
TEMPORARIES = (".report.html.tmp", ".illusort-report.json.tmp")
THUMB_SIDE = 160

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin:1.4em 0 .4em}h2 small{color:#666;font-weight:normal}
.sheet{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0;width:160px;background:#fff;border:1px solid #ddd;border-radius:4px;overflow:hidden;position:relative}
figure img{display:block;width:160px;height:160px;object-fit:contain;background:#eee}
figure .missing{width:160px;height:160px;display:flex;align-items:center;justify-content:center;color:#a00}
figcaption{font-size:11px;padding:2px 4px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
figure.new{border:2px solid #e67e00}
figure.new::after{content:"new";position:absolute;top:4px;left:4px;background:#e67e00;color:#fff;
 font-size:11px;padding:0 4px;border-radius:3px}
.summary li{margin:.1em 0}
figure.face img{outline:2px solid #3a7bd5;outline-offset:-2px}
.suggest{font-size:10px;padding:0 4px 3px;color:#444;white-space:normal;word-break:break-all}
.suggest code{display:block;color:#666}
"""


def shown(text: str) -> str:
    """HTML-escaped text (every value that reaches the page goes through here: a manifest can be
    edited); bytes of a name that is not UTF-8 are shown as U+FFFD."""
    return html.escape(str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def folder_order(folders: dict[str, list]) -> list[str]:
    """Characters (largest first), then unsorted, then the images set aside."""
    special = [UNSORTED, NOT_A_CHARACTER]
    characters = sorted((f for f in folders if f not in special), key=lambda f: (-len(folders[f]), f))
    return characters + [f for f in special if f in folders]


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


def readable_source(e, out: Path, mode: str, source: str) -> str | None:
    """What a thumbnail is made from: a moved file in OUT (a regular file, never a link), or
    a link's or copy's source inside IN; None for anything else."""
    try:
        if mode == "move":
            dest = safepath.dest_path(out, e.dest)
            return str(dest) if safepath.is_regular(dest) else None
        return safepath.source_path(e.src, source, move=False)
    except safepath.Unsafe:
        return None


def write_report(out: Path, progress: bool = True, source: Path | None = None,
                 index_path: Path | None = None) -> tuple[Path, dict]:
    """Write OUT/report.html; returns (its path, {'images', 'characters', 'new'}). Sources are
    read only inside the sorted folder (`source`, or the manifest's once confirmed)."""
    out = output_folder(out)
    with output_lock(out, BUSY_WAIT):
        return _write_report(out, progress, source, index_path)


def faces_and_hints(manifest: dict, root: Path, index_path: Path | None, out: Path) -> tuple[dict, dict]:
    """From the sorted folder's index: the face box that placed each picture, and the nearest
    character suggested for each unsorted one (both empty without an index)."""
    from . import status

    db = status.open_index(root, index_path)
    try:
        model = status.model_key(db, out)
        return status.face_boxes(manifest, db, model), status.suggestions(manifest, db, model, out)
    finally:
        if db is not None:
            db.close()


def _write_report(out: Path, progress: bool, source: Path | None, index_path: Path | None) -> tuple[Path, dict]:
    from .status import in_out

    manifest = in_out(out, require_manifest(out))  # a picture deleted from OUT is not shown
    root = str(confirm_source(out, manifest, source, index_path))
    entries = [e for e in manifest["entries"] if e.state == "done"]
    seen_file = out / SEEN
    try:
        raw = safepath.read_own(seen_file)
        seen = set(json.loads(raw)) if raw is not None else None
    except (ValueError, TypeError):  # damaged: mark nothing as new
        seen = None
    folders: dict[str, list] = {}
    for e in entries:
        folders.setdefault(folder_of(e.dest) or UNSORTED, []).append(e)
    for members in folders.values():
        members.sort(key=lambda e: e.dest)
    cache = safepath.real_folder(out / THUMBS, create=True)
    boxes, hints = faces_and_hints(manifest, Path(root), index_path, out)
    thumbs = {}
    for e in progress_bar(entries, desc="thumbnails", unit="img", enabled=progress and bool(entries)):
        # a moved file lives in OUT now; links and copies are read from the source
        readable = readable_source(e, out, manifest["mode"], root)
        thumbs[e.dest] = thumbnail(readable, cache, boxes.get(e.dest)) if readable else None
    # new = a picture the previous report did not show (one renamed or moved is not new)
    new = {e.dest for e in entries if e.src not in seen} if seen is not None else set()
    order = folder_order(folders)
    characters = [f for f in order if f not in (UNSORTED, NOT_A_CHARACTER)]

    def figure(e) -> str:
        name = shown(Path(e.dest).name)
        href = quote(os.fsencode(e.dest))
        thumb = thumbs[e.dest]
        picture = (f'<img src="{THUMBS}/{thumb}" alt="{name}">' if thumb
                   else '<div class="missing">unreadable</div>')
        classes = " ".join(c for c, on in (("new", e.dest in new), ("face", e.dest in boxes)) if on)
        cls = f' class="{classes}"' if classes else ""
        why = " (placed by this face; click for the whole picture)" if e.dest in boxes else ""
        hint = hints.get(e.dest)
        suggestion = (f'<div class="suggest">nearest: {shown(hint["folder"])} {hint["similarity"]:.2f}'
                      f'<code>{shown(hint["command"])}</code></div>' if hint else "")
        return (f'<figure{cls}><a href="{href}">{picture}</a><figcaption title="{name}{why}">{name}</figcaption>'
                f'{suggestion}</figure>')

    parts = [f"<h1>{shown(Path(manifest['source']).name)}: {len(characters)} characters, "
             f"{len(entries)} images</h1>",
             f"<p>Sorted from {shown(manifest['source'])} ({shown(manifest['mode'])}), updated "
             f"{shown(manifest.get('updated', ''))}. Fix it with <code>illusort name OUT FOLDER NAME</code>, "
             "<code>illusort merge OUT INTO OTHER</code> and <code>illusort move OUT FILE --to NAME</code> "
             "(or <code>--not-character</code>); the next sort keeps your decisions.</p>"]
    if new:
        counts = [(n, f, sum(e.dest in new for e in folders[f])) for n, f in enumerate(order)]
        items = "".join(f'<li><a href="#f{n}">{shown(f)}</a>: {k} new</li>' for n, f, k in counts if k)
        parts.append(f'<h2 id="new">New since the last report <small>{len(new)} images</small></h2>'
                     f'<ul class="summary">{items}</ul>')
    for n, f in enumerate(order):
        n_new = sum(e.dest in new for e in folders[f])
        head = (f'<h2 id="f{n}">{shown(f)} <small>{len(folders[f])} images'
                + (f", {n_new} new" if n_new else "") + "</small></h2>")
        sheet = '<div class="sheet">' + "".join(figure(e) for e in folders[f]) + "</div>"
        section = f'<section class="character" data-folder="{shown(f)}">{head}{sheet}</section>'
        if f == NOT_A_CHARACTER:
            section = f"<details><summary>Set aside as not a character ({len(folders[f])})</summary>{section}</details>"
        parts.append(section)
    script = ("addEventListener('load',()=>{document.body.dataset.loadedImages="
              "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length})")
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>illusort report</title>'
            f"<style>{STYLE}</style></head><body>{''.join(parts)}<script>{script}</script></body></html>")
    path = out / REPORT
    safepath.write_own(path, page.encode("utf-8"))
    safepath.write_own(seen_file, json.dumps(sorted({e.src for e in entries}), ensure_ascii=True).encode())
    return path, {"images": len(entries), "characters": len(characters), "new": len(new)}

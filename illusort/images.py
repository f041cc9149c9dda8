"""Finding image files in a folder tree and opening them safely.

Real collections contain everything: CMYK JPEGs, 16-bit PNGs, palette images with
transparency, animated GIFs, truncated downloads, HTML saved as .jpg. Every such case
ends here as an RGB image or as a `BadImage` with a one-line reason, never a crash.
"""
from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from pathlib import Path

from PIL import Image, ImageOps
from .errors import IllusortError

from . import fastpaths
from .layout import MANIFEST

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
# Refuse images above this many pixels (a decompression bomb decodes to gigabytes).
MAX_PIXELS = 20_000 * 20_000
# ... and whose decoding would take more memory than this (Pillow holds RGB(A) as 4 bytes
# a pixel; a 1.5 MB 19999x19999 PNG is 1.5 GiB decoded), judged before decoding, after a
# JPEG's draft. Setting: ILLUSORT_MAX_DECODE_MB (default 1024).
MAX_DECODED_BYTES = int(float(os.environ.get("ILLUSORT_MAX_DECODE_MB") or 1024) * 2**20)
# Refuse files above this size before reading them (a 6 GB "x.jpg" would be read whole into
# memory). Setting: ILLUSORT_MAX_FILE_MB (default 256).
MAX_FILE_BYTES = int(float(os.environ.get("ILLUSORT_MAX_FILE_MB") or 256) * 2**20)
BACKGROUND = (255, 255, 255)  # alpha is flattened on white, like most image viewers


class BadImage(IllusortError):
    """An image file that cannot be used; the message is the one-line reason."""


class Unreadable(BadImage):
    """The file could not be read (permission, I/O error, not a regular file): unlike bad
    content, this may change without the file's size or mtime changing, so it is retried."""


def find_images(root: Path, exclude: Path | None = None, links: str = "inside",
                skipped: list | None = None) -> list[Path]:
    """Image files below `root`, sorted, as paths relative to `root`.

    Never enters hidden folders (the index folder `.illusort`), `exclude`, or a folder holding
    a sort manifest (an output folder: `IN/up -> ..` must not make OUT an input), judged by
    real path. Symbolic links, to folders or files, by `links`:
    - "inside": followed only when their target is inside `root` (sources are read only
      inside IN); others are skipped, with (path, reason) added to `skipped`;
    - "none": links to folders are never followed (`sort --mode move` must not empty a
      folder a link points at); links to files inside `root` are listed;
    - "any": followed wherever they lead (training and evaluation folders of links).
    A folder reached twice (a loop) is visited once, via its real path.
    """
    root = Path(root)
    root_real = os.path.realpath(root)
    excluded = os.path.realpath(exclude) if exclude else None
    found, seen_dirs = [], set()

    def skip(path: str, reason: str) -> None:
        if skipped is not None:
            skipped.append((Path(path).relative_to(root).as_posix(), reason))

    # fwalk lists each folder through its parent's descriptor: a folder deeper than the path
    # limit (PATH_MAX) is listed too, and its pictures are skipped by name when read.
    for dirpath, dirnames, filenames, _ in os.fwalk(root, follow_symlinks=True):
        real = os.path.realpath(dirpath)
        if (real in seen_dirs or real == excluded or os.path.lexists(os.path.join(real, MANIFEST))
                or real != root_real and os.path.basename(real).startswith(".")):
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        kept = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            path = os.path.join(dirpath, d)
            if os.path.islink(path) and links != "any":
                if links == "none":
                    skip(path, "symbolic link to a folder: not followed with --mode move")
                    continue
                if not _inside(os.path.realpath(path), root_real):
                    skip(path, "symbolic link to a folder outside the sorted folder: not followed")
                    continue
            kept.append(d)
        dirnames[:] = kept
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            path = os.path.join(dirpath, name)
            if links != "any" and os.path.islink(path) and not _inside(os.path.realpath(path), root_real):
                skip(path, "symbolic link to a file outside the sorted folder: not read")
                continue
            found.append(Path(path).relative_to(root))
    return sorted(found)


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip("/") + "/")


def file_digest(data: bytes) -> str:
    """Content hash used to recognise an unchanged (or renamed) file."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def open_image(data: bytes, max_side: int | None = None) -> Image.Image:
    """Decode image bytes to an RGB image; raise `BadImage` with the reason otherwise.

    `max_side` lets large files decode small: JPEG at a reduced scale (`Image.draft`, 2-3x
    faster), other formats reduced after decoding (`Image.reduce`, which makes the letterbox
    and resize that follow cheap); either way both sides stay at least `max_side`.
    """
    return decode(data, max_side)[0]


def decode(data: bytes, max_side: int | None = None, reduce: bool = True) -> tuple[Image.Image, tuple[int, int]]:
    """`open_image`, and the full size of the picture (after EXIF rotation): the image
    returned may be smaller, by draft (JPEG) or, with `reduce`, by `Image.reduce`."""
    if not data:
        raise BadImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            image = Image.open(io.BytesIO(data))
            check_size(*image.size)
            full = image.size
            if max_side and image.format == "JPEG":
                image.draft("RGB", (max_side, max_side))
            check_memory(*image.size, image.mode)
            image.seek(0)  # animated files: first frame
            image.load()
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by a quarter turn
                full = full[::-1]
            if reduce and max_side and image.mode in REDUCIBLE:  # first: the conversions then copy a small picture
                image = reduced(image, max_side)
            image = to_rgb(ImageOps.exif_transpose(image))
            return (reduced(image, max_side) if reduce and max_side else image), full
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage("too large (decompression-bomb limit)") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image, or a format Pillow cannot read") from None
    except Exception as error:  # PIL raises many types for broken files
        raise BadImage(f"cannot decode: {type(error).__name__}: {error}".splitlines()[0]) from None


def check_size(width: int, height: int) -> None:
    """Pixels, read from the header: a picture is refused before it is decoded. (Its shape
    costs nothing: `letterbox` reduces a long thin picture before it pads it.)"""
    if width * height > MAX_PIXELS:
        raise BadImage(f"too large ({width}x{height} pixels)")


def check_memory(width: int, height: int, mode: str) -> None:
    """What decoding (at `width` x `height`, after a JPEG's draft) and converting to RGB hold:
    4 bytes a pixel (Pillow's RGB and RGBA; a palette picture becomes RGBA, a 16-bit one 32-bit)."""
    need = width * height * 4
    if need > MAX_DECODED_BYTES:
        raise BadImage(f"too large to decode ({width}x{height} {mode} pixels take {need / 2**30:.1f} GiB; "
                       f"the limit is {MAX_DECODED_BYTES / 2**20:.0f} MB, setting ILLUSORT_MAX_DECODE_MB)")


# Modes `Image.reduce` averages correctly (a palette's indices, 1-bit and 16-bit are converted first).
REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK")


def letterbox(image: Image.Image, size: int) -> Image.Image:
    """`image` centred on a white square, `size` pixels a side: nothing of the character is
    cropped away. A long thin picture is reduced first (as `resize` would reduce the square),
    so the square never holds more than about (2 size)^2 pixels, whatever its shape."""
    factor = max(image.size) // (2 * size)
    if factor >= 2:
        image = image.reduce(factor)
    w, h = image.size
    side = max(w, h)
    if w != h:
        square = Image.new("RGB", (side, side), BACKGROUND)
        square.paste(image, ((side - w) // 2, (side - h) // 2))
        image = square
    return image.resize((size, size), Image.BILINEAR, reducing_gap=2.0)


def reduced(image: Image.Image, max_side: int) -> Image.Image:
    """`image` shrunk by the largest whole factor that keeps both sides >= `max_side`
    (`Image.reduce`: box averaging, fast), like a JPEG draft does while decoding."""
    factor = min(image.width // max_side, image.height // max_side)
    return image.reduce(factor) if factor >= 2 and fastpaths.enabled("draft") else image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is flattened on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v * (1 / 256)).convert("L")
    elif image.mode == "F":
        image = image.convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = image if image.mode == "RGBA" else image.convert("RGBA")  # convert() would copy
        flat = Image.new("RGB", image.size, BACKGROUND)
        flat.paste(image, mask=image.getchannel("A"))
        return flat
    return image.convert("RGB")


def read_image(path: Path, max_side: int | None = None) -> tuple[Image.Image, str]:
    """Read a file once: its decoded RGB image and its content hash."""
    data = read_regular_file(path)
    return open_image(data, max_side), file_digest(data)


def read_regular_file(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (default `MAX_FILE_BYTES`);
    `BadImage` for anything else.

    Opened non-blocking and checked with fstat on the open descriptor: reading a FIFO or a
    device named `x.png` would block forever (or never end), a stat before the open could be
    raced by a rename, and the size is known before a byte is read."""
    limit = MAX_FILE_BYTES if max_bytes is None else max_bytes
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise Unreadable(f"cannot read: {error.strerror or error}") from None
    with os.fdopen(fd, "rb") as f:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Unreadable(f"not a regular file ({file_kind(st.st_mode)})")
            if st.st_size > limit:
                raise BadImage(f"too large ({st.st_size / 2**20:.0f} MB; the limit is {limit / 2**20:.0f} MB, "
                               "setting ILLUSORT_MAX_FILE_MB)")
            data = f.read(limit + 1)  # grown since the fstat: still never more than the limit
            if len(data) > limit:
                raise BadImage(f"too large (over the {limit / 2**20:.0f} MB limit)")
            return data
        except OSError as error:
            raise Unreadable(f"cannot read: {error.strerror or error}") from None


def file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "special file"

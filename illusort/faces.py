"""Anime face crops: find the faces in an illustration, so each character in it is embedded
on its own and a full-body scene is compared face to face.

Detection is `animeface` (Viola-Jones-style detector of nagadomi's imager library). It only
works with Pillow < 12: with newer Pillow it returns no faces and no error, so
`check_detector` runs it on a face drawn here before any real work and refuses otherwise.
"""
from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw

from . import fastpaths
from .errors import IllusortError

FACE_MODES = ("auto", "always", "off")
# The detector's box runs from the eyebrows to the chin; the crop is ENLARGE times as wide
# and high, its centre moved up by RAISE box heights, so hair (colour, style: most of what
# tells characters apart) is inside.
ENLARGE, RAISE = 2.0, 0.25
MIN_LIKELIHOOD = 0.5
# `auto` crops only when the face crop is smaller than this share of the image: an icon or a
# bust is already mostly face, and cropping it drops hair and outfit (measured: RESULTS.md).
AUTO_MAX_SHARE = 0.35
DETECT_SIDE = 384  # detection runs on a copy this large (its cost grows with pixels)
DECODE_SIDE = 2048  # JPEGs are decoded at about this size, so small faces crop sharp


class FaceDetectorError(IllusortError, RuntimeError):
    """Face detection cannot run here; the message says what to install or which option to use."""


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels of the image given


# `auto` first looks at a copy this small (a tenth of the cost at DETECT_SIDE): a face that
# fills an icon or a bust (crop >= AUTO_MAX_SHARE of the image, so >= ~0.3 of its side) is
# still above the detector's smallest window (42.6 px) there, and such an image is kept whole
# whatever else it holds.
GLANCE_SIDE = 160
# The glance settles a picture only when its face fills this much of it: at 160 px the detector
# also "finds" large faces in scenes (measured: holoen scenes kept whole 6% more often, EER
# 29.2% -> 31.5%, with the glance settling at AUTO_MAX_SHARE).
GLANCE_FILLS = 0.5


def face_boxes(image: Image.Image, mode: str = "auto", full_size: tuple[int, int] | None = None) -> list[Box | None]:
    """Crops to embed for one image, largest face first; [None] = the whole image (`off`, no
    face found, or `auto` with a face that already fills most of the image).

    `full_size`: the picture's own size when `image` is a reduced decoding of it (draft):
    boxes are given in its pixels. `auto` skips the full detection when a low-resolution look
    (GLANCE_SIDE) already shows a face filling the picture. A small picture with no face found
    is looked at again enlarged to DETECT_SIDE: in card art and sprites of a few hundred
    pixels the faces are smaller than the detector's smallest window (measured on held-out
    card scenes: faces found in 12 of 30 instead of 5; RESULTS.md)."""
    if mode == "off":
        return [None]
    w, h = full_size or image.size
    small = shrunk(image, DETECT_SIDE)  # what the detector sees
    if mode == "auto" and fastpaths.enabled("faces") and max(small.size) > GLANCE_SIDE * 1.5:
        glance = detect(shrunk(small, GLANCE_SIDE), (w, h))
        if glance and fills_image(glance[0], w, h, GLANCE_FILLS):
            return [None]
    boxes = detect(small, (w, h))
    if not boxes and max(small.size) < DETECT_SIDE:
        factor = DETECT_SIDE / max(small.size)
        boxes = detect(small.resize((round(small.width * factor), round(small.height * factor)), Image.BICUBIC),
                       (w, h))
    if not boxes:
        return [None]
    if mode == "auto" and fills_image(boxes[0], w, h):
        return [None]
    return boxes


def shrunk(image: Image.Image, side: int) -> Image.Image:
    """An RGB copy of `image` at most `side` pixels large."""
    if max(image.size) <= side:
        return image if image.mode == "RGB" else image.convert("RGB")
    small = image.copy() if image.mode == "RGB" else image.convert("RGB")
    small.thumbnail((side, side), Image.BILINEAR)
    return small


def fills_image(box: Box, w: int, h: int, share: float = AUTO_MAX_SHARE) -> bool:
    """`auto` keeps the image whole when its largest face crop covers `share` of it or more."""
    return (box[2] - box[0]) * (box[3] - box[1]) >= share * w * h


def detect(small: Image.Image, full_size: tuple[int, int]) -> list[Box]:
    """Face crop boxes found in `small` (a reduced copy of the picture), in pixels of the
    picture (`full_size`), largest first."""
    import animeface

    w, h = full_size
    scale = w / small.width
    boxes = []
    for face in animeface.detect(small):
        if face.likelihood < MIN_LIKELIHOOD:
            continue
        p = face.face.pos
        cx, cy = scale * (p.x + p.width / 2), scale * (p.y + p.height / 2 - RAISE * p.height)
        half_w, half_h = scale * ENLARGE * p.width / 2, scale * ENLARGE * p.height / 2
        box = (max(0, round(cx - half_w)), max(0, round(cy - half_h)),
               min(w, round(cx + half_w)), min(h, round(cy + half_h)))
        if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
            boxes.append(box)
    boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
    return boxes


def crop(image: Image.Image, box: Box | None) -> Image.Image:
    return image if box is None else image.crop(box)


def draw_face(size: int = 256, hair=(120, 60, 40), iris=(60, 90, 200), skin=(255, 225, 205),
              background=(255, 255, 255)) -> Image.Image:
    """A simple anime face (big eyes, bangs) that animeface detects: the detector's self-test,
    and test material that needs no copyrighted art."""
    image = Image.new("RGB", (size, size), background)
    d, s = ImageDraw.Draw(image), size
    d.ellipse([0.18 * s, 0.12 * s, 0.82 * s, 0.95 * s], fill=hair)
    d.ellipse([0.25 * s, 0.25 * s, 0.75 * s, 0.88 * s], fill=skin)
    d.polygon([(0.2 * s, 0.45 * s), (0.5 * s, 0.15 * s), (0.8 * s, 0.45 * s), (0.5 * s, 0.3 * s)], fill=hair)
    for cx in (0.38, 0.62):
        w, h, cy = 0.065 * s, 0.085 * s, 0.52 * s
        d.ellipse([cx * s - w, cy - h, cx * s + w, cy + h], fill=(30, 20, 30))
        d.ellipse([cx * s - 0.8 * w, cy - 0.8 * h, cx * s + 0.8 * w, cy + 0.8 * h], fill=iris)
        d.ellipse([cx * s - 0.5 * w, cy - 0.7 * h, cx * s - 0.1 * w, cy - 0.3 * h], fill=(255, 255, 255))
    d.line([(0.46 * s, 0.76 * s), (0.54 * s, 0.76 * s)], fill=(180, 80, 80), width=max(1, s // 85))
    return image


@lru_cache(maxsize=1)
def check_detector() -> None:
    """Refuse face crops unless the detector finds the face of `draw_face` (once per process)."""
    import PIL

    try:
        import animeface
    except ImportError as error:
        raise FaceDetectorError(f"face crops need the animeface package ({error}); "
                                "pip install animeface 'pillow<12', or use --faces off") from None
    if not animeface.detect(draw_face()):
        raise FaceDetectorError(f"face detection finds nothing with Pillow {PIL.__version__} (animeface "
                                "needs Pillow < 12): pip install 'pillow<12', or use --faces off")

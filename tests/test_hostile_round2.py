"""The second hostile trial (issue 25): what a printed name, a path or a stored decision could
still do. One test (or more) per case: terminal escapes in names (rendered in a real terminal,
tmux), `#` and `?` in IN's path, hostile decisions stored in the index, pictures that would
take gigabytes to decode (under a memory cap), small model input sizes, names that are not
UTF-8 on a strict terminal, and a picture deeper than the path limit."""
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from conftest import draw_character, make_collection, run_cli
from hostile import changed, fingerprint, one_line_error

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")
REPO = Path(__file__).resolve().parents[1]


def png_header_only(path: Path, width: int, height: int, mode: str = "RGBA", depth: int = 8) -> Path:
    """A valid PNG of width x height whose pixels are all zero, written by streaming zlib (the
    picture itself is never held): a 19999^2 RGBA one is about 1.5 MB."""
    colour = {"L": 0, "RGB": 2, "RGBA": 6}[mode]
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    row = b"\0" * (1 + width * channels * depth // 8)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


CAPPED = textwrap.dedent("""
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]) << 20, int(sys.argv[2]) << 20))
    from illusort.images import BadImage, letterbox, read_image
    print("before", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10)
    start = time.time()
    try:
        image, _ = read_image(sys.argv[1], max_side=448)
        letterbox(image, 224)
        print("decoded", image.size)
    except BadImage as error:
        print("skipped:", error)
    print("seconds", round(time.time() - start, 1))
    print("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10)
""")


def decode_capped(path: Path, megabytes: int = 1024) -> str:
    """Decode (and letterbox, as embedding does) one picture in a process limited to
    `megabytes` of address space; returns what it printed."""
    done = subprocess.run([sys.executable, "-c", CAPPED, str(path), str(megabytes)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout


# 5 --------------------------------------------------------------------------------------------
def test_a_long_thin_picture_is_never_letterboxed_onto_a_huge_square(tmp_path):
    """Issue 25 case 5: a 1x100000 PNG of 467 bytes was letterboxed onto a 100000^2 square (20 GiB:
    killed, or a MemoryError traceback under a cap). Now it is reduced before it is padded: it
    embeds (as a 1x4000 one always did) under a 1 GiB memory cap, and so does a 300x30000 strip."""
    line = tmp_path / "line.png"
    Image.new("RGB", (1, 100000), (200, 0, 0)).save(line)
    assert line.stat().st_size < 1000
    assert "decoded (1, 100000)" in decode_capped(line)
    strip = tmp_path / "strip.png"
    Image.new("RGB", (300, 30000), (200, 0, 0)).save(strip)
    assert "decoded (300, 30000)" in decode_capped(strip)


# 9 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [8, 16])
def test_a_huge_png_just_inside_the_pixel_limit_is_skipped_before_decoding(tmp_path, depth):
    """Issue 25 case 9: a 1.5 MB 19999^2 RGBA PNG peaked at 5.4 GiB / 25 s. Its decoded size is
    judged from the header: skipped at once, with the reason, under a 1 GiB memory cap."""
    path = png_header_only(tmp_path / "huge.png", 19999, 19999, "RGBA", depth)
    assert path.stat().st_size < 40 * 2**20
    printed = decode_capped(path)
    assert "skipped: too large to decode (19999x19999" in printed and "ILLUSORT_MAX_DECODE_MB" in printed
    assert float(printed.split("seconds")[1].split()[0]) < 2, printed


def test_a_large_png_within_the_limit_is_reduced_before_it_is_converted(tmp_path):
    """8000x8000 RGBA (244 MiB decoded) peaks at about twice its decoded size, reduced before it
    is converted to RGB (before: 3.3 times, each conversion a full-size copy)."""
    path = png_header_only(tmp_path / "large.png", 8000, 8000, "RGBA")
    printed = decode_capped(path, 2048)
    assert "decoded (471, 471)" in printed
    grown = int(printed.split("peak")[1]) - int(printed.split("before")[1].split()[0])
    assert grown < 2.4 * 8000 * 8000 * 4 / 2**20, printed


# 8 --------------------------------------------------------------------------------------------
def deep_folder(root: Path, depth: int = 300) -> str:
    """root/a.../a... `depth` folders down (made through descriptors: the path passes PATH_MAX);
    returns the relative folder."""
    fd = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d" * 20, dir_fd=fd)
        fd, old = os.open("d" * 20, os.O_RDONLY, dir_fd=fd), fd
        os.close(old)
    picture = os.open("deep.png", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
    os.write(picture, (root / "c0_1.png").read_bytes())
    os.close(picture)
    os.close(fd)
    return "/".join(["d" * 20] * depth)


def test_a_picture_deeper_than_the_path_limit_is_skipped_by_name(tmp_path):
    """Issue 25 case 8: 300 folders down, a picture was neither sorted nor listed as skipped."""
    root = tmp_path / "pics"
    make_collection(root, characters=2, per_character=6, nested=False)
    folder = deep_folder(root)
    result = run_cli("sort", root, "--out", tmp_path / "out", *FAST, "--json")
    data = json.loads(result.stdout)
    assert data["pictures"] == 12
    assert [s["path"] for s in data["skipped"]] == [f"{folder}/deep.png"]
    assert "1 skipped" in run_cli("embed", root, *FAST[:-2]).output

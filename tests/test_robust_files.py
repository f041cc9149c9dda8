"""Bad files among good ones: every bad file is skipped with one warning line and counted,
`embed`/`sort` still exit 0 with a summary (`--strict`: 3), and odd-but-valid images are used.

Real files, real FIFOs and symlinks, real subprocesses (a FIFO bug hangs: a subprocess with
a timeout turns that into a failure instead of a stuck test run)."""
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from illusort import images
from illusort.index import Index, default_index_path
from illusort.layout import MANIFEST
from illusort.manifest import read_manifest
from illusort.terminal import shown  # how the CLI prints a path: escapes for control characters and bytes

from conftest import draw_character, index_key, make_collection, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


def cli(*args, timeout=120, **kw):
    """`python -m illusort.cli ARGS` in a subprocess; output decoded like the file system."""
    done = subprocess.run([sys.executable, "-m", "illusort.cli", *map(str, args)], capture_output=True,
                          timeout=timeout, **kw)
    done.out = (done.stdout + done.stderr).decode("utf-8", "surrogateescape")
    return done


def encode(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width=100_000, height=100_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (decoding it would take 30 GB)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def index_paths(root, model="hsv-hist"):
    with Index(default_index_path(root)) as index:
        rows, vectors = index.embeddings(index_key(model))
    assert np.isfinite(vectors).all()
    return {r.path for r in rows}


def skipped_lines(output: str) -> dict[str, str]:
    """path (as `shown`) -> reason of every 'skipped PATH: REASON' line; each path only once."""
    found = [(shown(p), r) for p, r in re.findall(r"^  skipped (.*?): (.*)$", output, re.M)]
    paths = [p for p, _ in found]
    assert len(paths) == len(set(paths)), f"a file was reported twice: {paths}"
    return dict(found)


def add_odd_but_valid(root: Path) -> set[str]:
    """Images that look unusual but must be embedded. Returns their relative paths."""
    face = draw_character(2, 500)
    (root / "odd").mkdir(parents=True, exist_ok=True)
    (root / "odd/cmyk.jpg").write_bytes(encode(face.convert("CMYK"), "JPEG"))
    grey16 = (np.asarray(face.convert("L")).astype(np.uint16) * 257)
    (root / "odd/sixteen.png").write_bytes(encode(Image.fromarray(grey16), "PNG"))
    (root / "odd/palette.png").write_bytes(encode(face.convert("P"), "PNG", transparency=0))
    rgba = face.convert("RGBA")
    rgba.putalpha(Image.new("L", face.size, 128))
    (root / "odd/alpha.webp").write_bytes(encode(rgba, "WEBP"))
    frames = [draw_character(3, 501), draw_character(4, 502)]
    (root / "odd/anim.gif").write_bytes(encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    (root / "odd/anim.webp").write_bytes(encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]))
    (root / "odd/one.png").write_bytes(encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"))
    (root / "odd/thin.png").write_bytes(encode(Image.new("RGB", (1, 4000), (30, 200, 30)), "PNG"))
    (root / "odd/wide.jpg").write_bytes(encode(Image.new("RGB", (4000, 1), (30, 30, 200)), "JPEG"))
    return {f"odd/{p.name}" for p in (root / "odd").iterdir()}


def add_bad(root: Path) -> dict[str, str]:
    """Files that must be skipped: relative path -> regex of the reason shown."""
    good = encode(draw_character(1, 600), "JPEG")
    noisy = encode(Image.effect_noise((120, 120), 60).convert("RGB"), "PNG")
    (root / "bad").mkdir(parents=True, exist_ok=True)
    (root / "bad/zero.jpg").write_bytes(b"")
    (root / "bad/truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "bad/truncated.png").write_bytes(noisy[: len(noisy) // 2])
    (root / "bad/page.jpg").write_text("<!doctype html><html><body>404 Not Found</body></html>")
    (root / "bad/notes.png").write_text("just some text\n")
    (root / "bad/bomb.png").write_bytes(bomb_png())
    os.mkfifo(root / "bad/x.png")
    (root / "bad/dangling.png").symlink_to(root / "bad/nowhere.png")
    (root / "bad/loop.png").symlink_to("loop.png")
    (root / "bad").joinpath(os.fsdecode(b"trunc\xff\xfe.png")).write_bytes(noisy[:40])
    return {"bad/zero.jpg": "empty file", "bad/truncated.jpg": "truncated", "bad/truncated.png": "truncated",
            "bad/page.jpg": "not an image", "bad/notes.png": "not an image", "bad/bomb.png": "too large",
            "bad/x.png": r"not a regular file \(a FIFO\)", "bad/dangling.png": "broken symbolic link",
            "bad/loop.png": "symbolic link", os.fsdecode(b"bad/trunc\xff\xfe.png"): "not an image"}


def test_bad_files_are_skipped_counted_and_strict_exits_3(tmp_path):
    root = tmp_path / "pics"
    truth = make_collection(root, characters=3, per_character=8)
    odd = add_odd_but_valid(root)
    bad = add_bad(root)
    extra = tmp_path / "extra"  # a symlinked folder outside is skipped (said so); a loop back up is visited once
    extra.mkdir()
    for k in range(3):
        draw_character(0, 700 + k).save(extra / f"e{k}.png")
    (root / "linked").symlink_to(extra)
    (root / "batch0/loop").symlink_to(root)
    (root / "alias.png").symlink_to(root / "batch1/c0_1.png")
    usable = set(truth) | odd | {"alias.png"}
    bad["linked"] = "symbolic link to a folder outside the sorted folder: not followed"

    out = tmp_path / "sorted"
    done = cli("sort", root, "--out", out, *FAST)  # a FIFO must not hang the run
    assert done.returncode == 0, done.out
    assert "Traceback" not in done.out
    total = len(usable) + len(bad) - 1  # the link to a folder is no image
    assert f"{total} images: {len(usable)} embedded" in done.out and f"{len(bad)} skipped" in done.out
    reasons = skipped_lines(done.out)
    assert set(reasons) == set(map(shown, bad)), done.out
    for path, pattern in bad.items():
        assert re.search(pattern, reasons[shown(path)]), (path, reasons[shown(path)])
    assert index_paths(root) == usable
    manifest = read_manifest(out)
    assert {Path(e.src).relative_to(root.resolve()).as_posix() for e in manifest["entries"]} == usable
    assert (root / "bad/x.png").exists() and not (root / "bad/x.png").is_file()  # left alone

    again = run_cli("embed", root, "--model", "hsv-hist", "-q", "--workers", "0")
    # counted again, but each named only by the run that found it (issue 26 item 10)
    assert f"{len(bad)} skipped" in again.output and skipped_lines(again.output) == {}, again.output
    for command in (("embed", root), ("sort", root, "--out", out)):
        strict = run_cli(*command, *FAST[:-2], "--strict", ok=None)
        assert strict.exit_code == 3, strict.output
        assert f"strict: {len(bad)} file(s) skipped" in strict.output


def test_odd_but_valid_images_go_through_the_cnn(tmp_path, tiny_cnn):
    root = tmp_path / "odd"
    odd = add_odd_but_valid(root)
    result = run_cli("embed", root, "--model", tiny_cnn, "-q", "--workers", "0")
    assert f"{len(odd)} embedded" in result.output and "0 skipped" in result.output
    assert index_paths(root, str(tiny_cnn)) == odd


def test_images_over_the_pixel_limit_are_skipped(tmp_path, monkeypatch):
    root = tmp_path / "pics"
    truth = make_collection(root, characters=2, per_character=5, nested=False)
    draw_character(0, 1, size=(300, 300)).save(root / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 72 * 96)  # the collection's size passes, 300x300 does not
    result = run_cli("embed", root, "--model", "hsv-hist", "-q", "--workers", "0")
    assert list(skipped_lines(result.output)) == ["big.png"] and "too large" in result.output
    assert f"{len(truth)} embedded" in result.output


def as_nobody_works() -> str | None:
    """Why a subprocess cannot run as an unprivileged user here (None if it can)."""
    if os.geteuid() != 0:
        return None
    if not shutil.which("setpriv"):
        return "setpriv not installed: cannot run a subprocess as another user"
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                            "-c", "import illusort.cli"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot run python as nobody: {probe.stderr.strip()[-200:]}"


@pytest.fixture
def shared_tmp():
    """A folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="illusort-nobody-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_permission_denied_is_skipped_then_retried(shared_tmp):
    """Root reads everything, so this runs the CLI as `nobody`. A file we may not read is
    skipped (and sorted nowhere) but not remembered as bad: readable again, it is embedded."""
    reason = as_nobody_works()
    if reason:
        pytest.skip(reason)
    root = shared_tmp / "pics"
    truth = make_collection(root, characters=2, per_character=6)
    subprocess.run(["chown", "-R", "nobody:nogroup", str(shared_tmp)], check=True)
    secret = root / sorted(truth)[0]
    prefix = [] if os.geteuid() != 0 else ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    env = {**os.environ, "HOME": str(shared_tmp), "XDG_CACHE_HOME": str(shared_tmp / "cache"),
           "NUMBA_CACHE_DIR": str(shared_tmp / "numba")}

    def run(*args):
        done = subprocess.run(prefix + [sys.executable, "-m", "illusort.cli", *map(str, args)], capture_output=True,
                              text=True, timeout=120, env=env, cwd=shared_tmp)
        done.out = done.stdout + done.stderr
        return done

    secret.chmod(0)
    first = run("embed", root, *FAST[:-2])
    assert first.returncode == 0, first.out
    assert skipped_lines(first.out) == {sorted(truth)[0]: "cannot read: Permission denied"}
    secret.chmod(0o644)  # ctime changes, size and mtime do not
    second = run("embed", root, *FAST[:-2])
    assert second.returncode == 0 and "1 embedded" in second.out and "0 skipped" in second.out, second.out

    secret.chmod(0)  # unreadable after it was embedded: a copy cannot be made, the rest can
    out = shared_tmp / "out"
    third = run("sort", root, "--out", out, "--mode", "copy", *FAST)
    assert third.returncode == 0, third.out
    assert re.search(r"warning: not sorted .*: cannot read: Permission denied", third.out)
    copies = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".illusort")]
    assert len(copies) == len(truth) - 1
    assert {e.src for e in read_manifest(out)["entries"]} == {str(root / p) for p in truth} - {str(secret)}
    assert run("sort", root, "--out", out, "--mode", "copy", "--strict", *FAST).returncode == 3


def sort_and_undo(root, out, mode="symlink"):
    """Sort, check every entry points at a distinct source and stays inside OUT, undo, check restored."""
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".illusort" not in p.parts}
    run_cli("sort", root, "--out", out, "--mode", mode, *FAST)
    entries = read_manifest(out)["entries"]
    for e in entries:
        dest = out / e.dest
        assert os.path.lexists(dest) and os.path.realpath(dest.parent).startswith(str(out.resolve()))
        assert len(os.fsencode(dest.name)) <= 255
    assert len({e.src for e in entries}) == len(entries) == len({e.dest for e in entries})
    run_cli("sort", "--undo", "--out", out, root)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".illusort" not in p.parts} == before
    assert not out.exists() or not any(out.rglob("*"))
    return entries


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_255_byte_names_that_collide_still_sort(tmp_path, mode):
    """Same 255-byte basename in two folders: the hash suffix must not push the name past
    NAME_MAX (nor the hidden `.NAME.illusort-partial` of a copy in progress)."""
    root = tmp_path / "pics"
    long_ascii = "a" * 251 + ".png"
    long_utf8 = "é" * 125 + ".jpg"  # 254 bytes, 129 characters: cut whole characters only
    for k, folder in enumerate(("one", "two", "three")):
        (root / folder).mkdir(parents=True)
        draw_character(0, k).save(root / folder / long_ascii)
        draw_character(1, k).save(root / folder / long_utf8)
    assert len(os.fsencode(long_ascii)) == 255
    entries = sort_and_undo(root, tmp_path / "out", mode)
    assert len(entries) == 6
    for e in entries:
        name = e.dest.rsplit("/", 1)[-1]
        assert name.encode("utf-8")  # whole characters: encodes without surrogates
        assert name.startswith("a" * 50) or name.startswith("é" * 50)


def test_non_utf8_names_and_one_basename_in_many_folders(tmp_path):
    root = tmp_path / "pics"
    for k in range(8):
        folder = root / f"set{k}" / "sub"
        folder.mkdir(parents=True)
        draw_character(k % 3, k).save(folder / "image.png")
        draw_character(k % 3, 50 + k).save(os.fsencode(folder) + b"/caf\xe9-\xff.png")
        draw_character(k % 3, 90 + k).save(folder / "new\nline.png")
    entries = sort_and_undo(root, tmp_path / "out")
    assert len(entries) == 24
    names = [e.dest.rsplit("/", 1)[-1] for e in entries]
    assert sum(n.startswith("image") for n in names) == 8


def test_the_sorted_folder_itself_is_a_symlink(tmp_path):
    real = tmp_path / "real-pics"
    truth = make_collection(real, characters=2, per_character=6)
    link = tmp_path / "pics"
    link.symlink_to(real)
    out = tmp_path / "out"
    run_cli("sort", link, "--out", out, *FAST)
    entries = read_manifest(out)["entries"]
    assert len(entries) == len(truth) and all((out / e.dest).resolve().is_file() for e in entries)
    again = run_cli("sort", real, "--out", out, *FAST)  # the same folder by its other name: same sort
    assert f"0 new, 0 removed, {len(truth)} kept" in again.output
    run_cli("sort", "--undo", "--out", out, link)
    assert not out.exists() or not any(out.rglob("*"))
    assert (out / MANIFEST).exists() is False and link.is_symlink()

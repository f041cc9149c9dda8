"""The second hostile trial (issue 25): what a printed name, a path or a stored decision could
still do. One test (or more) per case: terminal escapes in names (rendered in a real terminal,
tmux), `#` and `?` in IN's path, hostile decisions stored in the index, pictures that would
take gigabytes to decode (under a memory cap), small model input sizes, names that are not
UTF-8 on a strict terminal, and a picture deeper than the path limit."""
import json
import os
import shlex
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

from illusort import corrections
from illusort.manifest import read_manifest

from conftest import draw_character, make_collection, run_cli
from hostile import changed, fingerprint, make_victim

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
@pytest.mark.slow
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


# 1 and 7 ---------------------------------------------------------------------------------------
PLANTED = "logo\x1b[4D; touch PWNED #.png"  # on screen, ESC[4D would move back over '.png'


def sorted_with(tmp_path, *names, like: int | None = None) -> tuple[Path, Path]:
    """A small folder (3 characters) plus pictures named `names` (dark ones, or drawings of
    character `like`), sorted."""
    root = tmp_path / "pics"
    make_collection(root, characters=3, per_character=8)
    for k, name in enumerate(names):
        picture = Image.new("RGB", (60, 60), (10 + k, 10, 10)) if like is None else draw_character(like, 90 + k)
        picture.save(root / os.fsdecode(name), "PNG")
    out = tmp_path / "out"
    run_cli("sort", root, "--out", out, *FAST)
    return root, out


def cli_process(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "illusort.cli", *map(str, args)], capture_output=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=300)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (a real terminal emulator)")
def test_a_name_with_terminal_escapes_shows_as_escapes_and_its_command_runs_as_shown(tmp_path):
    """Issue 25 case 1: in a real terminal, a picture named with ESC[4D and a `; touch X #` tail
    rendered as a harmless `illusort move ... --to ...` line that ran the planted command when
    pasted. Now the escape shows as `\\x1b`, and the line on screen, pasted into a shell, moves
    that picture and runs nothing else."""
    root, out = sorted_with(tmp_path, PLANTED, like=0)  # a drawing of a character: a surely suggested fix
    placed = next(e.dest for e in read_manifest(out)["entries"] if e.dest.endswith(PLANTED))
    if not placed.startswith("unsorted/"):  # set it among the unsorted: its fix is "place it in that character"
        corrections.move_images(out, [Path(placed)], "unsorted")
    screen = tmp_path / "screen.txt"
    session = f"illusort-{os.getpid()}"
    script = tmp_path / "show.sh"
    script.write_text(f"cd {shlex.quote(str(tmp_path))}; PYTHONPATH={shlex.quote(str(REPO))} "
                      f"{shlex.quote(sys.executable)} -m illusort.cli status {shlex.quote(str(out))}; sleep 30\n")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "400", "-y", "60", "bash", str(script)],
                   check=True)
    try:
        for _ in range(100):
            time.sleep(0.3)
            shown = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                   text=True).stdout
            if "re-run" in shown:
                break
        screen.write_text(shown)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    line = next(line for line in shown.splitlines() if "logo" in line and "illusort move" in line)
    assert "logo\\x1b[4D; touch PWNED #.png" in line, line  # the name, visibly escaped
    pasted = line[line.index("illusort move"):]
    assert pasted.startswith(f"illusort move {out} $'unsorted/logo\\x1b[4D; touch PWNED #.png' --to character-")
    words = shlex.split(pasted.replace("$'", "'"))  # the words bash makes of it, escapes aside
    done = subprocess.run(["bash", "-c", f"illusort() {{ printf '%s\\0' \"$@\"; }}; {pasted}"], cwd=tmp_path,
                          capture_output=True)
    assert not (tmp_path / "PWNED").exists() and done.returncode == 0
    args = done.stdout.split(b"\0")[:-1]
    assert args[2] == os.fsencode(f"unsorted/{PLANTED}") and len(args) == len(words) - 1 == 5
    run_cli(*[os.fsdecode(a) for a in args])
    assert not (out / "unsorted" / PLANTED).exists() and (out / os.fsdecode(args[4]) / PLANTED).is_symlink()


def test_status_of_names_that_are_not_utf8_on_a_strict_utf8_terminal(tmp_path):
    """Issue 25 case 7: `status` died with UnicodeEncodeError on such a name when stdout is
    strict UTF-8 (an ordinary en_US.UTF-8 terminal). Now every byte shows as an escape."""
    name = os.fsdecode(b"bad\xff\x1b.png")
    root, out = sorted_with(tmp_path, os.fsdecode(b"dark\xfe.png"))
    (root / name).write_bytes(b"not a picture")
    run_cli("sort", root, "--out", out, *FAST)
    env = {"PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    for args in (("status", out), ("status", root), ("sort", root, "--out", out, *FAST)):
        done = cli_process(*args, cwd=tmp_path, env=env)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
        text = (done.stdout + done.stderr).decode("utf-8")  # strict: every byte printed is UTF-8
        assert "\x1b" not in text
        if args[0] == "status":
            assert "skipped bad\\xff\\x1b.png: not an image" in text, text
    data = json.loads(cli_process("status", out, "--json", cwd=tmp_path, env=env).stdout)
    assert name in [s["path"] for s in data["skipped"]]


# 2 --------------------------------------------------------------------------------------------
def test_hash_and_question_mark_in_the_sorted_folders_path(tmp_path):
    """Issue 25 case 2: `file:{path}?mode=ro` named another file when IN's path held `#` or `?`:
    status, report and sort --dry-run each created an empty file beside IN, and status said
    0 pictures indexed. Now nothing appears outside IN and OUT, and the counts are right."""
    base = tmp_path / "share"
    base.mkdir()
    root, out = base / "pics #1?x=y", base / "out"
    make_collection(root, characters=3, per_character=6)
    run_cli("sort", root, "--out", out, *FAST)
    before = fingerprint(base, skip=(root.name, out.name))
    data = json.loads(run_cli("status", out, "--json").stdout)
    assert data["indexed"] == 18 and data["folder"] == str(root.resolve())
    assert json.loads(run_cli("status", root, "--json").stdout)["indexed"] == 18
    run_cli("report", out, "-q")
    dry = json.loads(run_cli("sort", root, "--out", out, *FAST, "--dry-run", "--json").stdout)
    assert dry["pictures"] == 18 and dry["created"] == 0 and dry["kept"] == 18
    assert changed(before, fingerprint(base, skip=(root.name, out.name))) == []
    assert sorted(p.name for p in base.iterdir()) == sorted([root.name, out.name])


# 3 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stored", ["..", ".", "/x", "../../victim", ".illusort", "report.html", "a/b", ""])
def test_a_hostile_decision_stored_in_the_index_is_ignored_with_a_warning(tmp_path, stored):
    """Issue 25 case 3: a decision naming `..` made a move sort write an entry leading outside
    OUT into the manifest and move 3 pictures there; every later command then refused the
    manifest, stranding them. Now a stored name passes the check a typed one does: ignored,
    with a warning; the sort, undo and corrections work, and nothing outside IN/OUT changes."""
    base = tmp_path / "share"
    root, out = base / "pics", base / "out"
    make_collection(root, characters=3, per_character=6, nested=False)
    make_victim(base)
    run_cli("embed", root, *FAST[:-2])
    with sqlite3.connect(root / ".illusort" / "index.db") as db:
        db.executemany("INSERT OR REPLACE INTO decisions(path, face, character) VALUES (?,?,?)",
                       [(os.fsencode(f"c0_{k}.png" if k % 2 else f"c0_{k}.jpg"), 0, stored) for k in range(3)])
    before = fingerprint(base, skip=("pics", "out"))
    originals = sorted(p.name for p in root.iterdir() if p.is_file())
    with pytest.warns(UserWarning, match="ignored decisions naming"):
        run_cli("sort", root, "--out", out, "--mode", "move", *FAST)
    assert changed(before, fingerprint(base, skip=("pics", "out"))) == []
    entries = read_manifest(out)["entries"]
    assert len(entries) == 18 and all(not e.dest.startswith((".", "/")) and ".." not in e.dest for e in entries)
    folder = entries[0].dest.split("/")[0]
    if folder not in ("unsorted",):
        run_cli("name", out, folder, "Rem")
    run_cli("undo", out)
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == originals
    assert changed(before, fingerprint(base, skip=("pics", "out"))) == []


def test_a_manifest_entry_at_an_own_name_is_refused():
    """Names read back from a manifest pass the same check: `.illusort-sort.lock` or a leading
    '.' (illusort's own files), report.html."""
    from illusort.safepath import Unsafe, check_manifest_dest

    for dest in (".illusort-sort.lock", "x/.hidden.png", ".thumbs/x.png", "report.html", "a/report.html",
                 "..", "a/../b.png", "/x.png", "a/b/c.png", ""):
        with pytest.raises(Unsafe):
            check_manifest_dest(dest)
    assert check_manifest_dest("Rem/x.png") == "Rem/x.png"

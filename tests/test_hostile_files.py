"""Hostile content planted in IN and OUT (shared folders: a synced folder, a NAS, a download
directory): edited manifests, links planted at illusort's own file names, links to folders
along a manifest path, links from IN to outside or to OUT, damaged indexes, odd model cards,
huge files, script in the report. Each case checks that no byte outside IN and OUT changed
(sha1 of every file of a sacrificial folder and of everything else beside them), and that a
refusal is exit code 1 with a one-line error (no traceback: `run_cli` raises on one)."""
import json
import os
import shutil
import sqlite3

import pytest

from illusort import images, nets
from illusort.index import default_index_path
from illusort.layout import LOCK, MANIFEST
from illusort.manifest import read_manifest, write_manifest
from illusort.weights import save_checkpoint

from conftest import draw_character, run_cli
from hostile import changed, contents, fingerprint, make_victim, one_line_error

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0", "--faces", "off")


@pytest.fixture
def world(tmp_path):
    """(base, IN, OUT, victim): IN with 8 small images, OUT beside it (not made yet)."""
    root = tmp_path / "pics"
    (root / "set").mkdir(parents=True)
    for k in range(8):
        draw_character(k % 2, k, size=(24, 32)).save(root / ("set" if k % 2 else "") / f"i{k}.png")
    victim = make_victim(tmp_path)
    return tmp_path, root, tmp_path / "out", victim


class Outside:
    """Fingerprint of everything beside IN and OUT; `check()` asserts nothing there changed."""

    def __init__(self, base, *skip):
        self.base, self.skip = base, {"pics", "out", *skip}
        self.before = fingerprint(base, self.skip)

    def check(self, name=""):
        diff = changed(self.before, fingerprint(self.base, self.skip))
        assert not diff, (name, diff)


def sort(root, out, mode="symlink", ok=True):
    return run_cli("sort", root, "--out", out, "--mode", mode, *FAST, ok=ok)


def forge(out, source, mode, entries):
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps({"version": 1, "source": str(source), "mode": mode, "entries": entries}))


# ---- 1. the manifest's `source` ----------------------------------------------------------

@pytest.mark.parametrize("mode", ["move", "copy", "symlink"])
def test_a_manifest_naming_another_folder_is_refused_by_every_command(world, mode):
    base, root, out, victim = world
    sort(root, out)
    run_cli("sort", "--undo", out)
    # OUT's manifest now names the victim folder as the sorted one, with entries there
    forge(out, victim.resolve(), mode,
          [{"src": str(victim.resolve() / "a.png"), "dest": "character-001/a.png", "state": "pending"},
           {"src": str(victim.resolve() / "new" / "x.png"), "dest": "character-001/b.png"}])
    (out / "character-001").mkdir()
    (out / "character-001" / "b.png").write_bytes(b"planted")
    if mode != "symlink":
        os.link(victim / "b.jpg", out / "character-001" / "a.png")
    outside = Outside(base)
    for args in (("sort", "--undo", out), ("sort", "--undo", "--out", out, root), ("name", out, "character-001", "X"),
                 ("merge", out, "X", "character-001"), ("move", out, out / "character-001/b.png", "--to", "Y"),
                 ("report", out, "-q")):
        error = one_line_error(run_cli(*args, ok=False))
        assert "refusing" in error or "not of" in error, error
        outside.check(args)


def test_a_confirmed_source_still_has_every_entry_checked(world):
    """The manifest names IN (confirmed), but its entries lead outside by text or by links."""
    base, root, out, victim = world
    sort(root, out, "move")
    entries = read_manifest(out)["entries"]
    (root / "sub").symlink_to(victim)
    (out / "evil").symlink_to(victim)
    source = str(root.resolve())
    cases = {
        "src through a folder link inside IN": {"src": f"{source}/sub/new.png", "dest": entries[0].dest},
        "dest through a folder link in OUT": {"src": entries[1].src, "dest": "evil/a.png"},
        "pending dest through a folder link": {"src": entries[1].src, "dest": "evil/b.jpg", "state": "pending"},
        "relocation from a folder link": {"src": entries[1].src, "dest": entries[1].dest, "from": "evil/a.png",
                                          "state": "pending"},
    }
    outside = Outside(base)
    good = [e.to_json() for e in entries]
    for name, bad in cases.items():
        write_manifest(out, root, "move", [_entry(bad)] + [_entry(g) for g in good[2:]])
        for args in (("sort", "--undo", out), ("sort", root, "--out", out, "--mode", "move", *FAST)):
            error = one_line_error(run_cli(*args, ok=False))
            assert "refusing" in error or "symbolic link" in error, (name, error)
            outside.check(name)
    write_manifest(out, root, "move", [_entry(e) for e in good])
    (out / "evil").unlink()
    (root / "sub").unlink()
    run_cli("sort", "--undo", out)
    outside.check("undo")
    assert len(contents(root)) == 8 and not contents(out)


def test_a_source_read_through_a_link_out_of_in_is_refused(world):
    """Copy mode only reads sources, but only inside IN: an entry whose src goes through
    `IN/sub -> victim` is refused by undo and a re-sort, and gets no thumbnail in the report."""
    base, root, out, victim = world
    sort(root, out, "copy")
    draw_character(0, 80, size=(24, 32)).save(victim / "secret.png")
    (root / "sub").symlink_to(victim)
    entries = read_manifest(out)["entries"]
    shutil.copyfile(victim / "secret.png", out / entries[0].dest)
    entries[0].src = f"{root.resolve()}/sub/secret.png"
    write_manifest(out, root, "copy", entries)
    outside = Outside(base)
    for args in (("sort", "--undo", out), ("sort", root, "--out", out, "--mode", "copy", *FAST)):
        assert "leads outside" in one_line_error(run_cli(*args, ok=False))
        outside.check(args)
    run_cli("report", out, "-q")
    assert len(list((out / ".illusort-thumbs").glob("*.jpg"))) == len(entries) - 1
    outside.check("report")


def _entry(data):
    from illusort.manifest import Entry

    return Entry(data["src"], data["dest"], data.get("state", "done"), tuple(data.get("faces", (0,))),
                 data.get("from"))


@pytest.mark.parametrize("mode", ["copy", "move"])
def test_a_link_to_an_outside_folder_in_out_is_not_followed(world, mode):
    """`OUT/evil -> victim` and an entry `evil/a.png` whose content equals its source: copy
    undo would delete the victim's file, move undo would move it into IN."""
    base, root, out, victim = world
    sort(root, out, mode)
    entries = read_manifest(out)["entries"]
    e = entries[0]
    shutil.copyfile(out / e.dest, victim / "same.png")  # same content as the entry's file
    (out / "evil").symlink_to(victim)
    if mode == "move":
        os.link(out / e.dest, root / "elsewhere.png")  # keep the user's file safe while we rewire
        os.unlink(out / e.dest)
    e.dest = "evil/same.png"
    write_manifest(out, root, mode, entries)
    outside = Outside(base)
    for args in (("sort", "--undo", out), ("name", out, "evil", "Z")):
        error = one_line_error(run_cli(*args, ok=False))
        assert "symbolic link" in error, error
        outside.check(args)
    run_cli("report", out, "-q")  # reads only: the entry through the link gets no thumbnail
    outside.check("report")


def test_settling_a_pending_move_never_unlinks_through_a_link(world):
    """A pending move whose dest in OUT is a link to its own source (the user's only copy)."""
    base, root, out, victim = world
    sort(root, out, "move")
    entries = read_manifest(out)["entries"]
    e = entries[0]
    os.link(out / e.dest, e.src)  # back in IN, as if the move was never made ...
    os.unlink(out / e.dest)
    os.symlink(e.src, out / e.dest)  # ... and a link to it planted where it would go
    e.state = "pending"
    write_manifest(out, root, "move", entries)
    before = contents(root, out)
    outside = Outside(base)
    run_cli("sort", "--undo", out)
    outside.check()
    assert contents(root) == before and os.path.isfile(e.src)


# ---- 2. illusort's own fixed-name files --------------------------------------------------

OWN = {  # where (relative to base), what it links to, and which command meets it
    "in-lock": ("pics/.illusort/index.lock", "victim/a.png", "sort"),
    "index": ("pics/.illusort/index.db", "victim/b.jpg", "sort"),
    "index-wal": ("pics/.illusort/index.db-wal", "victim/b.jpg", "sort"),
    "index-folder": ("pics/.illusort", "victim/sub", "sort"),
    "out-lock": ("out/" + LOCK, "victim/a.png", "sort"),
    "manifest-tmp": ("out/" + MANIFEST + ".tmp", "victim/a.png", "sort"),
    "manifest": ("out/" + MANIFEST, "victim/notes.txt", "sort"),
    "out-itself": ("out", "victim", "sort"),
    "seen": ("out/.illusort-report.json", "victim/notes.txt", "report"),
    "report-tmp": ("out/.report.html.tmp", "victim/a.png", "report"),
    "report-json-tmp": ("out/.illusort-report.json.tmp", "victim/a.png", "report"),
    "thumbs": ("out/.illusort-thumbs", "victim/sub", "report"),
    "report": ("out/report.html", "victim/notes.txt", "report"),
}


@pytest.mark.parametrize("case", sorted(OWN))
def test_links_planted_at_illusorts_own_names_are_never_followed(world, case):
    base, root, out, victim = world
    where, target, command = OWN[case]
    if command == "report":
        sort(root, out)
    elif case != "out-itself":
        out.mkdir()
    (base / where).parent.mkdir(parents=True, exist_ok=True)
    (base / where).symlink_to(base / target)
    outside = Outside(base)
    result = sort(root, out, ok=None) if command == "sort" else run_cli("report", out, "-q", ok=None)
    if result.exit_code:
        assert "symbolic link" in one_line_error(result)
    outside.check(case)
    replaced = ("manifest-tmp", "report-tmp", "report-json-tmp", "report", "seen")  # the link, not its target
    assert (base / where).is_symlink() or case in replaced, case


def test_a_fifo_at_an_own_name_does_not_hang(world):
    base, root, out, victim = world
    out.mkdir()
    os.mkfifo(out / LOCK)
    one_line_error(sort(root, out, ok=False))


# ---- 3. scanning: links in IN ------------------------------------------------------------

@pytest.mark.parametrize("mode", ["symlink", "move"])
def test_out_reachable_from_in_is_never_scanned(world, mode):
    """`IN/up -> ..` with the default OUT (IN-sorted beside IN): sorting twice must not sort
    OUT's own files, and undo restores IN."""
    base, root, _, victim = world
    before = contents(root)
    (root / "up").symlink_to("..")
    (root / "set" / "self").symlink_to(root)  # a loop inside IN: followed once
    out = base / "pics-sorted"
    outside = Outside(base, "pics-sorted")
    for run in range(2):
        result = sort(root, out, mode)
        # said by the run that finds it, not again (issue 26 item 10)
        assert ("skipped up: symbolic link to a folder" in result.output) == (run == 0), result.output
        entries = read_manifest(out)["entries"]
        assert len(entries) == 8 and all(not e.src.startswith(str(out)) for e in entries)
    outside.check()
    run_cli("sort", "--undo", out)
    assert contents(root) == before


def test_an_out_inside_in_by_a_manifest_is_never_scanned(world):
    """A folder of IN holding a sort manifest (someone's OUT) is no input."""
    base, root, out, victim = world
    inner = root / "old-sort"
    inner.mkdir()
    (inner / MANIFEST).write_text("{}")
    draw_character(0, 50, size=(24, 32)).save(inner / "x.png")
    sort(root, out)
    assert not [e for e in read_manifest(out)["entries"] if "old-sort" in e.src]


def test_move_never_follows_a_folder_link(world):
    """`IN/wallpapers -> victim`: a move sort must not empty the folder a link points at."""
    base, root, out, victim = world
    for k in range(3):
        draw_character(0, 90 + k, size=(24, 32)).save(victim / f"w{k}.png")
    (root / "wallpapers").symlink_to(victim)
    (root / "inner").symlink_to(root / "set")  # even inside IN: a move follows no folder link
    (root / "alias.png").symlink_to(root / "i0.png")  # a link to a file is not moved
    outside = Outside(base)
    result = sort(root, out, "move")
    assert "skipped wallpapers: symbolic link to a folder" in result.output
    assert "skipped inner: symbolic link to a folder" in result.output
    outside.check()
    assert (root / "alias.png").is_symlink() and not [e for e in read_manifest(out)["entries"] if "alias" in e.src]
    run_cli("sort", "--undo", out)
    outside.check("undo")


def test_links_out_of_in_are_skipped_in_link_and_copy_modes(world):
    base, root, out, victim = world
    for k in range(2):
        draw_character(1, 95 + k, size=(24, 32)).save(victim / f"v{k}.png")
    (root / "linked").symlink_to(victim)
    (root / "secret.png").symlink_to(victim / "v0.png")
    (root / "inside").symlink_to(root / "set")
    outside = Outside(base)
    result = sort(root, out, "copy")
    assert "skipped linked: symbolic link to a folder outside" in result.output
    assert "skipped secret.png: symbolic link to a file outside" in result.output
    srcs = {e.src for e in read_manifest(out)["entries"]}
    assert not [s for s in srcs if "linked" in s or "secret" in s]
    outside.check()


# ---- 4. one-line errors ------------------------------------------------------------------

DAMAGE = {
    "truncated": lambda db: db.write_bytes(db.read_bytes()[:1000]),
    "garbage": lambda db: db.write_bytes(os.urandom(5000)),
    "a folder": lambda db: (db.unlink(), db.mkdir()),
    "wrong schema": lambda db: (db.unlink(), sqlite3.connect(db).executescript(
        "CREATE TABLE items(x TEXT); CREATE TABLE meta(k TEXT);").close()),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_index_is_kept_aside_and_rebuilt(world, damage):
    base, root, out, victim = world
    sort(root, out)
    db = default_index_path(root)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            os.unlink(f"{db}{suffix}")
    DAMAGE[damage](db)
    with pytest.warns(UserWarning, match="was damaged .*kept as index.db.damaged-"):  # a 'warning:' line
        result = sort(root, out)
    assert [p for p in db.parent.iterdir() if p.name.startswith("index.db.damaged-")]
    assert "8 images: 8 embedded" in result.output


def test_damage_found_after_opening_is_one_line(world):
    """A data page overwritten (the tables still read): found mid-run, one line that says what to do."""
    base, root, out, victim = world
    sort(root, out)
    db = default_index_path(root)
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(db.read_bytes())
    data[4096:] = os.urandom(len(data) - 4096)  # every page but the schema
    db.write_bytes(bytes(data))
    outside = Outside(base)
    result = sort(root, out, ok=None)
    if result.exit_code:  # found mid-run: one line saying what to do
        error = one_line_error(result)
        assert "malformed" in error and "aside" in error
    else:  # found on opening (the index's change counter is read first): moved aside, started again
        assert list(db.parent.glob(db.name + ".damaged-*")) and "Traceback" not in result.output
    outside.check()


def test_undo_and_corrections_of_an_unrecorded_sort_need_the_folder(world):
    """An OUT whose sort IN does not record (an older illusort, or a moved index): refused
    until IN is given on the command line, then done."""
    base, root, out, victim = world
    sort(root, out, "move")
    for record in (default_index_path(root).with_suffix(".outputs")).iterdir():
        record.unlink()
    folder = read_manifest(out)["entries"][0].dest.split("/")[0]
    assert "no record" in one_line_error(run_cli("name", out, folder, "Rem", ok=False))
    run_cli("name", out, folder, "Rem", "--in", root)
    assert "no record" in one_line_error(run_cli("sort", "--undo", out, ok=False))
    run_cli("sort", "--undo", "--out", out, root)
    assert len(contents(root)) == 8 and not contents(out)


def test_a_read_only_out_is_one_line(world, tmpfs):
    base, root, out, victim = world
    disk = tmpfs("ro", "1m")
    import subprocess

    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    error = one_line_error(sort(root, disk / "out", ok=False))
    assert "Read-only file system" in error


@pytest.mark.parametrize("size", [-5, 60000, 8, "big", True, 16, 31])
def test_model_card_values_out_of_bounds(world, size):
    """16-31 (issue 25) passed the check, then EfficientNet-Lite and VGG16 crashed on them."""
    base, root, out, victim = world
    net = nets.build("lite0", embed_dim=8, input_size=32)
    path = base / "models" / "odd.pt"
    save_checkpoint(path, net, {"arch": "lite0", "embed_dim": 8, "input_size": 32})
    card = json.loads(path.with_suffix(".json").read_text())
    card["input_size"] = size
    path.with_suffix(".json").write_text(json.dumps(card))
    error = one_line_error(run_cli("embed", root, "--model", path, "-q", ok=False))
    assert "input_size" in error


def test_a_fifo_as_model_fails_at_once(world):
    import subprocess
    import sys

    base, root, out, victim = world
    fifo = base / "model.pt"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "illusort.cli", "embed", str(root), "--model", str(fifo), "-q"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "not a regular file" in done.stderr and "Traceback" not in done.stderr


def test_files_over_the_size_limit_are_skipped_before_reading(world, monkeypatch):
    """A sparse 6 GB file named .jpg: skipped by its size (fstat), never read into memory."""
    base, root, out, victim = world
    with open(root / "huge.jpg", "wb") as f:
        f.truncate(6 * 2**30)
    draw_character(0, 70, size=(200, 260)).save(root / "mid.png")
    size = (root / "mid.png").stat().st_size
    monkeypatch.setattr(images, "MAX_FILE_BYTES", size - 1)
    result = sort(root, out)
    lines = [line for line in result.output.splitlines() if "too large" in line]
    assert len(lines) == 2 and all(line.startswith("  skipped ") for line in lines), result.output
    assert "6144 MB" in result.output


# ---- 5. the report -----------------------------------------------------------------------

def test_every_report_value_is_escaped(world):
    base, root, out, victim = world
    sort(root, out)
    folder = read_manifest(out)["entries"][0].dest.split("/")[0]
    run_cli("name", out, folder, "<img src=x onerror=alert(1)>")
    data = json.loads((out / MANIFEST).read_text())
    data["updated"] = "<script>alert(2)</script>"
    (out / MANIFEST).write_text(json.dumps(data))
    run_cli("report", out, "-q")
    page = (out / "report.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and page.count("<script>") == 1
    data["mode"] = "<script>alert(3)</script>"
    (out / MANIFEST).write_text(json.dumps(data))
    assert "damaged" in one_line_error(run_cli("report", out, "-q", ok=False))


"""Disk full while copying, and `sort` never writing outside OUT whatever the file names or
the manifest say. (A checkpoint holding a pickled callable is refused by
`torch.load(weights_only=True)`: tests/test_weights.py and tests/test_robust_args.py.)"""
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from illusort import sort as sort_module
from illusort.layout import LOCK, MANIFEST
from illusort.manifest import read_manifest
from illusort.sort import partial_path

from conftest import draw_character, make_collection, run_cli

PARTIAL = partial_path(Path("x")).name.removeprefix(".x")  # a copy in progress: '.NAME' + this
FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


def tree(root: Path, index=False) -> dict[str, object]:
    """Every path below root: file content, link target, or None for a folder (the index
    folder only if asked)."""
    found = {}
    for p in sorted(root.rglob("*")):
        if not index and ".illusort" in p.relative_to(root).parts:
            continue
        key = p.relative_to(root).as_posix()
        found[key] = os.readlink(p) if p.is_symlink() else None if p.is_dir() else p.read_bytes()
    return found


def check_out_consistent(out: Path, sources_exist=True) -> list:
    """Every file in OUT is our manifest, our lock, or a manifest entry; a 'done' entry is a
    complete copy; a 'pending' one is absent or complete; no half-written copy anywhere."""
    manifest = read_manifest(out)
    entries = manifest["entries"] if manifest else []
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith(PARTIAL)], "a partial copy was left behind"
    assert files - {e.dest for e in entries} <= {MANIFEST, LOCK}, files - {e.dest for e in entries}
    for e in entries:
        dest = out / e.dest
        if e.state == "done" or dest.exists():
            assert dest.read_bytes() == Path(e.src).read_bytes(), f"{e.dest} is not a complete copy"
    return entries


def remount(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)


@pytest.fixture
def fill_disk(tmpfs, tmp_path, monkeypatch):
    """`fill_disk(size) -> (folder for OUT, free())`: a tmpfs of `size` that fills up during
    the copy; `free()` makes room. Where no tmpfs can be mounted, ENOSPC is injected into
    the copy after a few files instead (the only injected error in these tests)."""
    def make(size: str):
        disk = tmpfs("disk", size, skip=False)
        if disk is not None:
            return disk, lambda: remount(disk, "16m")
        real, copies = shutil.copyfileobj, []

        def copy_until_full(fin, fout, length=0):
            copies.append(1)
            if len(copies) > 8:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fin, fout, length)

        monkeypatch.setattr(sort_module.shutil, "copyfileobj", copy_until_full)
        return tmp_path / "disk", lambda: monkeypatch.setattr(sort_module.shutil, "copyfileobj", real)
    return make


def test_disk_full_while_copying(tmp_path, fill_disk):
    root = tmp_path / "pics"
    truth = make_collection(root, characters=4, per_character=10)
    before = tree(root)
    disk, free = fill_disk("64k")  # 4 KiB pages: the manifest and about a dozen copies fit
    out = disk / "sorted"
    result = run_cli("sort", root, "--out", out, "--mode", "copy", *FAST, ok=False)
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in result.output
    assert tree(root) == before
    made = check_out_consistent(out)
    assert 0 < sum((out / e.dest).exists() for e in made) < len(truth)

    free()
    result = run_cli("sort", root, "--out", out, "--mode", "copy", *FAST)
    entries = check_out_consistent(out)
    assert len(entries) == len(truth) and all(e.state == "done" for e in entries)
    assert "0 removed" in result.output
    run_cli("sort", "--undo", "--out", out, root)
    assert tree(root) == before and {p.name for p in out.rglob("*")} <= {LOCK}


def test_disk_full_before_the_manifest_fits(tmp_path, tmpfs):
    root = tmp_path / "pics"
    truth = make_collection(root, characters=4, per_character=10)
    disk = tmpfs("tiny", "4k")
    (disk / "filler").write_bytes(b"x" * 4096)  # not even the manifest fits
    out = disk / "sorted"
    result = run_cli("sort", root, "--out", out, "--mode", "copy", *FAST, ok=False)
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert {p.name for p in out.rglob("*")} <= {LOCK}  # no half manifest, no copy
    (disk / "filler").unlink()
    remount(disk, "16m")
    run_cli("sort", root, "--out", out, "--mode", "copy", *FAST)
    assert len(check_out_consistent(out)) == len(truth)


CRAFTED_NAMES = ["a..b.png", "x\n..\n.png", "back\\..\\slash.png", "%2e%2e%2fescape.png", "-rf.png",
                 " spaced .png", "x.png.png", "dots....png"]


@pytest.mark.parametrize("mode", ["symlink", "copy", "move"])
def test_crafted_file_names_stay_inside_out(tmp_path, mode):
    root = tmp_path / "pics"
    for k, name in enumerate(CRAFTED_NAMES):
        folder = root / ("a..b" if k % 2 else "x\ny")
        folder.mkdir(parents=True, exist_ok=True)
        draw_character(k % 2, k).save(folder / name, "PNG")
    (tmp_path / "victim.png").write_bytes(b"must survive")
    out = tmp_path / "sub" / "out"
    outside = {k: v for k, v in tree(tmp_path).items() if not k.startswith(("pics", "sub"))}
    before = tree(root)
    run_cli("sort", root, "--out", out, "--mode", mode, *FAST)
    entries = read_manifest(out)["entries"]
    assert len(entries) == len(CRAFTED_NAMES)
    for e in entries:
        parts = e.dest.split("/")
        assert len(parts) <= 2 and not {"", ".", ".."} & set(parts)
        assert os.path.realpath((out / e.dest).parent).startswith(str(out.resolve()))
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith(("pics", "sub"))} == outside
    assert {k.split("/")[0] for k in tree(tmp_path / "sub")} == {"out"}
    run_cli("sort", "--undo", "--out", out, root)
    assert tree(root) == before


def crafted(out: Path, source: Path, mode: str, entries: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps({"version": 1, "source": str(source.resolve()), "mode": mode,
                                            "entries": entries}))


def test_crafted_manifests_are_refused_and_touch_nothing(tmp_path):
    root = tmp_path / "pics"
    make_collection(root, characters=2, per_character=6)
    source = str(root.resolve())
    victim_dir = tmp_path / "elsewhere"
    victim_dir.mkdir()
    victim = victim_dir / "victim.png"
    draw_character(0, 99).save(victim)
    out = tmp_path / "out"
    (out / "character-001").mkdir(parents=True)
    os.link(victim, out / "character-001" / "v.png")     # OUT holds a hard link to a file outside
    draw_character(1, 98).save(out / "character-001" / "w.png")
    cases = {
        "absolute dest": ("symlink", [{"src": f"{source}/batch0/c0_0.jpg", "dest": str(victim)}]),
        "dotdot dest": ("symlink", [{"src": f"{source}/batch0/c0_0.jpg", "dest": "../elsewhere/victim.png"}]),
        "nested dotdot": ("copy", [{"src": f"{source}/batch0/c0_0.jpg", "dest": "a/../../elsewhere/victim.png"}]),
        "too deep": ("copy", [{"src": f"{source}/batch0/c0_0.jpg", "dest": "a/b/c.png"}]),
        # a move's src is written (undo links the file back) and unlinked (settling a pending move)
        "move src outside": ("move", [{"src": str(victim), "dest": "character-001/v.png", "state": "pending"}]),
        "move src dotdot": ("move", [{"src": f"{source}/../elsewhere/victim.png", "dest": "character-001/v.png"}]),
        "move back outside": ("move", [{"src": str(victim_dir / "new.png"), "dest": "character-001/w.png"}]),
        "not a list": ("symlink", {"src": "x"}),
    }
    before = tree(tmp_path, index=True)
    for name, (mode, entries) in cases.items():
        crafted(out, root, mode, entries)
        before[f"out/{MANIFEST}"] = (out / MANIFEST).read_bytes()
        for args in (("sort", "--undo", "--out", out, root), ("sort", root, "--out", out, "--mode", mode, *FAST)):
            result = run_cli(*args, ok=False)
            assert result.exit_code == 1 and "Traceback" not in result.output, (name, result.output)
            assert "refusing" in result.output or "damaged" in result.output, (name, result.output)
        assert tree(tmp_path, index=True) == before, name  # not even an index or a lock file
    assert victim.exists() and not (victim_dir / "new.png").exists()

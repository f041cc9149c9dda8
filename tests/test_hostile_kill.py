"""`name`, `merge` and `move` on a move-mode sort, killed at every step of the relocation by
fault injection: the k-th call of os.link / os.unlink / os.mkdir / os.replace, of
`sort.save_manifest` or of `Index.decide` raises instead of running (k = 1, 2, ... until the
command completes). After each kill: no file lost; re-running the same command (or `undo`
straight away) completes or rolls back; OUT then holds exactly its manifest's entries (none
stranded, none pending) and undo restores IN byte for byte."""
import hashlib
import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from illusort import corrections, sort as sort_module
from illusort.index import Index, default_index_path, remember_output
from illusort.errors import SortError
from illusort.layout import LOCK, MANIFEST
from illusort.manifest import read_manifest
from illusort.naming import plan_entries
from illusort.layout import OWN_FILES
from illusort.sort import apply_sort, undo_sort

from hostile import contents

pytestmark = pytest.mark.slow  # kills, fuzzing or training: `pytest -m 'not slow'` skips them


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even `except Exception`)."""


@contextmanager
def killed_at(step: int, monkeypatch):
    """Raise `Killed` at the `step`-th file-system or journal step; yields the call counter."""
    calls = [0]

    def wrap(function):
        def counted(*args, **kwargs):
            calls[0] += 1
            if calls[0] == step:
                raise Killed(f"step {step}")
            return function(*args, **kwargs)
        return counted

    with monkeypatch.context() as m:
        for name in ("link", "unlink", "mkdir", "replace"):
            m.setattr(os, name, wrap(getattr(os, name)))
        for module in (sort_module, corrections):  # the journal writes of sorts and of corrections
            m.setattr(module, "save_manifest", wrap(module.save_manifest))
        m.setattr(Index, "decide", wrap(Index.decide))
        yield calls


def by_path(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".illusort" not in p.parts}


def sorted_by_move(base: Path) -> tuple[Path, Path, dict]:
    """IN with 12 small files, sorted by move into OUT: 3 folders of 4 (no model needed)."""
    root, out = base / "pics", base / "out"
    (root / "sub").mkdir(parents=True)
    paths = [f"{'sub/' if k % 3 == 0 else ''}f{k}.png" for k in range(12)]
    for k, p in enumerate(paths):
        (root / p).write_bytes(os.urandom(64) + bytes([k]))
    original = by_path(root)
    folders = ["character-001"] * 4 + ["character-002"] * 4 + ["unsorted"] * 4
    apply_sort(root, out, plan_entries(root, paths, folders), "move", progress=False)
    remember_output(default_index_path(root), out)
    return root, out, original


COMMANDS = {
    "name": lambda out: corrections.name_character(out, "character-001", "Rem"),
    "name into an existing folder": lambda out: corrections.name_character(out, "character-001", "character-002"),
    "merge": lambda out: corrections.merge_characters(out, "character-002", ["character-001", "unsorted"]),
    "move": lambda out: corrections.move_images(out, [out / e.dest for e in read_manifest(out)["entries"][::3]],
                                                "not-a-character"),
}


def check_nothing_lost(root, out, original, complete):
    have = Counter(contents(root, out))
    assert set(have) == set(original.values()), "a file was lost"
    if complete:
        assert have == Counter(original.values()), "a file has two names"


def check_out_is_its_manifest(out: Path) -> int:
    """Every manifest entry is done and a regular file of OUT; returns the files of OUT that
    the manifest does not list (stranded)."""
    entries = read_manifest(out)["entries"]
    assert all(e.state == "done" and e.moved_from is None for e in entries)
    assert all((out / e.dest).is_file() and not (out / e.dest).is_symlink() for e in entries)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()}
    return len(files - {e.dest for e in entries} - OWN_FILES - {MANIFEST})


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("then", ["run again", "undo"])
def test_a_correction_killed_at_every_step_loses_and_strands_nothing(tmp_path, monkeypatch, command, then):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # a simulated kill loses no page cache
    step = 0
    while True:
        step += 1
        root, out, original = sorted_by_move(tmp_path / f"{step}")
        with killed_at(step, monkeypatch) as calls:
            try:
                COMMANDS[command](out)
                finished = True
            except Killed:
                finished = False
        if finished:
            assert step > 5, calls  # the kills really fell inside the command
            break
        check_nothing_lost(root, out, original, complete=False)
        if then == "run again":
            try:
                COMMANDS[command](out)
            except SortError as error:  # completed by settling: the folder named is gone
                assert "is not" in str(error), error
            check_nothing_lost(root, out, original, complete=True)
            assert check_out_is_its_manifest(out) == 0
        _, left = undo_sort(out)
        assert left == 0 and by_path(root) == original, (command, step)
        assert {p.name for p in out.rglob("*")} <= {LOCK}, (command, step)


LINK_COMMANDS = {"name": COMMANDS["name"], "merge": COMMANDS["merge"]}


@pytest.mark.parametrize("command", sorted(LINK_COMMANDS))
@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_a_correction_of_links_or_copies_killed_then_run_again_places_each_picture_once(tmp_path, monkeypatch,
                                                                                     command, mode):
    """Issue 25: a killed `name` (symlinks) or `merge` (copies) run again placed pictures twice
    (`x.png` and `x~hash.png`): the re-run now recognises what the killed one made."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    step = 0
    while True:
        step += 1
        root, out = tmp_path / f"{step}" / "pics", tmp_path / f"{step}" / "out"
        root.mkdir(parents=True)
        paths = [f"f{k}.png" for k in range(12)]
        for k, p in enumerate(paths):
            (root / p).write_bytes(os.urandom(64) + bytes([k]))
        folders = ["character-001"] * 4 + ["character-002"] * 4 + ["unsorted"] * 4
        apply_sort(root, out, plan_entries(root, paths, folders), mode, progress=False)
        remember_output(default_index_path(root), out)
        with killed_at(step, monkeypatch):
            try:
                LINK_COMMANDS[command](out)
                break
            except Killed:
                pass
        try:
            LINK_COMMANDS[command](out)
            complete = True
        except SortError as error:  # completed by settling: the folder named is gone
            assert "is not" in str(error), error
            complete = False
        entries = read_manifest(out)["entries"]
        assert sorted(Path(e.src).name for e in entries) == sorted(paths), (command, mode, step)
        assert all(e.state == "done" and "~" not in e.dest for e in entries), (command, mode, step)
        files = {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()}
        assert files - OWN_FILES - {MANIFEST} == {e.dest for e in entries}, (command, mode, step)
        target = "Rem" if command == "name" else "character-002"
        assert not complete or len(corrections.folder_entries(out, target)) == (4 if command == "name" else 12)
    assert step > 3


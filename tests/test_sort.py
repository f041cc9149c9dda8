import hashlib
import os
from pathlib import Path

import pytest
from sklearn.metrics import adjusted_mutual_info_score

from illusort.layout import MANIFEST

from conftest import draw_character, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


def snapshot(root: Path) -> dict[str, str]:
    """Every file below root (index excluded) with its content hash: what must never change."""
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".illusort" not in p.parts}


def sorted_folders(out: Path) -> dict[str, str]:
    """source path (relative to the sorted folder's parent) -> folder, from what is on disk."""
    return {os.readlink(link): link.parent.name for link in out.glob("*/*") if link.is_symlink()}


def test_sort_groups_characters_and_undo_restores(collection):
    root, truth = collection
    before = snapshot(root)
    out = root.parent / "sorted"
    result = run_cli("sort", root, "--out", out, *FAST)
    assert "into 4 characters" in result.output  # the summary counts folders, not clusters (issue 11)
    placed = sorted_folders(out)
    assert len(placed) == len(truth)
    labels = [placed[str(root.resolve() / p)] for p in truth]
    assert adjusted_mutual_info_score(list(truth.values()), labels) > 0.9
    assert (out / MANIFEST).exists() and snapshot(root) == before

    run_cli("sort", "--undo", "--out", out, root)
    assert snapshot(root) == before
    assert not out.exists() or not any(p for p in out.iterdir())


def test_rerun_keeps_folder_names_and_adds_new_files(collection):
    root, truth = collection
    out = root.parent / "sorted"
    run_cli("sort", root, "--out", out, *FAST)
    first = sorted_folders(out)
    assert sorted(set(first.values())) == ["character-001", "character-002", "character-003", "character-004"]
    for k in range(6):  # a character the first sort never saw
        draw_character(5, 100 + k).save(root / f"new{k}.png")
    result = run_cli("sort", root, "--out", out, *FAST)
    second = sorted_folders(out)
    assert all(second[src] == folder for src, folder in first.items())
    assert {second[str(root.resolve() / f"new{k}.png")] for k in range(6)} == {"character-005"}
    assert "6 new, 0 removed" in result.output


def test_duplicate_basenames_get_distinct_names(tmp_path):
    root = tmp_path / "pics"
    for folder in ("a", "b", "c/d"):
        for c in range(3):
            for k in range(5):
                (root / folder).mkdir(parents=True, exist_ok=True)
                draw_character(c, k + 10 * len(folder)).save(root / folder / f"{c}_{k}.png")
    out = tmp_path / "out"
    run_cli("sort", root, "--out", out, *FAST)
    links = [p for p in out.rglob("*") if p.is_symlink()]
    assert len(links) == 45 and len({os.readlink(p) for p in links}) == 45


@pytest.mark.parametrize("mode", ["copy", "hardlink", "move"])
def test_other_modes_and_their_undo(collection, mode):
    root, truth = collection
    before = snapshot(root)
    out = root.parent / "out"
    run_cli("sort", root, "--out", out, "--mode", mode, *FAST)
    files = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".illusort")]
    assert len(files) == len(truth) and not any(p.is_symlink() for p in files)
    if mode == "move":
        assert snapshot(root) == {}
    else:
        assert snapshot(root) == before
    run_cli("sort", "--undo", "--out", out, root)
    assert snapshot(root) == before


def test_copy_undo_keeps_a_copy_the_user_edited(collection):
    root, truth = collection
    out = root.parent / "out"
    run_cli("sort", root, "--out", out, "--mode", "copy", *FAST)
    edited = next(p for p in out.rglob("*.png"))
    edited.write_bytes(b"my edit")
    result = run_cli("sort", "--undo", "--out", out, root)
    assert "1 changed since and left in place" in result.output
    assert edited.read_bytes() == b"my edit"


def test_refuses_unsafe_outputs_and_writes_nothing(collection):
    root, truth = collection
    before = snapshot(root)
    inside = run_cli("sort", root, "--out", root / "sorted", *FAST, ok=False)
    assert "inside the folder being sorted" in inside.output
    foreign = root.parent / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    result = run_cli("sort", root, "--out", foreign, *FAST, ok=False)
    assert "did not make" in result.output and sorted(os.listdir(foreign)) == ["mine.txt"]
    assert snapshot(root) == before and not (root / "sorted").exists()


def test_dry_run_changes_nothing(collection):
    root, truth = collection
    out = root.parent / "out"
    result = run_cli("sort", root, "--out", out, "--dry-run", *FAST)
    assert "symlink " in result.output and not out.exists()


def test_crafted_manifest_cannot_escape(collection):
    root, truth = collection
    out = root.parent / "out"
    out.mkdir()
    (out / MANIFEST).write_text('{"version": 1, "source": "%s", "mode": "symlink", "entries": '
                                '[{"src": "/etc/passwd", "dest": "../../escape"}]}' % root.resolve())
    result = run_cli("sort", "--undo", "--out", out, root, ok=False)
    assert "outside the output folder" in result.output


def test_library_sort_refuses_a_wrong_clustering_option_before_any_work(collection, tmp_path, monkeypatch):
    from illusort import workflow
    from illusort.cluster import ClusterError

    monkeypatch.setattr(workflow, "embed", lambda *a, **k: pytest.fail("embedded before checking the options"))
    with pytest.raises(ClusterError, match="unknown clustering option 'min_size'"):
        workflow.sort(collection[0], tmp_path / "out", workflow.Settings(faces="off"), min_size=3)
    assert not (tmp_path / "out").exists()


def folder_of_character(out: Path, kind: int, names) -> set[str]:
    return {p.parent.name for name in names for p in out.glob(f"*/{name}")}


def test_move_mode_keeps_its_characters_for_new_pictures(collection):
    """Issue 26, item 1: after --mode move the pictures have left IN; the next sorts must still
    see them as their characters' members, so new pictures join the existing folders (and a
    name given meanwhile), not new numbers."""
    root, truth = collection
    out = root.parent / "sorted"
    run_cli("sort", root, "--out", out, "--mode", "move", *FAST)
    homes = {c: folder_of_character(out, c, [Path(p).name for p, k in truth.items() if k == c]) for c in range(4)}
    assert all(len(h) == 1 for h in homes.values()), homes
    (first,) = homes[0]
    run_cli("name", out, first, "Miku")
    for round_, seeds in enumerate((range(100, 103), range(110, 112))):  # a full re-cluster, then an incremental one
        for k in seeds:
            draw_character(0, k).save(root / f"miku{k}.png")
            draw_character(1, k).save(root / f"other{k}.png")
        result = run_cli("sort", root, "--out", out, "--mode", "move", *FAST)
        assert "removed from index" in result.output and ", 0 removed from index" in result.output, result.output
        assert folder_of_character(out, 0, [f"miku{k}.png" for k in seeds]) == {"Miku"}, round_
        assert folder_of_character(out, 1, [f"other{k}.png" for k in seeds]) == homes[1], round_
        assert not snapshot(root)  # every picture was moved
    status = run_cli("status", out)
    assert "a re-run would change nothing" in status.output, status.output
    run_cli("undo", out)
    assert len(snapshot(root)) == len(truth) + 10

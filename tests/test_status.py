"""`status` tells the truth about a re-run (issue 26, items 3 and 5): its verdict agrees with
`sort --dry-run` on an older output of a folder sorted into several, after a correction that
a running sort left out, and after a file deleted from OUT by hand, which is no longer counted
or shown anywhere."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from illusort.index import Index, default_index_path
from illusort.manifest import read_manifest

from conftest import draw_character, make_collection, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


@pytest.fixture
def sorted_out(tmp_path):
    root = tmp_path / "pics"
    make_collection(root, characters=3, per_character=8)
    out = tmp_path / "out"
    run_cli("sort", root, "--out", out, *FAST)
    return root, out


def rerun(out: Path) -> dict:
    return json.loads(run_cli("status", out, "--json").stdout)["rerun"]


def dry_run_changes(root: Path, out: Path) -> bool:
    return "nothing would change" not in run_cli("sort", root, "--out", out, *FAST, "--dry-run").output


def test_an_older_output_is_not_up_to_date_after_a_sort_into_another(sorted_out, tmp_path):
    root, out = sorted_out
    assert rerun(out)["up_to_date"] and not dry_run_changes(root, out)
    for k in range(6):
        draw_character(4, 100 + k).save(root / f"new{k}.png")
    run_cli("sort", root, "--out", tmp_path / "second", *FAST)  # embeds the new pictures, clusters anew
    said = rerun(out)
    assert not said["up_to_date"] and sorted(said["new"]) == [f"new{k}.png" for k in range(6)], said
    assert said["reclustered"]
    assert "a re-run would take in: 6 new" in run_cli("status", out).output
    assert dry_run_changes(root, out)
    run_cli("sort", root, "--out", out, *FAST)
    assert rerun(out)["up_to_date"] and not dry_run_changes(root, out)
    again = json.loads(run_cli("status", out, "--json").stdout)["sort_again"]  # the command status suggests
    assert "--seed 0" in again, again
    assert "nothing would change" in run_cli(*shlex.split(again)[1:], "--dry-run", "-q").output


def test_a_correction_out_does_not_show_is_a_change(sorted_out):
    """What a sort running meanwhile used to leave: the decision stored, OUT as planned before."""
    root, out = sorted_out
    entry = next(e for e in read_manifest(out)["entries"] if e.dest.startswith("character-001/"))
    rel = Path(entry.src).relative_to(root.resolve()).as_posix()
    with Index(default_index_path(root)) as index:
        index.decide([(rel, 0)], "Miku")
    said = rerun(out)
    assert said["corrections"] == [rel] and not said["up_to_date"]
    assert "1 picture not yet where your corrections put them" in run_cli("status", out).output
    assert dry_run_changes(root, out)
    run_cli("sort", root, "--out", out, *FAST)
    assert (out / "Miku" / Path(rel).name).is_symlink() and rerun(out)["up_to_date"]


def test_a_link_deleted_by_hand_is_not_counted(sorted_out):
    root, out = sorted_out
    entry = next(e for e in read_manifest(out)["entries"] if e.dest.startswith("character-001/"))
    before = json.loads(run_cli("status", out, "--json").stdout)["folders"]["character-001"]
    (out / entry.dest).unlink()
    status = json.loads(run_cli("status", out, "--json").stdout)
    assert status["folders"]["character-001"] == before - 1
    assert status["rerun"]["missing"] == [entry.dest] and not status["rerun"]["up_to_date"]
    run_cli("report", out, "-q")
    page = (out / "report.html").read_text()
    assert Path(entry.dest).name not in page and f"{before - 1} images</small>" in page
    assert dry_run_changes(root, out)
    result = run_cli("sort", root, "--out", out, *FAST)  # the plan still wants it: made again
    assert "1 new, 0 removed" in result.output and (out / entry.dest).is_symlink()
    assert all((out / e.dest).is_symlink() for e in read_manifest(out)["entries"])
    assert rerun(out)["up_to_date"]


def test_a_moved_file_deleted_by_hand_leaves_the_sort(tmp_path):
    root = tmp_path / "pics"
    make_collection(root, characters=3, per_character=8)
    out = tmp_path / "out"
    run_cli("sort", root, "--out", out, "--mode", "move", *FAST)
    assert rerun(out)["up_to_date"]  # the moved pictures are not "deleted"
    entry = read_manifest(out)["entries"][0]
    (out / entry.dest).unlink()
    status = json.loads(run_cli("status", out, "--json").stdout)
    assert sum(status["folders"].values()) == 23 and status["rerun"]["missing"] == [entry.dest]
    result = run_cli("sort", root, "--out", out, "--mode", "move", *FAST)
    assert "sorted 23 images" in result.output and "1 removed from index" in result.output, result.output
    assert len(read_manifest(out)["entries"]) == 23 and rerun(out)["up_to_date"]

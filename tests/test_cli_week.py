"""Issue 26, a week of real use: the low-harm items (8-11), each tried through the CLI as the
user did. Items 1-7 are tested beside the code they changed (test_sort, test_query, ...)."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from conftest import make_collection, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


def one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def sorted_out(tmp_path):
    """A small folder sorted with hsv-hist: (folder, OUT)."""
    root = tmp_path / "pics"
    make_collection(root, characters=3, per_character=8)
    Image.new("RGB", (60, 60), (10, 10, 10)).save(root / "logo.png")  # fits no character: unsorted
    out = tmp_path / "out"
    run_cli("sort", root, "--out", out, *FAST)
    return root, out


# 9 ------------------------------------------------------------------------------------------
def test_name_and_merge_take_full_paths_to_character_folders(sorted_out, tmp_path, monkeypatch):
    root, out = sorted_out
    run_cli("name", out, out / "character-001", "Rem")            # absolute, as `move` takes it
    assert (out / "Rem").is_dir() and not (out / "character-001").exists()
    monkeypatch.chdir(tmp_path)
    both = len(os.listdir(out / "Rem")) + len(os.listdir(out / "character-002"))
    run_cli("merge", out, "out/Rem", "out/character-002")           # relative to the current folder
    assert not (out / "character-002").exists() and len(os.listdir(out / "Rem")) == both
    one_line_error(run_cli("name", out, root / "batch0", "X", ok=False), "not a character folder")


@pytest.mark.parametrize("blank", ["   ", "\t"])
def test_a_name_of_only_spaces_is_refused(sorted_out, blank):
    _, out = sorted_out
    one_line_error(run_cli("name", out, "character-001", blank, ok=False), "cannot be a folder name")
    one_line_error(run_cli("move", out, "unsorted/logo.png", "--to", blank, ok=False), "cannot be a folder name")
    assert (out / "character-001").is_dir()


def test_status_never_suggests_sorting_a_folder_that_is_no_sort(sorted_out, tmp_path):
    root, out = sorted_out
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (8, 8)).save(elsewhere / "a.png")
    for folder in (elsewhere, tmp_path / "empty"):
        folder.mkdir(exist_ok=True)
        line = one_line_error(run_cli("status", folder, ok=False), "holds no sort")
        assert "illusort sort " + str(folder) not in line
    run_cli("undo", out)
    line = one_line_error(run_cli("status", out, ok=False), "holds no sort")   # emptied by undo
    assert f"illusort sort {out}" not in line


def test_a_folder_inside_an_output_names_the_output(sorted_out, monkeypatch):
    _, out = sorted_out
    monkeypatch.chdir(out / "character-001")
    line = one_line_error(run_cli("move", ".", "x.png", "--to", "Rem", ok=False), f"illusort move {out}")
    assert "--out ." not in line
    one_line_error(run_cli("status", ".", ok=False), f"illusort status {out}")


def test_undo_of_the_sorted_folder_names_every_output(sorted_out, tmp_path):
    root, out = sorted_out
    others = [tmp_path / f"out{k}" for k in range(3)]
    for other in others:
        run_cli("sort", root, "--out", other, *FAST)
    line = one_line_error(run_cli("undo", root, ok=False), "folder you sorted", "4 folders")
    assert all(str(o) in line for o in (out, *others))
    run_cli("undo", others[0])
    line = one_line_error(run_cli("undo", root, ok=False), "3 folders")
    assert str(others[0]) not in line

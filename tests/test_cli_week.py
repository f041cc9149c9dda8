"""Issue 26, a week of real use: the low-harm items (8-11), each tried through the CLI as the
user did. Items 1-7 are tested beside the code they changed (test_sort, test_query, ...)."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from conftest import make_collection, one_line_error, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


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


# 10 -----------------------------------------------------------------------------------------
def test_commands_say_what_embedding_changed_and_each_skip_once(sorted_out, tmp_path):
    root, out = sorted_out
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    first = run_cli("sort", root, "--out", out, *FAST)
    assert "1 embedded" not in first.output and "skipped broken.jpg" in first.output
    assert "images:" in first.output  # a new unreadable file is a change worth the line
    for args in (("sort", root, "--out", out, *FAST), ("cluster", root, *FAST),
                 ("query", next(root.rglob("*.png")), "--in", root, *FAST[:-2])):
        again = run_cli(*args)
        assert "0 embedded" not in again.output and "unchanged" not in again.output, again.output
        assert "broken.jpg" not in again.output, again.output
    assert "1 skipped" in run_cli("embed", root, *FAST[:-2]).output  # asked for: always said
    (root / "late.png").write_bytes((root / "logo.png").read_bytes())
    assert "1 reused by content" in run_cli("sort", root, "--out", out, *FAST).output


def test_cluster_speaks_of_images_characters_and_unsorted(sorted_out):
    root, _ = sorted_out
    line = run_cli("cluster", root, *FAST).stdout
    assert "images ->" in line and "characters" in line and "unsorted" in line
    assert "item" not in line and "unclustered" not in line


def test_evaluate_on_a_one_level_folder_has_no_source_table(tmp_path):
    from conftest import make_labelled

    labelled = make_labelled(tmp_path / "labelled")
    result = run_cli("evaluate", labelled, "--out", tmp_path / "eval", *FAST)
    assert "12 images of 3 characters" in result.stdout
    assert "source" not in result.stdout, result.stdout
    for extra in ("c1", "c2"):
        for picture in (labelled / extra).iterdir():
            picture.unlink()
        (labelled / extra).rmdir()
    one_line_error(run_cli("evaluate", labelled, "--out", tmp_path / "eval", *FAST, ok=False), "of 1 character:")


def test_the_readme_opens_with_what_the_user_gets():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    opening = readme.split("\n## ", 1)[0].lower()
    for jargon in ("embedding", "linkage", "hdbscan", "eer", "ami", "cnn", "umap", "triplet"):
        assert jargon not in opening, jargon
    assert "folder" in opening and "character" in opening


# 11 -----------------------------------------------------------------------------------------
DEFAULT_PATH = """
import sys
from click.testing import CliRunner
from illusort.cli import main
result = CliRunner().invoke(main, ["sort", sys.argv[1], "--model", sys.argv[2], "-q", "--workers", "0", "--json"])
assert result.exit_code == 0 and "HDBSCAN" not in result.output, result.output
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & {"umap", "numba", "pynndescent", "hdbscan", "llvmlite"})))
"""


def test_the_default_sort_path_compiles_nothing(tmp_path, tiny_cnn):
    """Average linkage (100 to 10,000 pictures, a model with a threshold: the default) needs
    no UMAP: numba, which compiles UMAP's functions on first use, is never imported."""
    import subprocess
    import sys

    root = tmp_path / "pics"
    make_collection(root, characters=4, per_character=26)
    out = subprocess.run([sys.executable, "-c", DEFAULT_PATH, root, tiny_cnn], capture_output=True,
                         text=True, env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout
    assert not (tmp_path / "numba").exists()


def test_the_first_umap_says_it_compiles(tmp_path, monkeypatch):
    """The HDBSCAN path (with UMAP from 300 pictures) compiles UMAP's numba functions once
    after an install (162 s measured on two busy cores, then 4 s): the run says so first."""
    import sys
    import types
    import warnings

    import numpy as np

    from illusort import cluster

    fake = types.ModuleType("umap")  # a stand-in: the test checks the note, not UMAP
    fake.UMAP = lambda n_components, **kw: types.SimpleNamespace(fit_transform=lambda x: x[:, :n_components])
    monkeypatch.setitem(sys.modules, "umap", fake)
    monkeypatch.setattr(cluster, "cache_umap_functions", lambda: None)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    vectors = np.random.default_rng(0).normal(size=(cluster.UMAP_MIN_ITEMS, 40)).astype(np.float32)

    def notes():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cluster.reduce_dimensions(vectors, 8, pca_dims=0)
        return [str(w.message) for w in caught if "compiling UMAP" in str(w.message)]

    assert len(notes()) == 1 and str(tmp_path / "numba") in notes()[0]
    (tmp_path / "numba" / "umap_0123").mkdir(parents=True)
    (tmp_path / "numba" / "umap_0123" / "umap_.fit-1.py311.nbi").write_bytes(b"")
    assert notes() == []


# 8 ------------------------------------------------------------------------------------------
def test_training_on_a_small_folder_says_what_it_lacks_and_how_to_use_the_model(tmp_path):
    """6 characters: 1 goes to dev and 1 to test, too few to score. The run says so plainly,
    saves the model, says how to use it; a sort with it explains HDBSCAN in plain words."""
    from conftest import draw_character

    from illusort.train.data import characters_needed

    labelled = tmp_path / "labelled"
    for c in range(6):
        (labelled / f"char{c}").mkdir(parents=True)
        for k in range(14):
            draw_character(c, k, size=(40, 48)).save(labelled / f"char{c}" / f"{k}.png")
    model = tmp_path / "mine.pt"
    result = run_cli("train", labelled, "--out", model, "--init", "none", "--input-size", "32", "--epochs", "1",
                     "--workers", "0", "-q", "--faces", "off", "--batch-size", "12", "--per-class", "4",
                     "--random-extra", "6")
    text = " ".join(result.output.split())
    assert characters_needed() == 8
    assert "6 labelled characters are too few to score the model" in text and "at least 8 characters" in text
    assert "the model is saved" in text and "no similarity threshold" in text
    assert f"use it: illusort sort DIR --model {model}" in text and "test: not scored" in text
    assert "saved and usable" in result.stdout and "only one dev character" not in text
    assert model.is_file()
    pictures = tmp_path / "pics"
    make_collection(pictures, characters=4, per_character=26)
    sort = " ".join(run_cli("sort", pictures, "--model", model, "-q", "--workers", "0", "--faces", "off").output.split())
    assert "trained on too few characters" in sort and "grouped by how densely they gather" in sort
    model.unlink()

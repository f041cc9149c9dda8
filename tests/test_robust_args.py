"""Bad arguments: a one-line error, exit code 1, no traceback, and nothing written (no output
folder, no lock, no index) when the problem is found before any work."""
import os
import shutil

import pytest
import torch

from illusort import nets
from illusort.layout import INDEX_DIRNAME
from illusort.manifest import read_manifest
from illusort.weights import FORMAT, save_checkpoint

from conftest import draw_character, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


def snapshot(root):
    """Every path below root with its content (None for folders): what must not change."""
    return {p.relative_to(root).as_posix(): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], result.output
    return errors[0]


def test_missing_folder_or_a_file_as_folder(tmp_path):
    draw_character(0, 0).save(tmp_path / "file.png")
    before = snapshot(tmp_path)
    for command in ("embed", "sort", "cluster"):
        one_line_error(run_cli(command, tmp_path / "nope", *FAST[:-2], ok=False), "does not exist")
        one_line_error(run_cli(command, tmp_path / "file.png", *FAST[:-2], ok=False), "is not a folder")
    assert snapshot(tmp_path) == before  # no nope-sorted/, no index, no lock


def test_output_inside_or_around_the_input_is_refused_before_any_work(tmp_path, collection):
    root, _ = collection
    before = snapshot(tmp_path)
    one_line_error(run_cli("sort", root, "--out", root / "sorted", *FAST, ok=False), "inside the folder being sorted")
    one_line_error(run_cli("sort", root, "--out", root, *FAST, ok=False), "inside the folder being sorted")
    one_line_error(run_cli("sort", root / "batch0", "--out", root, *FAST, ok=False), "contains the folder")
    assert snapshot(tmp_path) == before and not (root / INDEX_DIRNAME).exists()


def test_output_with_an_earlier_sort_is_reused_and_foreign_outputs_are_refused(tmp_path, collection):
    root, truth = collection
    out = tmp_path / "out"
    run_cli("sort", root, "--out", out, *FAST)
    mine = out / "character-001" / "my-notes.txt"  # the user's own file inside a sorted folder
    mine.write_text("keep me")
    again = run_cli("sort", root, "--out", out, *FAST)
    assert f"0 new, 0 removed, {len(truth)} kept" in again.output and mine.read_text() == "keep me"

    other = tmp_path / "other"
    other.mkdir()
    draw_character(1, 1).save(other / "x.png")
    before = snapshot(tmp_path)
    one_line_error(run_cli("sort", root, "--out", out, "--mode", "copy", *FAST, ok=False), "holds a symlink sort")
    one_line_error(run_cli("sort", other, "--out", out, *FAST, ok=False), "holds a sort of")
    assert snapshot(tmp_path) == before  # not even other/.illusort

    foreign = tmp_path / "foreign"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "sub" / "holiday.jpg").write_bytes(b"their photo")
    before = snapshot(tmp_path)
    for mode in ("symlink", "copy", "move"):
        one_line_error(run_cli("sort", root, "--out", foreign, "--mode", mode, *FAST, ok=False), "did not make")
    assert snapshot(tmp_path) == before  # no lock file, no manifest, no index

    run_cli("sort", "--undo", "--out", out, root)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["character-001",
                                                                            "character-001/my-notes.txt"]


def test_move_across_file_systems_is_refused(tmp_path, collection, tmpfs):
    root, _ = collection
    other_fs = tmpfs("other-fs", "2m")
    assert os.stat(other_fs).st_dev != os.stat(root).st_dev
    before = snapshot(tmp_path)
    for out in (other_fs / "sorted", other_fs):  # a new folder there, or the (empty) mount point itself
        one_line_error(run_cli("sort", root, "--out", out, "--mode", "move", *FAST, ok=False), "across file systems")
    assert snapshot(tmp_path) == before and not (root / INDEX_DIRNAME).exists()
    # copy is the way across: allowed, and the sources stay
    run_cli("sort", root, "--out", other_fs / "sorted", "--mode", "copy", *FAST)
    assert read_manifest(other_fs / "sorted")["mode"] == "copy"


def bad_checkpoints(tmp_path):
    """name -> (path, words the error names)."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "text.pt").write_text("this is not a checkpoint\n")
    (folder / "empty.pt").write_bytes(b"")
    (folder / "adir.pt").mkdir()
    torch.save({"weights": torch.zeros(3)}, folder / "plain.pt")
    net = nets.build("resnet18", embed_dim=8, input_size=32)
    save_checkpoint(folder / "other-arch.pt", net, {"arch": "resnet18", "embed_dim": 8})
    blob = torch.load(folder / "other-arch.pt", weights_only=True)
    blob["card"]["arch"] = "lite0"
    torch.save(blob, folder / "other-arch.pt")
    (folder / "other-arch.json").unlink()
    blob["card"]["arch"] = "transformer-xl"
    torch.save(blob, folder / "unknown-arch.pt")
    del blob["state_dict"]
    torch.save(blob, folder / "no-weights.pt")
    shutil.copy(folder / "unknown-arch.pt", folder / "bad-card.pt")
    (folder / "bad-card.json").write_text("{ not json")
    torch.save({"format": FORMAT, "card": RunsCode(str(tmp_path / "code-ran")), "state_dict": {}},
               folder / "pickled-callable.pt")
    return {"text": (folder / "text.pt", "not a loadable checkpoint"),
            "empty": (folder / "empty.pt", "not a loadable checkpoint"),
            "adir": (folder / "adir.pt", "not a loadable checkpoint"),
            "plain": (folder / "plain.pt", "not an illusort checkpoint"),
            "other-arch": (folder / "other-arch.pt", "do not fit architecture 'lite0'"),
            "unknown-arch": (folder / "unknown-arch.pt", "transformer-xl"),
            "no-weights": (folder / "no-weights.pt", "damaged checkpoint"),
            "bad-card": (folder / "bad-card.pt", "damaged checkpoint or model card"),
            "pickled-callable": (folder / "pickled-callable.pt", "not a loadable checkpoint"),
            "missing": (folder / "missing.pt", "not found")}


class RunsCode:
    """Unpickling this calls os.mkdir: `torch.load(weights_only=True)` must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("command", ["embed", "sort", "query"])
def test_unusable_model_files_are_one_line_errors_and_write_nothing(tmp_path, collection, command):
    root, truth = collection
    out = tmp_path / "out"
    for name, (path, words) in bad_checkpoints(tmp_path).items():
        before = snapshot(tmp_path)
        args = {"embed": ("embed", root), "sort": ("sort", root, "--out", out),
                "query": ("query", root / sorted(truth)[0], "--in", root, "--link", out)}[command]
        one_line_error(run_cli(*args, "--model", path, "-q", "--workers", "0", ok=False), words)
        assert snapshot(tmp_path) == before, name
        assert not (root / INDEX_DIRNAME).exists() and not out.exists(), name
    assert not (tmp_path / "code-ran").exists()

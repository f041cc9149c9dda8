"""Known characters, and corrections that survive re-runs: name, merge, move, not a
character, and folders renamed by hand."""
import os
import re
from pathlib import Path

import pytest

from illusort.index import Index, default_index_path

from conftest import draw_character, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


def placed(out: Path) -> dict[str, str]:
    """source file name -> folder it is linked in (a file in two folders: the last seen)."""
    return {Path(os.readlink(link)).name: link.parent.name for link in out.glob("*/*") if link.is_symlink()}


def folder_of_character(where: dict[str, str], kind: int) -> set[str]:
    return {folder for name, folder in where.items() if name.startswith(f"c{kind}_")}


@pytest.fixture
def sorted_collection(collection):
    root, truth = collection
    out = root.parent / "sorted"
    run_cli("sort", root, "--out", out, *FAST)
    where = placed(out)
    assert all(len(folder_of_character(where, k)) == 1 for k in range(4))
    return root, out, where


def add_images(root: Path, kind: int, n: int = 3, start: int = 200) -> list[str]:
    names = []
    for k in range(start, start + n):
        draw_character(kind, k).save(root / f"c{kind}_{k}.png")
        names.append(f"c{kind}_{k}.png")
    return names


def test_named_character_keeps_its_name_and_gains_new_images(sorted_collection):
    root, out, where = sorted_collection
    (folder,) = folder_of_character(where, 0)
    assert run_cli("name", out, folder, "Rem").output.strip().endswith(f"10 images now in {out / 'Rem'}")
    assert not (out / folder).exists() and len(list((out / "Rem").iterdir())) == 10
    with Index(default_index_path(root)) as index:
        assert sum(name == "Rem" for name in index.decisions().values()) == 10
    new = add_images(root, 0)
    run_cli("sort", root, "--out", out, *FAST)
    after = placed(out)
    assert folder_of_character(after, 0) == {"Rem"} and all(after[n] == "Rem" for n in new)
    for k in (1, 2, 3):  # the others are not renumbered
        assert folder_of_character(after, k) == folder_of_character(where, k)


def test_folder_renamed_by_hand_is_remembered(sorted_collection):
    root, out, where = sorted_collection
    (folder,) = folder_of_character(where, 1)
    os.rename(out / folder, out / "Emilia")
    new = add_images(root, 1)
    run_cli("sort", root, "--out", out, *FAST)
    after = placed(out)
    assert folder_of_character(after, 1) == {"Emilia"} and not (out / folder).exists()
    assert all(after[n] == "Emilia" for n in new)
    with Index(default_index_path(root)) as index:
        assert sum(name == "Emilia" for name in index.decisions().values()) == 10


def test_merge_and_move_and_not_a_character_hold_on_rerun(sorted_collection):
    root, out, where = sorted_collection
    (a,), (b,), (c,) = (folder_of_character(where, k) for k in (0, 1, 2))
    run_cli("merge", out, a, b)
    assert not (out / b).exists() and len(list((out / a).iterdir())) == 20
    odd = out / c / next(n for n, f in where.items() if f == c)
    run_cli("move", out, odd, "--to", a)
    rejected = out / c / sorted(n for n, f in where.items() if f == c and n != odd.name)[0]
    run_cli("move", out, rejected, "--not-character")
    assert (out / a / odd.name).is_symlink() and (out / "not-a-character" / rejected.name).is_symlink()

    run_cli("sort", root, "--out", out, *FAST)
    after = placed(out)
    assert folder_of_character(after, 0) == folder_of_character(after, 1) == {a}
    assert after[odd.name] == a and after[rejected.name] == "not-a-character"
    assert {f for n, f in after.items() if n.startswith("c2_") and n not in (odd.name, rejected.name)} == {c}


def test_corrections_refuse_clearly(sorted_collection, tmp_path):
    root, out, where = sorted_collection
    assert "is not a character folder" in run_cli("name", out, "nobody", "X", ok=False).output
    (folder,) = folder_of_character(where, 0)
    assert "cannot be a folder name" in run_cli("name", out, folder, "../x", ok=False).output
    assert "not inside" in run_cli("move", out, root / "c0_0.jpg", "--to", "X", ok=False).output
    assert "holds no illusort sort" in run_cli("name", tmp_path, "a", "b", ok=False).output
    assert "either --to" in run_cli("move", out, out / folder / "x.png", ok=False).output


def test_known_characters_take_their_images_and_never_force_the_rest(collection, tmp_path):
    root, truth = collection
    refs = tmp_path / "refs"
    for kind, name in ((0, "Rem"), (1, "Ram")):
        (refs / name).mkdir(parents=True)
        draw_character(kind, 999).save(refs / name / "ref.png")
    out = tmp_path / "sorted"
    said = run_cli("sort", root, "--out", out, "--known", refs, "--threshold", "0.8", *FAST).output
    assert re.search(r"characters \(Ram \d+, Rem \d+, character-", said), said
    where = placed(out)
    assert folder_of_character(where, 0) == {"Rem"} and folder_of_character(where, 1) == {"Ram"}
    for k in (2, 3):  # unknown characters: clustered, not pushed onto Rem or Ram
        assert all(f.startswith("character-") or f == "unsorted" for f in folder_of_character(where, k))
    assert "sub-folders" in run_cli("sort", root, "--out", tmp_path / "o2", "--known", root / "batch0",
                                    *FAST, ok=False).output


def test_the_summary_names_known_characters_before_larger_numbered_folders():
    from illusort.cli.rendering import folder_sizes

    sizes = {f"character-{k:03d}": 50 - k for k in range(1, 14)} | {"Rem": 3}
    assert folder_sizes(sizes).startswith("Rem 3, character-001 49, character-002 48")
    assert folder_sizes(sizes).endswith("character-011 39, ...") and folder_sizes({"Ram": 2}) == "Ram 2"


@pytest.mark.parametrize("mode", ["copy", "hardlink", "move"])
def test_corrections_in_every_mode_lose_nothing_and_undo(collection, mode):
    import hashlib

    root, truth = collection

    def contents(folder):
        return sorted(hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.rglob("*")
                      if p.is_file() and ".illusort" not in p.parts and not p.name.startswith(".illusort"))

    before = contents(root)
    out = root.parent / "sorted"
    run_cli("sort", root, "--out", out, "--mode", mode, *FAST)
    folders = sorted(p.name for p in out.iterdir() if p.is_dir() and p.name.startswith("character-"))
    run_cli("name", out, folders[0], "Rem")
    n_rem, n_next = (len(list((out / f).iterdir())) for f in ("Rem", folders[1]))
    said = run_cli("name", out, folders[1], "Rem").output  # naming into an existing name merges
    assert f"{n_next} image" in said and f"it now holds {n_rem + n_next} images" in said
    said = run_cli("name", out, "Rem/", "Rem").output   # as a shell completes it
    assert f"already has that name: its {n_rem + n_next} images stay Rem" in said and "now in" not in said
    picture = next((out / folders[2]).iterdir())
    run_cli("move", out, picture, "--not-character")
    assert (out / "not-a-character" / picture.name).exists() and not picture.exists()
    placed = contents(out)
    if mode == "move":
        assert placed == before and contents(root) == []
    else:
        assert placed == before and contents(root) == before
    run_cli("sort", "--undo", "--out", out, root)
    assert contents(root) == before and contents(out) == []

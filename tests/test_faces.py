"""Face crops: detection works (or refuses), each face is its own row, two characters in
one image reach both folders, and `auto` leaves face-filling icons whole."""
import numpy as np
import pytest

from illusort import faces
from illusort.index import Index, default_index_path
from illusort.manifest import read_manifest

from conftest import draw_scene, index_key, run_cli

KINDS = (0, 1, 2)


@pytest.fixture
def scenes(tmp_path):
    """Six solo scenes per character and two scenes with characters 0 and 1 together."""
    root = tmp_path / "scenes"
    root.mkdir()
    for kind in KINDS:
        for k in range(6):
            draw_scene([kind], seed=10 * kind + k).save(root / f"solo{kind}_{k}.png")
    for k in range(2):
        draw_scene([0, 1], seed=100 + k, size=(480, 240)).save(root / f"pair_{k}.png")
    return root


def test_each_face_is_a_row_with_its_box(scenes):
    run_cli("embed", scenes, "--model", "hsv-hist", "-q", "--workers", "0")
    with Index(default_index_path(scenes)) as index:
        rows, vectors = index.embeddings(index_key("hsv-hist", "auto"))
    faces_of = {}
    for row in rows:
        faces_of.setdefault(row.path, []).append(row)
    assert len(faces_of) == 20 and all(len(faces_of[f"pair_{k}.png"]) == 2 for k in range(2))
    for path, found in faces_of.items():
        assert [r.face for r in found] == list(range(len(found)))
        assert all(r.box is not None and r.box[2] - r.box[0] < 240 for r in found), path  # small crops
    pair = faces_of["pair_0.png"]
    assert pair[0].box[0] < 240 <= pair[1].box[0] or pair[1].box[0] < 240 <= pair[0].box[0]
    assert np.isfinite(vectors).all()


def test_two_characters_in_one_image_are_sorted_into_both_folders(scenes, tmp_path):
    out = tmp_path / "out"
    run_cli("sort", scenes, "--out", out, "--model", "hsv-hist", "-q", "--workers", "0", "--min-cluster-size", "4")
    folders = {}
    for entry in read_manifest(out)["entries"]:
        folders.setdefault(entry.dest.split("/")[0], set()).add(entry.src.rsplit("/", 1)[1])
    solo_folder = {kind: next(f for f, names in folders.items() if f"solo{kind}_0.png" in names) for kind in KINDS}
    assert len(set(solo_folder.values())) == 3
    for kind in KINDS:
        assert {f"solo{kind}_{k}.png" for k in range(6)} <= folders[solo_folder[kind]]
    for k in range(2):
        assert f"pair_{k}.png" in folders[solo_folder[0]] and f"pair_{k}.png" in folders[solo_folder[1]]
        assert f"pair_{k}.png" not in folders[solo_folder[2]]
    assert (out / solo_folder[0] / "pair_0.png").is_symlink() and (out / solo_folder[1] / "pair_0.png").is_symlink()


def test_auto_keeps_a_face_filling_image_whole_and_always_crops_it():
    icon = faces.draw_face(128)
    assert faces.face_boxes(icon, "auto") == [None]
    (box,) = faces.face_boxes(icon, "always")
    assert box is not None and faces.face_boxes(icon, "off") == [None]
    scene = draw_scene([0], seed=1)
    assert faces.face_boxes(scene, "auto")[0] is not None


def test_off_embeds_whole_images(scenes):
    run_cli("embed", scenes, "--model", "hsv-hist", "-q", "--workers", "0", "--faces", "off")
    with Index(default_index_path(scenes)) as index:
        rows, _ = index.embeddings(index_key("hsv-hist", "off"))
    assert len(rows) == 20 and all(r.face == 0 and r.box is None for r in rows)


def test_detection_that_silently_finds_nothing_is_refused(scenes, monkeypatch):
    import animeface

    monkeypatch.setattr(animeface, "detect", lambda image: [])  # what Pillow >= 12 does
    faces.check_detector.cache_clear()
    try:
        result = run_cli("embed", scenes, "--model", "hsv-hist", "-q", ok=False)
        assert result.exit_code == 1 and "Pillow < 12" in result.output and "--faces off" in result.output
        assert len(result.output.strip().splitlines()) == 1
        run_cli("embed", scenes, "--model", "hsv-hist", "-q", "--workers", "0", "--faces", "off")
    finally:
        faces.check_detector.cache_clear()


def test_move_mode_puts_a_two_face_picture_in_one_folder(scenes, tmp_path):
    """Issue 26, item 6: a file can be moved once. Its largest face's folder takes it, with no
    false "vanished since it was embedded" warning, and the dry run counts one entry per file."""
    out = tmp_path / "out"
    args = ("--out", out, "--mode", "move", "--model", "hsv-hist", "-q", "--workers", "0", "--min-cluster-size", "4")
    dry = run_cli("sort", scenes, *args, "--dry-run")
    assert "would make: 20 new" in dry.output, dry.output
    result = run_cli("sort", scenes, *args)
    assert "vanished" not in result.output and "not sorted" not in result.output, result.output
    entries = read_manifest(out)["entries"]
    assert len(entries) == 20 and len({e.src for e in entries}) == 20
    assert all((out / e.dest).is_file() for e in entries)
    again = run_cli("sort", scenes, *args, "--dry-run")
    assert "would make: 0 new, 0 removed, 20 kept" in again.output, again.output

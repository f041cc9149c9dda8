"""Folder names and placement: the pure functions a newcomer is most likely to change
(`naming`), the journal settling of `sort`, nearest-cluster placement and the choice between
an incremental and a full clustering."""
from __future__ import annotations

import os

import numpy as np
import pytest

from illusort.cluster import assign_to_clusters
from illusort.errors import SortError
from illusort.manifest import Entry
from illusort.layout import UNSORTED
from illusort.naming import (MAX_NAME_BYTES, assign_folders, check_folder_name, folder_names, plan_entries,
                             previous_folders, tagged_name)
from illusort.sort import settle_pending


def test_new_clusters_are_numbered_largest_first_and_noise_is_unsorted():
    names = folder_names(["a", "b", "c", "d", "e"], np.array([1, 0, 0, -1, 1]), {})
    # cluster 0 has b, c; cluster 1 has a, e: equal sizes, the one holding the smallest path first
    assert names == {1: "character-001", 0: "character-002", -1: UNSORTED}


def test_clusters_keep_the_names_of_the_folders_they_overlap():
    previous = {"character-001": {"a", "b"}, "Rem": {"c", "d"}, "character-007": {"z"}, UNSORTED: {"e"}}
    names = folder_names(["a", "b", "c", "d", "e", "f"], np.array([1, 1, 0, 0, 2, 2]), previous)
    assert names[1] == "character-001" and names[0] == "Rem"
    assert names[2] == "character-008"          # a new cluster: after the highest number ever used


def test_user_decisions_win_and_a_mostly_named_cluster_takes_the_name():
    keys = [(p, 0) for p in "abcdefgh"]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    decided = {("a", 0): "Rem", ("e", 0): "Ram"}   # 1 of 4 (25%) in each cluster
    known = {7: "Emilia"}
    folders = assign_folders(keys, labels, decided, known, {})
    assert folders[:4] == ["Rem"] * 4               # adopted at ADOPT_SHARE
    assert folders[4:7] == ["Ram"] * 3 and folders[7] == "Emilia"   # a known match beats adoption
    assert assign_folders(keys, labels, {("a", 0): "Rem"}, {}, {})[4:] == ["character-001"] * 4


def test_a_picture_put_into_a_numbered_folder_leaves_that_folder_its_name():
    """Accepting a suggestion moves one unsorted picture into character-003: the next sort
    keeps the folder's ten pictures in character-003 too (they were renumbered, the folder
    left holding that one picture)."""
    keys = [(p, 0) for p in "abcdefghijk"]
    labels = np.array([0] * 10 + [-1])
    previous = {"character-003": set("abcdefghijk"), "character-004": {"x"}}
    folders = assign_folders(keys, labels, {("k", 0): "character-003"}, {}, previous)
    assert folders == ["character-003"] * 11


def test_plan_gives_each_face_folder_one_entry_and_tags_clashing_names(tmp_path):
    paths = ["x/a.png", "y/a.png", "b.png", "b.png"]
    entries = plan_entries(tmp_path, paths, ["Rem", "Rem", "Rem", UNSORTED], [0, 0, 0, 1])
    dests = sorted(e.dest for e in entries)
    assert "Rem/b.png" in dests and not any(d.startswith(UNSORTED) for d in dests)  # placed: not unsorted
    assert len([d for d in dests if d.startswith("Rem/a")]) == 2 and len(set(dests)) == len(dests)
    assert all(e.state == "planned" and os.path.isabs(e.src) for e in entries)


def test_long_names_are_shortened_to_fit_and_bad_folder_names_refused():
    name = tagged_name("é" * 200 + ".png", "0123abcd")
    assert len(os.fsencode(name)) <= MAX_NAME_BYTES and name.endswith("~0123abcd.png")
    for bad in ("", ".", "..", "a/b", ".hidden", "x" * 300):
        with pytest.raises(SortError):
            check_folder_name(bad)
    assert check_folder_name("Rem (Re:Zero)") == "Rem (Re:Zero)"


def test_previous_folders_are_relative_to_the_sorted_folder(tmp_path):
    manifest = {"source": str(tmp_path), "entries": [Entry(str(tmp_path / "x" / "a.png"), "Rem/a.png"),
                                                     Entry("/elsewhere/b.png", "Rem/b.png")]}
    assert previous_folders(manifest) == {"Rem": {"x/a.png"}}


def test_settling_a_killed_runs_journal(tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    (root).mkdir()
    (out / "Rem").mkdir(parents=True)
    for name in "abc":
        (root / f"{name}.png").write_bytes(name.encode())
    os.symlink(root / "a.png", out / "Rem" / "a.png")                  # made before the kill
    entries = [Entry(str(root / "a.png"), "Rem/a.png", "pending"),      # journaled, made: done
               Entry(str(root / "b.png"), "Rem/b.png", "pending"),      # journaled, never made: dropped
               Entry(str(root / "c.png"), "Rem/c.png", "done")]
    os.symlink(root / "c.png", out / "Rem" / "c.png")
    settled = settle_pending(entries, out, "symlink", str(root.resolve()))
    assert [(e.dest, e.state) for e in settled] == [("Rem/a.png", "done"), ("Rem/c.png", "done")]


def test_new_vectors_join_their_nearest_cluster_or_stay_unsorted():
    clustered = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], np.float32)
    labels = np.array([0, 0, 1, 1])
    new = np.array([[0.98, 0.2], [0.1, 1.0], [-1, 0]], np.float32)
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    placed, share = assign_to_clusters(clustered, labels, new, threshold=0.8, k=2)
    assert placed.tolist() == [0, 1, -1] and share[0] == 1.0


def test_a_rerun_places_a_few_new_rows_and_reclusters_many(tmp_path):
    from dataclasses import dataclass

    from illusort.index import Index
    from illusort.workflow import cluster_rows

    @dataclass
    class Model:
        model_id: str = "m"
        threshold: float = 0.5

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8))
    v = np.repeat(centres, 10, axis=0) + rng.normal(size=(30, 8)) * 0.05
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    keys = [(f"{i}.png", 0) for i in range(30)]
    options = {"algorithm": "agglomerative", "min_cluster_size": 3}
    with Index(tmp_path / "i.db") as index:
        first = cluster_rows(index, Model(), keys[:28], v[:28], options)
        assert first.n_clusters == 3 and "reused" not in first.params
        again = cluster_rows(index, Model(), keys[:30], v[:30], options)      # 2 new rows (7%): placed
        assert again.params["reused"] == 28 and again.params["placed"] == 2
        assert (again.labels[:28] == first.labels).all()
        more = np.concatenate([v, v[:10] * -1])
        keys_more = keys + [(f"n{i}.png", 0) for i in range(10)]
        full = cluster_rows(index, Model(), keys_more, more, options)           # many new rows: all again
        assert "reused" not in full.params

"""The queue of suggested fixes (`illusort.suggest`), and taking or refusing them: accept,
reject, `move --not`, `undo --last`; decisions that hold over later sorts."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from illusort import suggest
from illusort.index import Index, default_index_path
from illusort.manifest import Entry

from conftest import run_cli
from test_corrections import FAST, folder_of_character, placed, sorted_collection  # noqa: F401


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def around(direction: int, n: int, spread: float = 0.15, seed: int = 0, dims: int = 8):
    """n unit vectors close to axis `direction` (cosine about 0.95 to one another)."""
    rng = np.random.default_rng(seed + 100 * direction)
    return [unit(np.eye(dims)[direction] + spread * rng.normal(size=dims) / np.sqrt(dims)) for _ in range(n)]


def state_of(folders: dict[str, list], threshold=0.6) -> suggest.SortState:
    entries, vectors = [], {}
    for folder, members in folders.items():
        for k, v in enumerate(members):
            dest = f"{folder}/{folder}-{k}.png"
            entries.append(Entry(f"/in/{folder}-{k}.png", dest, "done", (0,)))
            vectors[dest] = np.stack([v])
    return suggest.SortState(Path("/out"), Path("/in"), {"source": "/in", "entries": entries}, threshold,
                             vectors, {}, set())


def test_each_kind_is_found_and_ranked_by_confidence():
    mixed = around(2, 3, seed=1) + around(3, 3, seed=2)   # two characters in one folder
    state = state_of({"A": around(0, 5), "B": around(0, 4, seed=7), "C": mixed,
                      "unsorted": around(4, 2, seed=3) + around(0, 1, seed=9)})
    queue = suggest.rank(state)
    kinds = {(s.kind, s.folder, s.other) for s in queue}
    assert ("merge", "A", "B") in kinds                                      # one character in two folders
    assert any(s.kind == "split" and s.folder == "C" and len(s.files) == 3 for s in queue)
    assert any(s.kind == "new" and len(s.files) == 2 for s in queue)         # two unsorted alike
    assert any(s.kind == "place" and s.folder in ("A", "B") for s in queue)  # one unsorted like A
    assert [s.number for s in queue] == list(range(1, len(queue) + 1))
    assert [s.confidence for s in queue] == sorted((s.confidence for s in queue), reverse=True)
    numbers = {s.other for s in queue if s.kind == "split"} | {s.folder for s in queue if s.kind == "new"}
    assert len(numbers) == sum(s.kind in ("split", "new") for s in queue)   # new folders never share a number


def test_nothing_is_suggested_for_a_clean_sort_and_no_is_remembered():
    clean = {"A": around(0, 5), "B": around(1, 5), "C": around(2, 5)}
    assert suggest.rank(state_of(clean)) == []
    state = state_of({"A": around(0, 5), "B": around(0, 4, seed=7)})
    (merge,) = suggest.rank(state)
    state.dismissed = {merge.key}
    assert suggest.rank(state) == []
    state = state_of({"A": around(0, 5), "unsorted": around(0, 1, seed=9)})
    (place,) = suggest.rank(state)
    state.rejected = {place.files[0]: {"A"}}
    assert suggest.rank(state) == []


def suggestion(out, kind, **fields):
    info = json.loads(run_cli("status", out, "--json").output)
    return next(s for s in info["fixes"] if s["kind"] == kind and all(s[k] == v for k, v in fields.items()))


def test_accept_undo_reject_through_the_cli(sorted_collection):  # noqa: F811
    root, out, where = sorted_collection
    (folder,) = folder_of_character(where, 0)
    half = sorted(f"{folder}/{n}" for n in where if where[n] == folder)[:5]
    run_cli("move", out, *half, "--to", "Extra")            # one character now in two folders
    merge = suggestion(out, "merge", other=folder)       # the named folder is the one kept
    assert merge["folder"] == "Extra" and "illusort merge" in merge["command"]
    status = run_cli("status", out).output
    assert f"same character? {folder} into Extra" in status
    assert "accepted 1 suggestion" in run_cli("accept", out, merge["number"]).output
    assert folder_of_character(placed(out), 0) == {"Extra"}
    assert f"taken back: {folder} merged into Extra" in run_cli("undo", out, "--last").output
    assert folder_of_character(placed(out), 0) == {folder, "Extra"}
    merge = suggestion(out, "merge", other=folder)
    assert "rejected 1 suggestion" in run_cli("reject", out, merge["number"]).output
    info = json.loads(run_cli("status", out, "--json").output)
    assert not any(s["kind"] == "merge" and (s["folder"], s["other"]) == ("Extra", folder) for s in info["fixes"])
    run_cli("sort", root, "--out", out, *FAST)              # the user's folders hold
    assert folder_of_character(placed(out), 0) == {folder, "Extra"}


def test_move_not_is_a_cannot_link_that_sorts_keep(sorted_collection):  # noqa: F811
    root, out, where = sorted_collection
    (folder,) = folder_of_character(where, 1)
    run_cli("name", out, folder, "Ram")
    victim = sorted(n for n in placed(out) if placed(out)[n] == "Ram")[0]
    said = run_cli("move", out, f"Ram/{victim}", "--not", "Ram").output
    assert "remembered as not Ram" in said and "1 moved to unsorted/" in said
    assert placed(out)[victim] == "unsorted"
    run_cli("sort", root, "--out", out, *FAST, "--recluster")
    assert placed(out)[victim] == "unsorted" and folder_of_character(placed(out), 1) == {"Ram", "unsorted"}
    with Index(default_index_path(root)) as index:
        assert any("Ram" in said for said in index.rejections().values())
    run_cli("move", out, f"unsorted/{victim}", "--to", "Ram")   # the user changed their mind: placed wins
    run_cli("sort", root, "--out", out, *FAST, "--recluster")
    assert placed(out)[victim] == "Ram"


def test_naming_with_a_name_in_use_says_it_merges(sorted_collection):  # noqa: F811
    root, out, where = sorted_collection
    a, b = (next(iter(folder_of_character(where, k))) for k in (0, 1))
    run_cli("name", out, a, "Rem")
    said = run_cli("name", out, b, "Rem").output
    assert "Rem already existed" in said and "illusort undo" in said and "--last" in said
    run_cli("undo", out, "--last")
    assert folder_of_character(placed(out), 1) == {b} and folder_of_character(placed(out), 0) == {"Rem"}


def test_bad_answers_are_one_line_errors(sorted_collection):  # noqa: F811
    root, out, where = sorted_collection
    assert "no suggestion 999" in run_cli("accept", out, 999, ok=False).output
    assert "numbers or --all-above" in run_cli("accept", out, ok=False).output
    assert "no correction" in run_cli("undo", out, "--last", ok=False).output
    assert "either --to" in run_cli("move", out, "x.png", "--to", "A", "--not", "B", ok=False).output


def test_known_references_take_their_whole_cluster(collection, tmp_path):
    """`--known` with one reference: the character's other pictures join the name as a
    cluster, instead of one picture under the name and the rest in a numbered folder."""
    root, truth = collection
    refs = tmp_path / "refs" / "Miku"
    refs.mkdir(parents=True)
    from conftest import draw_character
    draw_character(2, 999).save(refs / "ref.png")
    out = tmp_path / "by-character"
    run_cli("sort", root, "--out", out, "--known", refs.parent, "--threshold", "0.99", *FAST)
    assert folder_of_character(placed(out), 2) == {"Miku"}


@pytest.mark.parametrize("bad", [{"fit_cut": 1}, {"fit_cut": "yes"}])
def test_fit_cut_must_be_true_or_false(bad):
    from illusort.cluster import ClusterError, ClusterOptions

    with pytest.raises(ClusterError, match="fit_cut"):
        ClusterOptions(**bad)


def test_fitted_cut_rises_only_where_it_makes_folders_distinct():
    """Three characters whose pictures are all "similar" by a low threshold (art unlike the
    training art) are one folder at that cut; the fitted cut keeps them apart, and on well
    separated characters it stays at the threshold."""
    from illusort.cluster import agglomerative

    dims = 12
    shared = np.ones(dims) / np.sqrt(dims)   # what every picture of the new domain has in common
    chained = np.stack([unit(shared + v) for k in range(3) for v in around(k, 10, seed=k, dims=dims)])
    low = 0.4
    assert len(set(agglomerative(chained, low, 3).labels.tolist())) == 1
    fitted = agglomerative(chained, low, 3, fit_cut=True)
    assert len(set(fitted.labels.tolist()) - {-1}) == 3 and fitted.params["similarity"] > low
    apart = np.stack([v for k in range(3) for v in around(k, 10, seed=k, dims=dims)])
    assert agglomerative(apart, low, 3, fit_cut=True).params["similarity"] == low


def test_undo_last_steps_back_one_correction_at_a_time(sorted_collection):  # noqa: F811
    root, out, where = sorted_collection
    (a,) = folder_of_character(where, 0)
    (b,) = folder_of_character(where, 1)
    run_cli("name", out, a, "Rem")
    run_cli("name", out, b, "Ram")
    run_cli("undo", out, "--last")
    assert folder_of_character(placed(out), 1) == {b} and folder_of_character(placed(out), 0) == {"Rem"}
    run_cli("undo", out, "--last")
    assert folder_of_character(placed(out), 0) == {a}
    with Index(default_index_path(root)) as index:
        assert not index.decisions()
    assert all(os.path.islink(p) for p in out.glob("*/*"))

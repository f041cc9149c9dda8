import json
import os

from conftest import draw_character, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0")


def test_query_ranks_the_character_first_and_links(collection, tmp_path):
    root, truth = collection
    ref = tmp_path / "ref.png"
    draw_character(1, 777).save(ref)  # a new picture of character 1, not in the folder
    result = run_cli("query", ref, "--in", root, "--top", "8", "--json", *FAST)
    matches = json.loads(result.stdout)["matches"]
    assert len(matches) == 8
    assert all(truth[m["path"]] == 1 for m in matches)
    assert [m["score"] for m in matches] == sorted((m["score"] for m in matches), reverse=True)

    link = tmp_path / "found"
    run_cli("query", ref, "--in", root, "--top", "5", "--link", link, *FAST)
    targets = sorted(os.readlink(p) for p in link.iterdir() if p.is_symlink())
    assert len(targets) == 5 and all(truth[os.path.relpath(t, root.resolve())] == 1 for t in targets)
    run_cli("sort", "--undo", "--out", link, root)
    assert not link.exists() or not any(link.iterdir())


def test_threshold_filters_and_several_references(collection, tmp_path):
    root, truth = collection
    refs = [tmp_path / "a.png", tmp_path / "b.png"]
    draw_character(0, 501).save(refs[0])
    draw_character(3, 502).save(refs[1])
    result = run_cli("query", *refs, "--in", root, "--threshold", "0.9", "--json", *FAST)
    found = {truth[m["path"]] for m in json.loads(result.stdout)["matches"]}
    assert found == {0, 3}
    none = run_cli("query", refs[0], "--in", root, "--threshold", "1.01", "--json", *FAST)
    assert json.loads(none.stdout)["matches"] == []


def test_unreadable_reference_is_a_clean_error(collection, tmp_path):
    root, _ = collection
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    result = run_cli("query", bad, "--in", root, *FAST, ok=False)
    assert "reference" in result.output and "Traceback" not in result.output


def test_no_update_searches_the_index_as_it_is(collection, tmp_path):
    root, truth = collection
    ref = tmp_path / "ref.png"
    draw_character(2, 777).save(ref)
    run_cli("embed", root, *FAST)
    draw_character(2, 778).save(root / "late.png")

    def found(*extra):
        result = run_cli("query", ref, "--in", root, "--threshold", "0.9", "--json", *FAST, *extra)
        return {m["path"] for m in json.loads(result.stdout)["matches"]}

    stale = found("--no-update")
    assert "late.png" not in stale and {truth[p] for p in stale} == {2}
    assert found() == stale | {"late.png"}

"""Hostile and careless use of the correction features: `accept`, `reject`, `undo --last`,
`move --not`, and the index tables behind them (rejections, dismissed, journal). Cases that
hold are plain tests; real defects are `xfail(strict=True)` with the reason, so they show."""
import json
import os
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from illusort import corrections
from illusort.cli.exit_status import ExitStatus
from illusort.index import Index, default_index_path, read_rejections
from illusort.layout import MANIFEST

from conftest import draw_character, make_collection, run_cli
from hostile import changed, fingerprint, make_victim, one_line_error

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


def sort_into(tmp_path, mode=None, name="out"):
    root = tmp_path / "pics"
    if not root.exists():
        make_collection(root, characters=4, per_character=8)
    out = tmp_path / name
    run_cli("sort", root, "--out", out, *FAST, *(("--mode", mode) if mode else ()))
    return root, out


def groups(out: Path) -> dict[str, set[str]]:
    """folder -> the characters (c0, c1 ...) whose pictures are in it, as on disk."""
    found = defaultdict(set)
    for path in out.glob("*/*"):
        found[path.parent.name].add(path.name[:2])
    return dict(found)


def on_disk(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.glob("*/*")}


def in_manifest(out: Path) -> set[str]:
    return {e["dest"] for e in json.loads((out / MANIFEST).read_text())["entries"]}


def queue(out: Path) -> list[dict]:
    return json.loads(run_cli("status", out, "--json").output)["fixes"]


def decisions(root: Path) -> dict:
    with Index(default_index_path(root)) as index:
        return index.decisions()


def plant(root: Path, sql: str, *values):
    db = sqlite3.connect(default_index_path(root))
    db.execute(sql, values)
    db.commit()
    db.close()


def one_folder_per_character(out: Path) -> bool:
    return all(len(chars) == 1 for chars in groups(out).values()) and \
        sum(len(chars) for chars in groups(out).values()) == len({c for v in groups(out).values() for c in v})


# ---- what held ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [None, "move", "copy"])
def test_every_correction_taken_back_restores_the_sort(tmp_path, mode):
    """accept --all-above -1 (every merge), reject, move --not, then undo --last past the first
    correction: the first sort's folders again, OUT and its manifest agree, no file lost."""
    root, out = sort_into(tmp_path, mode)
    first = groups(out)
    files = sorted(f"c{c}_{k}.{'png' if k % 2 else 'jpg'}" for c in range(4) for k in range(8))
    run_cli("move", out, "character-001/c0_0.jpg", "--not", "character-001")
    run_cli("reject", out, 1)
    assert "accepted" in run_cli("accept", out, "--all-above", "-1").output
    assert len(groups(out)) <= 2
    for _ in range(3):
        assert "taken back" in run_cli("undo", out, "--last").output
    one_line_error(run_cli("undo", out, "--last", ok=False))
    assert groups(out) == first and on_disk(out) == in_manifest(out)
    if mode == "move":
        assert sorted(p.name for p in out.glob("*/*")) == files
    else:
        assert sorted(p.name for p in root.rglob("*") if p.is_file() and ".illusort" not in p.parts) == files


@pytest.mark.parametrize("name", ["unsorted", "not-a-character", "..", "a/b", ".illusort", "report.html"])
def test_move_not_refuses_reserved_and_unsafe_names(tmp_path, name):
    root, out = sort_into(tmp_path)
    before = on_disk(out)
    one_line_error(run_cli("move", out, "character-001/c0_0.jpg", "--not", name, ok=False))
    assert on_disk(out) == before and not decisions(root)


@pytest.mark.parametrize("args,code", [((10**30,), ExitStatus.ERROR), ((0,), ExitStatus.USAGE),
                                       ((-1,), ExitStatus.USAGE), (("x",), ExitStatus.USAGE)])
def test_bad_numbers_change_nothing(tmp_path, args, code):
    """A number no suggestion has is the library's one-line error; one that is no suggestion
    number at all (0, negative, not a number) is a wrong command line."""
    root, out = sort_into(tmp_path)
    before = on_disk(out)
    result = run_cli("accept", out, *args, ok=False)
    assert "Traceback" not in result.output and result.exit_code == code, result.output
    assert on_disk(out) == before


@pytest.mark.parametrize("value,taken", [("1", 0), ("nan", 0), ("-1", 6)])
def test_all_above_edges(tmp_path, value, taken):
    root, out = sort_into(tmp_path)
    merges = sum(s["kind"] == "merge" for s in queue(out))
    said = run_cli("accept", out, "--all-above", value).output
    assert f"accepted {min(taken, merges)} suggestion" in said
    assert on_disk(out) == in_manifest(out)


def test_hostile_undo_journal_cannot_reach_outside(tmp_path):
    """A journal row whose 'back' folders climb out of OUT: refused, nothing outside changes."""
    root, out = sort_into(tmp_path)
    make_victim(tmp_path)
    before = fingerprint(tmp_path, skip=("pics", "out"))
    for folder in ("../victim", "../../victim", "/tmp", ".illusort", "a/b"):
        back = {"decisions": [], "rejected": [], "dismissed": [], "back": [["character-002/c1_1.png", folder]]}
        plant(root, "INSERT INTO journal(out, what, undo) VALUES (?,?,?)", os.path.realpath(out), "x",
              json.dumps(back))
        one_line_error(run_cli("undo", out, "--last", ok=False))
        plant(root, "DELETE FROM journal")
    assert not changed(before, fingerprint(tmp_path, skip=("pics", "out")))
    assert on_disk(out) == in_manifest(out)


def test_suggestions_never_print_terminal_escapes(tmp_path):
    root = tmp_path / "pics"
    root.mkdir()
    for c in range(3):
        for k in range(6):
            draw_character(c, k).save(root / f"c{c}_{k}\x1b]0;pwn\x07\x1b[2J.png")
    out = tmp_path / "out"
    run_cli("sort", root, "--out", out, *FAST)
    os.rename(out / "character-001", out / "Rem\x1b[2J")
    run_cli("move", out, *(f"Rem\x1b[2J/{p.name}" for p in list((out / "Rem\x1b[2J").iterdir())[:1]),
            "--not", "Rem\x1b[2J")
    shown = run_cli("status", out).output + run_cli("undo", out, "--last").output
    assert "\x1b" not in shown and "\x07" not in shown and "\\x1b" in shown


def test_planted_text_rejections_and_dismissed_are_harmless(tmp_path):
    root, out = sort_into(tmp_path)
    plant(root, "INSERT INTO rejections VALUES (?,?,?)", b"../../etc/passwd", 0, "\x1b[2J" * 1000)
    plant(root, "INSERT INTO rejections VALUES (?,?,?)", b"batch0/c0_0.jpg", "zero", "..")
    plant(root, "INSERT INTO dismissed VALUES (?)", 5)
    plant(root, "INSERT INTO dismissed VALUES (?)", b"\xff")
    for args in (lambda: ("status", out), lambda: ("accept", out, 1), lambda: ("reject", out, queue(out)[0]["number"]),
                 lambda: ("undo", out, "--last"), lambda: ("sort", root, "--out", out, *FAST, "--recluster")):
        assert "\x1b" not in run_cli(*args()).output
    assert on_disk(out) == in_manifest(out)


@pytest.mark.parametrize("mode", [None, "copy"])
def test_a_file_the_user_put_in_place_of_an_entry_survives_accept_and_undo(tmp_path, mode):
    """The user replaced a link (or edited a copy) in a folder: moving that folder's entries
    around never deletes or overwrites the user's file."""
    root, out = sort_into(tmp_path, mode)
    mine = sorted((out / "character-004").iterdir())[0]
    mine.unlink()
    mine.write_bytes(b"the user's own file")
    (number,) = [s["number"] for s in queue(out) if "character-004" in (s["folder"], s["other"])][:1]
    run_cli("accept", out, number)
    run_cli("undo", out, "--last")
    assert [p.read_bytes() for p in out.rglob(mine.name) if not p.is_symlink()
            and p.read_bytes() == b"the user's own file"]
    assert in_manifest(out) <= on_disk(out)


@pytest.mark.parametrize("mode", [None, "move", "copy"])
def test_folders_replaced_by_links_are_refused_by_undo_and_accept(tmp_path, mode):
    """The folder undo --last or an accepted merge moves pictures into is a planted link to a
    folder outside: refused in one line, nothing outside changes, OUT agrees with its manifest."""
    root, out = sort_into(tmp_path, mode)
    victim = make_victim(tmp_path)
    before = fingerprint(tmp_path, skip=("pics", "out"))
    run_cli("name", out, "character-001", "Rem")
    run_cli("name", out, "Rem", "Lum")
    os.symlink(victim, out / "Rem")
    one_line_error(run_cli("undo", out, "--last", ok=False))
    os.unlink(out / "Rem")
    kept = out / queue(out)[0]["folder"]
    os.rename(kept, out / "moved-away")
    os.symlink(victim, kept)
    one_line_error(run_cli("accept", out, 1, ok=False))
    assert not changed(before, fingerprint(tmp_path, skip=("pics", "out")))
    os.unlink(kept)
    os.rename(out / "moved-away", kept)
    assert on_disk(out) == in_manifest(out)


# ---- defects --------------------------------------------------------------------------------

def test_undo_last_after_a_resort_keeps_a_character_together(tmp_path):
    root, out = sort_into(tmp_path)
    run_cli("name", out, "character-001", "Rem")
    draw_character(0, 300).save(root / "c0_300.png")
    run_cli("sort", root, "--out", out, *FAST)
    assert "since its last sort" in run_cli("undo", out, "--last", ok=False).output   # a sort re-planned OUT
    assert one_folder_per_character(out)


def test_undo_last_after_undo_out_and_a_new_sort_does_not_merge_characters(tmp_path):
    root, out = sort_into(tmp_path)
    run_cli("name", out, "character-001", "Rem")
    run_cli("undo", out)
    run_cli("sort", root, "--out", out, *FAST)
    result = run_cli("undo", out, "--last", ok=False)   # the new sort is no correction: nothing to take back
    assert result.exit_code == ExitStatus.ERROR and "no correction of" in result.output, result.output
    assert one_folder_per_character(out)


def test_undo_last_in_one_output_keeps_a_later_decision_of_another(tmp_path):
    root, out = sort_into(tmp_path)
    _, out2 = sort_into(tmp_path, name="out2")
    run_cli("name", out, "character-001", "Rem")
    run_cli("name", out2, "character-001", "Lum")
    run_cli("undo", out, "--last")
    assert set(decisions(root).values()) == {"Lum"}


def test_killed_accept_then_rerun_is_taken_back_whole(tmp_path, monkeypatch):
    root, out = sort_into(tmp_path)
    first = groups(out)

    class Killed(BaseException):
        pass

    real, calls = corrections.make_entry, []

    def dying(*args, **kwargs):
        real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            raise Killed

    monkeypatch.setattr(corrections, "make_entry", dying)
    with pytest.raises(Killed):
        run_cli("accept", out, 1)
    monkeypatch.setattr(corrections, "make_entry", real)
    run_cli("accept", out, 1)
    run_cli("undo", out, "--last")   # the re-run, then the killed run (journaled before it moved anything)
    run_cli("undo", out, "--last")
    assert groups(out) == first and on_disk(out) == in_manifest(out)


@pytest.mark.parametrize("undo", ["not json", "[]", "null", '{"decisions": 5}',
                                  '{"decisions": [["a", "x", "R"]], "rejected": [], "dismissed": [], "back": []}',
                                  '{"decisions": [], "rejected": [], "dismissed": [], "back": [["a", "b", "c"]]}'])
def test_planted_journal_row_of_the_wrong_shape_is_one_line_error(tmp_path, undo):
    root, out = sort_into(tmp_path)
    plant(root, "INSERT INTO journal(out, what, undo) VALUES (?,?,?)", os.path.realpath(out), "x", undo)
    from click.testing import CliRunner

    from illusort.cli import main

    result = CliRunner().invoke(main, ["undo", str(out), "--last"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    one_line_error(result)


def test_planted_rejection_with_an_integer_path_is_not_a_crash(tmp_path):
    root, out = sort_into(tmp_path)
    plant(root, "INSERT INTO rejections VALUES (?,?,?)", 5, 0, "character-001")
    from click.testing import CliRunner

    from illusort.cli import main

    result = CliRunner().invoke(main, ["sort", str(root), "--out", str(out), *FAST, "--recluster"])
    assert result.exit_code == 0 and result.exception is None, result.output


def test_one_bad_rejection_row_does_not_bring_back_every_rejected_suggestion(tmp_path):
    root, out = sort_into(tmp_path)
    said_no = queue(out)[0]
    run_cli("reject", out, 1)
    plant(root, "INSERT INTO rejections VALUES (?,?,?)", 5, 0, "character-001")
    with Index(default_index_path(root)) as index:   # the no is still stored: it is the reading that drops it
        assert read_rejections(index.db)[1]
    assert not any(s["kind"] == "merge" and {s["folder"], s["other"]} == {said_no["folder"], said_no["other"]}
                   for s in queue(out))


def test_a_number_given_twice_is_one_suggestion(tmp_path):
    root, out = sort_into(tmp_path)
    assert "accepted 1 suggestion" in run_cli("accept", out, 1, 1).output


def test_accepting_nothing_is_not_a_step_of_undo(tmp_path):
    root, out = sort_into(tmp_path)
    run_cli("name", out, "character-001", "Rem")
    assert "none at that similarity" in run_cli("accept", out, "--all-above", "1").output
    assert "named Rem" in run_cli("undo", out, "--last").output


def test_a_number_means_what_status_showed(tmp_path):
    """`accept OUT 2` after `reject OUT 1` takes what status showed as 2, not the queue's new second."""
    root, out = sort_into(tmp_path)
    first, shown = groups(out), queue(out)
    assert [s["number"] for s in shown[:2]] == [1, 2] and shown[1]["kind"] == "merge", shown[:2]
    run_cli("reject", out, 1)
    assert [s["number"] for s in queue(out)][:1] == [2]     # the rest keep their numbers
    run_cli("accept", out, 2)
    home = {c: folder for folder, chars in groups(out).items() for c in chars}
    (a,), (b,) = first[shown[1]["folder"]], first[shown[1]["other"]]
    assert home[a] == home[b], (shown[1], groups(out))
    assert "no suggestion 2 now" in one_line_error(run_cli("accept", out, 2, ok=False))


def test_undo_last_after_a_folder_renamed_by_hand(tmp_path):
    root, out = sort_into(tmp_path)
    first = groups(out)
    run_cli("name", out, "character-001", "Rem")
    os.rename(out / "Rem", out / "Ram")
    said = run_cli("undo", out, "--last", ok=None)
    if said.exit_code == 0:   # taken back: as before the correction, or at least the rename kept
        assert groups(out) == first or set(decisions(root).values()) == {"Ram"}, (said.output, groups(out))


def test_undo_last_killed_before_it_drops_its_row_can_be_run_again(tmp_path, monkeypatch):
    root, out = sort_into(tmp_path)
    first = groups(out)
    run_cli("name", out, "character-001", "Rem")

    class Killed(BaseException):
        pass

    def dying(self, seq):
        raise Killed

    monkeypatch.setattr(Index, "drop_journal", dying)
    with pytest.raises(Killed):
        run_cli("undo", out, "--last")
    monkeypatch.undo()
    run_cli("undo", out, "--last")
    assert groups(out) == first and on_disk(out) == in_manifest(out) and not decisions(root)
    one_line_error(run_cli("undo", out, "--last", ok=False))


def test_naming_into_a_folder_once_kept_apart_keeps_its_pictures(tmp_path):
    root, out = sort_into(tmp_path)
    merge = queue(out)[0]
    run_cli("reject", out, 1)                                  # "not the same character"
    run_cli("name", out, merge["other"], merge["folder"])      # changed my mind: they are
    together = groups(out)[merge["folder"]]
    run_cli("sort", root, "--out", out, *FAST)
    assert groups(out).get(merge["folder"]) == together and "unsorted" not in groups(out)

"""Concurrent runs and a folder that changes under a run: a second writer refuses clearly or
both finish, the index always passes `PRAGMA integrity_check`, OUT always matches its
manifest, and a file that vanishes before it is linked is skipped and reported."""
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from illusort import workflow
from illusort.index import Index, default_index_path
from illusort.layout import LOCK, MANIFEST
from illusort.manifest import read_manifest

from conftest import draw_character, index_key, make_collection, run_cli

pytestmark = pytest.mark.slow  # kills, fuzzing or training: `pytest -m 'not slow'` skips them

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


def cli_process(*args):
    return subprocess.Popen([sys.executable, "-m", "illusort.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def integrity(root: Path) -> None:
    with sqlite3.connect(default_index_path(root)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def rows_in(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.Error:
        return 0


def files_of(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".illusort" not in p.parts}


def check_out(root: Path, out: Path, mode: str) -> list:
    """OUT holds exactly the manifest's entries (plus its own files), each still ours."""
    entries = read_manifest(out)["entries"]
    assert all(e.state == "done" for e in entries)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir() or p.is_symlink()}
    assert on_disk - {e.dest for e in entries} <= {MANIFEST, LOCK}
    for e in entries:
        dest = out / e.dest
        if mode == "symlink":
            assert os.readlink(dest) == e.src and os.path.isfile(e.src), e
        elif mode != "move":
            assert dest.read_bytes() == Path(e.src).read_bytes(), e
    return entries


def test_second_writer_refuses_while_the_first_embeds(tmp_path, tiny_cnn):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(80):
        draw_character(i % 6, i, size=(128, 128)).save(root / f"{i:03d}.png")
    out = tmp_path / "out"
    first = cli_process("embed", root, "--model", tiny_cnn, "-q", "--workers", "0", "--batch-size", "2")
    db = default_index_path(root)
    deadline = time.time() + 90
    while first.poll() is None and rows_in(db) < 4 and time.time() < deadline:
        time.sleep(0.02)
    assert first.poll() is None, "the first run should still be embedding"
    # this process is the second writer: an embed and a sort on the same folder, at once
    embed = run_cli("embed", root, "--model", tiny_cnn, "-q", "--workers", "0", ok=None)
    sort = run_cli("sort", root, "--out", out, "--model", tiny_cnn, "-q", "--workers", "0", ok=None)
    still_running = first.poll() is None
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    for second in (embed, sort):
        if still_running:  # overlapped for sure: refused, with a one-line reason
            assert second.exit_code == 1, second.output
        if second.exit_code:
            assert "another illusort run is writing" in second.output and "Traceback" not in second.output
    assert not out.exists() or sort.exit_code == 0  # a refused sort wrote nothing
    integrity(root)
    again = run_cli("embed", root, "--model", tiny_cnn, "-q", "--workers", "0")
    assert "0 embedded" in again.output and "80 unchanged" in again.output


def test_two_sorts_started_together(tmp_path):
    root = tmp_path / "pics"
    make_collection(root, characters=3, per_character=8)
    before = files_of(root)
    out = tmp_path / "out"
    for _attempt in range(2):  # into a new OUT, then into the OUT of the first attempt
        runs = [cli_process("sort", root, "--out", out, *FAST) for _ in range(2)]
        results = [(run.wait(timeout=120), run.stdout.read()) for run in runs]
        for code, output in results:
            assert code == 0 or code == 1 and "another illusort run is writing" in output, output
        assert any(code == 0 for code, _ in results)
        integrity(root)
        assert len(check_out(root, out, "symlink")) == len(before)
    run_cli("sort", "--undo", "--out", out, root)
    assert files_of(root) == before and {p.name for p in out.rglob("*")} <= {LOCK}


def test_a_sort_that_finished_meanwhile_is_not_overwritten(tmp_path, monkeypatch):
    """Run B read OUT's manifest (none yet) and embedded; run A then sorted into OUT. B must
    apply against A's manifest, not its stale view: otherwise A's entries drop out of the
    manifest and `undo` leaves them behind."""
    root = tmp_path / "pics"
    make_collection(root, characters=3, per_character=8)
    before = files_of(root)
    out = tmp_path / "out"
    real_embed = workflow.embed

    def embed_then_let_a_run(*args, **kwargs):
        result = real_embed(*args, **kwargs)
        other = subprocess.run([sys.executable, "-m", "illusort.cli", "sort", root, "--out", out, *FAST],
                               capture_output=True, text=True, timeout=120)
        assert other.returncode == 0, other.stderr
        return result

    monkeypatch.setattr(workflow, "embed", embed_then_let_a_run)
    b = run_cli("sort", root, "--out", out, *FAST)
    assert "0 new" in b.output
    assert len(check_out(root, out, "symlink")) == len(before)
    monkeypatch.undo()
    run_cli("sort", "--undo", "--out", out, root)
    assert files_of(root) == before and {p.name for p in out.rglob("*")} <= {LOCK}


def test_a_copy_sort_meanwhile_makes_a_symlink_sort_refuse(tmp_path, monkeypatch):
    root = tmp_path / "pics"
    make_collection(root, characters=2, per_character=6)
    out = tmp_path / "out"
    real_embed = workflow.embed

    def embed_then_copy(*args, **kwargs):
        result = real_embed(*args, **kwargs)
        subprocess.run([sys.executable, "-m", "illusort.cli", "sort", root, "--out", out, "--mode", "copy", *FAST],
                       check=True, capture_output=True, timeout=120)
        return result

    monkeypatch.setattr(workflow, "embed", embed_then_copy)
    result = run_cli("sort", root, "--out", out, *FAST, ok=False)
    assert "holds a copy sort" in result.output and "Traceback" not in result.output
    assert len(check_out(root, out, "copy")) == 12


def test_files_added_deleted_and_changed_between_embed_and_sort(tmp_path):
    root = tmp_path / "pics"
    truth = make_collection(root, characters=3, per_character=8)
    run_cli("embed", root, *FAST[:-2])
    names = sorted(truth)
    for k in range(3):
        draw_character(2, 300 + k).save(root / f"added{k}.png")
    os.remove(root / names[0])
    os.remove(root / names[1])
    draw_character(0, 400).save(root / names[2])      # new content, same name
    (root / names[3]).write_bytes(b"now broken")       # was fine, now not an image
    os.utime(root / names[4], ns=(10**18, 10**18))     # only touched
    out = tmp_path / "out"
    result = run_cli("sort", root, "--out", out, "--mode", "copy", *FAST)
    assert "4 embedded, 1 reused by content" in result.output and "2 removed from index" in result.output, result.output
    assert "1 skipped" in result.output and names[3] in result.output
    entries = check_out(root, out, "copy")
    expected = {str(root.resolve() / p) for p in files_of(root)} - {str(root.resolve() / names[3])}
    assert {e.src for e in entries} == expected
    integrity(root)
    with Index(default_index_path(root)) as index:
        rows, vectors = index.embeddings(index_key("hsv-hist"))
    assert {r.path for r in rows} == {Path(e).relative_to(root.resolve()).as_posix() for e in expected}
    assert np.isfinite(vectors).all()


@pytest.mark.parametrize("mode", ["symlink", "copy", "hardlink", "move"])
def test_a_source_deleted_while_the_sort_plans_is_skipped(tmp_path, monkeypatch, mode):
    """Files deleted after embedding (here: right after clustering, before linking) are
    skipped with a warning; the rest of the sort completes, and undo restores the rest."""
    root = tmp_path / "pics"
    truth = make_collection(root, characters=3, per_character=8)
    doomed = sorted(truth)[::7]
    real_cluster = workflow.cluster_embeddings

    def cluster_then_delete(*args, **kwargs):
        result = real_cluster(*args, **kwargs)
        for path in doomed:
            os.remove(root / path)
        return result

    monkeypatch.setattr(workflow, "cluster_embeddings", cluster_then_delete)
    out = tmp_path / "out"
    result = run_cli("sort", root, "--out", out, "--mode", mode, *FAST)
    for path in doomed:
        assert f"warning: not sorted {root.resolve() / path}: vanished since it was embedded" in result.output
    assert f"{len(truth) - len(doomed)} new" in result.output
    entries = check_out(root, out, mode)
    assert len(entries) == len(truth) - len(doomed)
    assert not [p for p in out.rglob("*") if p.is_symlink() and not p.exists()], "dangling links"
    monkeypatch.undo()
    remaining = files_of(root) if mode != "move" else None
    run_cli("sort", "--undo", "--out", out, root)
    if remaining is not None:
        assert files_of(root) == remaining
    assert set(files_of(root)) == set(truth) - set(doomed)
    assert {p.name for p in out.rglob("*")} <= {LOCK}


def test_strict_counts_files_that_vanished_before_sorting(tmp_path, monkeypatch):
    root = tmp_path / "pics"
    truth = make_collection(root, characters=2, per_character=6)
    real_cluster = workflow.cluster_embeddings

    def cluster_then_delete(*args, **kwargs):
        result = real_cluster(*args, **kwargs)
        os.remove(root / sorted(truth)[0])
        return result

    monkeypatch.setattr(workflow, "cluster_embeddings", cluster_then_delete)
    result = run_cli("sort", root, "--out", tmp_path / "out", "--strict", *FAST, ok=None)
    assert result.exit_code == 3 and "strict: 1 file(s) skipped" in result.output


def test_a_correction_during_a_sort_is_refused_never_undone(tmp_path, monkeypatch):
    """Issue 26, item 4: `name` while a sort is planning used to succeed, and the sort then
    applied its older plan over it. A correction must either hold or be refused as busy."""
    from illusort import corrections
    from illusort.errors import SortError
    from illusort.manifest import output_lock

    root = tmp_path / "pics"
    make_collection(root, characters=3, per_character=8)
    out = tmp_path / "out"
    run_cli("sort", root, "--out", out, *FAST)
    monkeypatch.setattr(corrections, "BUSY_WAIT", 0.3, raising=False)
    real, said = workflow.cluster_rows, []

    def cluster_then_name(*args, **kwargs):
        result = real(*args, **kwargs)
        try:
            said.append(len(corrections.name_character(out, "character-001", "Miku")))
        except SortError as error:
            said.append(str(error))
        return result

    monkeypatch.setattr(workflow, "cluster_rows", cluster_then_name)
    run_cli("sort", root, "--out", out, *FAST)
    monkeypatch.setattr(workflow, "cluster_rows", real)
    (named,) = said
    assert isinstance(named, str) and "busy" in named and "\n" not in named, named
    assert (out / "character-001").is_dir() and not (out / "Miku").exists()
    with Index(default_index_path(root)) as index:
        assert index.decisions() == {}  # refused: nothing half-done
    # a lock held a moment (another correction) is waited for, not refused
    import threading

    monkeypatch.setattr(corrections, "BUSY_WAIT", 10, raising=False)
    held = threading.Event()

    def hold():
        with output_lock(out.resolve()):
            held.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    assert len(corrections.name_character(out, "character-001", "Miku")) == 8
    holder.join()
    assert len(list((out / "Miku").iterdir())) == 8

"""Kill-and-resume: `sort` (symlink, copy, move), `sort --undo` and `embed` killed with SIGKILL
or SIGINT at seeded random moments spread over a whole run, then run again to completion.

After every case: no source file lost or changed, the index passes `PRAGMA integrity_check`,
OUT holds exactly what its manifest lists (each entry still ours), and `sort --undo` restores
the folder byte for byte. No case may need a manual repair.

Most runs are forked from a "warm" server process that has already imported torch, hdbscan
and illusort (3-4 s per start on two cores): the child runs the same `illusort.cli.main`
as `python -m illusort.cli`, so the random delays land in the work, not in the imports. A
few cases run the literal `python -m illusort.cli` command, delays spread over its whole run.
"""
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from illusort.index import Index, default_index_path
from illusort.layout import LOCK, MANIFEST
from illusort.manifest import read_manifest, write_manifest
from illusort.weights import load_model, with_faces, with_precision

from conftest import index_key, make_collection

pytestmark = pytest.mark.slow  # kills, fuzzing or training: `pytest -m 'not slow'` skips them

SORT = ("--model", "hsv-hist", "--seed", "0", "--workers", "0", "-q")
SERVER = textwrap.dedent("""
    import json, os, sys, time, traceback
    import hdbscan, torch, tqdm                       # what a sort imports, loaded once
    import illusort.workflow, illusort.sort, illusort.embed
    from illusort.cli import main
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                fd = os.open(job["log"], os.O_WRONLY | os.O_APPEND)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                main(args=job["argv"], prog_name="illusort")
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        killed = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if job["delay"] is not None and not killed and time.monotonic() - start >= job["delay"]:
                os.kill(pid, job["signal"])
                killed = True
            time.sleep(0.0005)
        print(json.dumps({"killed": killed, "code": os.waitstatus_to_exitcode(status),
                          "elapsed": time.monotonic() - start}), flush=True)
""")


class Server:
    """Runs CLI commands in forked children of one warm process; kills them on request."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.errors = open(workdir / "server.err", "w")  # a SIGINT can land before a child redirects
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errors, text=True, cwd=workdir)
        assert self.proc.stdout.readline().strip() == "ready"
        self.runs = 0

    def run(self, *argv, delay=None, sig=signal.SIGKILL) -> dict:
        self.runs += 1
        log = self.workdir / f"run{self.runs}.log"
        log.write_text("")  # a child killed at once never opens it
        job = {"argv": [os.fsdecode(a) if isinstance(a, (bytes, Path)) else str(a) for a in argv],
               "delay": delay, "signal": int(sig), "log": str(log)}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        result = json.loads(self.proc.stdout.readline())
        result["output"] = log.read_text(errors="replace")
        return result

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.errors.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    warm = Server(tmp_path_factory.mktemp("server"))
    yield warm
    warm.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The folder every case starts from, and the sha1 of each of its files."""
    root = tmp_path_factory.mktemp("pristine") / "pics"
    make_collection(root, characters=4, per_character=12)
    return root, hashes(root)


def hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".illusort" not in p.parts}


def fresh_case(pristine, base: Path):
    root, _ = pristine
    base.mkdir()
    shutil.copytree(root, base / "pics")
    return base / "pics", base / "out"


def check_nothing_lost(root: Path, out: Path, original: dict[str, str], mode: str, complete: bool) -> None:
    """Sources unchanged (symlink/copy); for move, every original content is in DIR or OUT
    (exactly once when the run completed; during a move a file may briefly have two names)."""
    if mode != "move":
        assert hashes(root) == original
        return
    names = [p for p in list(root.rglob("*")) + list(out.rglob("*"))
             if p.is_file() and not p.is_symlink() and ".illusort" not in p.parts
             and not p.name.startswith(".illusort")]
    have = Counter(hashlib.sha1(p.read_bytes()).hexdigest() for p in names)
    assert set(have) == set(original.values()), "a moved file was lost"
    if complete:
        assert have == Counter(original.values())


def check_index(root: Path) -> int:
    db = default_index_path(root)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Index(db) as index:
        rows, vectors = index.embeddings(index_key("hsv-hist"))
    assert np.isfinite(vectors).all()
    return len(rows)


def check_out_matches_manifest(root: Path, out: Path, original: dict[str, str], mode: str) -> None:
    manifest = read_manifest(out)
    assert manifest is not None and manifest["mode"] == mode
    entries = manifest["entries"]
    assert all(e.state == "done" for e in entries)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir() or p.is_symlink()}
    assert on_disk - {e.dest for e in entries} <= {MANIFEST, LOCK}, "files in OUT outside the manifest"
    base = root.resolve()
    assert {Path(e.src).relative_to(base).as_posix() for e in entries} == set(original), "not every file sorted"
    for e in entries:
        dest, rel = out / e.dest, Path(e.src).relative_to(base).as_posix()
        if mode == "symlink":
            assert dest.is_symlink() and os.readlink(dest) == e.src and Path(e.src).is_file()
        else:
            assert dest.is_file() and not dest.is_symlink()
            assert hashlib.sha1(dest.read_bytes()).hexdigest() == original[rel]
            assert os.path.exists(e.src) == (mode != "move")


def run_until_done(server, argv):
    """Run again, uninterrupted: it must complete (exit 0) with no manual repair first."""
    result = server.run(*argv)
    assert result["code"] == 0, f"{argv} needs a manual repair: {result['output']}"
    return result


@pytest.fixture(scope="module")
def durations(server, pristine, tmp_path_factory):
    """Each mode's uninterrupted sort and undo time: the kills are spread over these."""
    measured = {}
    for mode in ("symlink", "copy", "move"):
        times = []
        for _ in range(3):  # the fastest of three: a busy machine only makes later runs longer
            root, out = fresh_case(pristine, tmp_path_factory.mktemp("measure") / mode)
            sort = run_until_done(server, ["sort", root, "--out", out, "--mode", mode, *SORT])
            check_out_matches_manifest(root, out, pristine[1], mode)
            undo = run_until_done(server, ["sort", "--undo", "--out", out, root])
            assert hashes(root) == pristine[1]
            times.append((sort["elapsed"], undo["elapsed"]))
        measured[mode] = tuple(min(t) for t in zip(*times))
    return measured


CASES = 39  # 13 per mode; each takes about half a second


def test_sort_and_undo_killed_at_random_points_never_lose_a_file(server, pristine, durations, tmp_path):
    rng = random.Random(20240611)
    original = pristine[1]
    tally = Counter()
    for case in range(CASES):
        mode = ("symlink", "copy", "move")[case % 3]
        sort_time, undo_time = durations[mode]
        root, out = fresh_case(pristine, tmp_path / f"case{case}")
        argv = ["sort", root, "--out", out, "--mode", mode, *SORT]
        for _ in range(1 + (rng.random() < 0.3)):  # sometimes the resumed run is killed too
            sig = rng.choice([signal.SIGKILL, signal.SIGINT])
            result = server.run(*argv, delay=rng.uniform(0, sort_time), sig=sig)
            tally["sort killed" if result["killed"] else "sort finished first"] += 1
            check_nothing_lost(root, out, original, mode, complete=False)
        run_until_done(server, argv)
        check_nothing_lost(root, out, original, mode, complete=True)
        assert check_index(root) >= (len(original) if mode != "move" else 0)
        check_out_matches_manifest(root, out, original, mode)

        if rng.random() < 0.5:  # kill the undo as well
            sig = rng.choice([signal.SIGKILL, signal.SIGINT])
            result = server.run("sort", "--undo", "--out", out, root, delay=rng.uniform(0, undo_time), sig=sig)
            tally["undo killed" if result["killed"] else "undo finished first"] += 1
            check_nothing_lost(root, out, original, mode, complete=False)
        if read_manifest(out) is not None:
            result = run_until_done(server, ["sort", "--undo", "--out", out, root])
            assert "left in place" not in result["output"], (case, result["output"], read_manifest(out))
        assert hashes(root) == original, f"case {case} ({mode}): undo did not restore the folder"
        assert {p.name for p in out.rglob("*")} <= {LOCK}, f"case {case}: OUT not emptied"
        tally["cases"] += 1
    print(f"\nkill-and-resume over {durations}: {dict(tally)}; files lost 0; manual repairs 0")
    assert tally["sort killed"] >= 20  # the delays really fell inside the runs


def test_literal_cli_killed_during_its_whole_run(server, pristine, tmp_path):
    """`python -m illusort.cli sort` itself (imports included), killed at spread-out moments."""
    original = pristine[1]

    def command(root, out):
        return [sys.executable, "-m", "illusort.cli", "sort", str(root), "--out", str(out), "--mode", "move", *SORT]

    start = time.monotonic()
    subprocess.run(command(*fresh_case(pristine, tmp_path / "measure")), check=True, capture_output=True, timeout=120)
    whole = time.monotonic() - start
    rng = random.Random(7)
    for case, sig in enumerate([signal.SIGKILL, signal.SIGINT, signal.SIGKILL]):
        root, out = fresh_case(pristine, tmp_path / f"literal{case}")
        proc = subprocess.Popen(command(root, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # the last third of the run is the work; put one kill there for sure
        delay = rng.uniform(0, whole) if case < 2 else rng.uniform(whole * 0.67, whole)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
        proc.communicate(timeout=60)
        check_nothing_lost(root, out, original, "move", complete=False)
        run_until_done(server, ["sort", root, "--out", out, "--mode", "move", *SORT])
        check_nothing_lost(root, out, original, "move", complete=True)
        check_out_matches_manifest(root, out, original, "move")
        run_until_done(server, ["sort", "--undo", "--out", out, root])
        assert hashes(root) == original


def test_embed_with_a_cnn_killed_and_resumed_matches_a_clean_run(server, pristine, tmp_path, tiny_cnn):
    model = with_precision(with_faces(load_model(str(tiny_cnn)), "auto"), "auto")
    clean, _ = fresh_case(pristine, tmp_path / "clean")

    def embed(root):
        return ["embed", root, "--model", tiny_cnn, "--workers", "0", "--batch-size", "8", "-q"]

    reference = run_until_done(server, embed(clean))
    with Index(default_index_path(clean)) as index:
        ref_rows, ref_vectors = index.embeddings(model.model_id)
    assert len(ref_rows) == len(pristine[1])
    rng = random.Random(99)
    for case in range(3):
        root, _ = fresh_case(pristine, tmp_path / f"embed{case}")
        for _ in range(2):
            sig = rng.choice([signal.SIGKILL, signal.SIGINT])
            server.run(*embed(root), delay=rng.uniform(0, reference["elapsed"]), sig=sig)
            check_index_readable(default_index_path(root))
        run_until_done(server, embed(root))
        with Index(default_index_path(root)) as index:
            rows, vectors = index.embeddings(model.model_id)
        assert [r.path for r in rows] == [r.path for r in ref_rows]
        np.testing.assert_allclose(vectors, ref_vectors, atol=1e-5)
        assert hashes(root) == pristine[1]
    print(f"\nembed killed and resumed 3 x 2 times over a {reference['elapsed']:.2f} s run")


def check_index_readable(db: Path) -> None:
    if db.exists():
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_narrowest_windows_are_recovered(server, pristine, tmp_path):
    """States a kill leaves in windows too narrow to hit by chance, made with real files:
    a move linked but not unlinked (sort and undo), and a first manifest never renamed."""
    original = pristine[1]
    root, out = fresh_case(pristine, tmp_path / "move")
    argv = ["sort", root, "--out", out, "--mode", "move", *SORT]
    run_until_done(server, argv)
    entries = read_manifest(out)["entries"]
    os.link(out / entries[0].dest, entries[0].src)  # sort killed after a move's link, before its unlink
    entries[0].state = "pending"
    write_manifest(out, root, "move", entries)
    run_until_done(server, argv)
    check_nothing_lost(root, out, original, "move", complete=True)
    check_out_matches_manifest(root, out, original, "move")
    os.link(out / entries[1].dest, entries[1].src)  # undo killed after its link, before its unlink
    run_until_done(server, ["sort", "--undo", "--out", out, root])
    assert hashes(root) == original and {p.name for p in out.rglob("*")} <= {LOCK}

    root, out = fresh_case(pristine, tmp_path / "first")
    out.mkdir()  # sort killed inside its first manifest write: a lock and a half-written .tmp
    (out / LOCK).touch()
    (out / (MANIFEST + ".tmp")).write_text('{"version": 1, "sour')
    run_until_done(server, ["sort", root, "--out", out, "--mode", "copy", *SORT])
    check_out_matches_manifest(root, out, original, "copy")
    run_until_done(server, ["sort", "--undo", "--out", out, root])
    assert hashes(root) == original and {p.name for p in out.rglob("*")} <= {LOCK}
